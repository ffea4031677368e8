"""Peak RSS per patient step type (issue 18, memory).

Each measurement is a fresh Python subprocess that reports its own peak RSS (``resource.getrusage(RUSAGE_SELF)
.ru_maxrss``, at the end, and after its imports); the parent's RUSAGE_CHILDREN would only give the maximum over all
children.

Rows:
- ``import <module>``: importing a module only (what it costs before any work).
- ``<step> (worker: whole defs)``: what a CLI patient worker does today: load ``cssci_platform.definitions`` (every
  asset module, so torch, MLflow, SHAP, ...), then materialize the step for one patient.
- ``<step> (step modules only)``: the same materialization, importing only the asset modules the step needs.

Cohort: the synthetic SCI demo protocol (``write_sci_cohort``), 3 development patients, written once to
``benchmarks/_work/patient_memory`` (untimed); upstream steps are materialized before a step is measured.

    python benchmarks/patient_memory.py [--steps patient_scans preprocessed_channels radiomics_features roi_slices]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "patient_memory"
STEPS = ("patient_scans", "preprocessed_channels", "radiomics_features", "roi_slices")
IMPORTS = ("cssci_platform.lib.feature_extraction", "cssci_platform.lib.preprocessing",
           "cssci_platform.resources.study", "cssci_platform.defs.features.assets",
           "cssci_platform.defs.embeddings.assets", "cssci_platform.definitions")

CHILD = textwrap.dedent("""
    import json, os, resource, sys, time
    from pathlib import Path
    step, mode, work, store = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    upstream_only = sys.argv[5] == "1"
    started = time.perf_counter()
    if mode == "bare":  # the work of patient_scans + preprocessed_channels + radiomics_features, by the lib functions
        import dagster, duckdb, polars as pl  # noqa: F401 -- what a Dagster step process loads anyway
        from cssci_platform.lib.cohort import load_cohort
        from cssci_platform.lib.feature_extraction import ImagingSettings, extract_patient_features, radiomics_inputs
        from cssci_platform.lib.feature_store import FeatureStore
        from cssci_platform.lib.preprocessing import PreprocessingSettings, preprocess_patient
        from cssci_platform.lib.quality import inspect_patient
        imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        cohort = load_cohort(work / "cohort" / "cohort.yaml")
        key = sorted(cohort.patients)[0]
        inspection = inspect_patient(cohort, cohort.patients[key], ImagingSettings().geometry_tolerance())
        features = FeatureStore(work / "feature_store" / store)
        settings = PreprocessingSettings()
        done = preprocess_patient(inspection.scans, cohort.resolve, features.folder("channels"), settings)
        inputs = radiomics_inputs(pl.DataFrame([vars(c) for c in done.channels]),
                                  pl.DataFrame([vars(m) for m in done.masks]), ImagingSettings(), settings.channels)
        extract_patient_features(key, *inputs, "default", FeatureStore(features.folder("radiomics")))
        heavy = [m for m in ("torch", "mlflow", "shap", "sklearn", "matplotlib") if m in sys.modules]
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps({"imported_mb": round(imported_mb), "peak_mb": round(peak_mb),
                          "seconds": round(time.perf_counter() - started, 1), "heavy_modules": heavy}))
        sys.exit(0)
    if mode == "whole":
        from cssci_platform.definitions import defs
        defs()
    import dagster as dg
    from cssci_platform.defs.ingest.assets import cohort_manifest, patient_scans
    from cssci_platform.defs.features.assets import preprocessed_channels, radiomics_features
    assets = [cohort_manifest, patient_scans, preprocessed_channels, radiomics_features]
    if step == "roi_slices":
        from cssci_platform.defs.embeddings.assets import roi_slices
        assets.append(roi_slices)
    from cssci_platform.resources.cohort import CohortResource
    from cssci_platform.resources.image_store import ImageStoreResource
    from cssci_platform.resources.study import StudyResource
    from cssci_platform.resources.warehouse import WarehouseResource
    imported_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    resources = {"cohort": CohortResource(manifest_path=str(work / "cohort" / "cohort.yaml")),
                 "warehouse": WarehouseResource(path=str(work / "warehouse.duckdb")),
                 "image_store": ImageStoreResource(root=str(work / "image_store"),
                                                   feature_store=str(work / "feature_store" / store)),
                 "study": StudyResource(path=str(work / "study.yaml"))}
    instance = dg.DagsterInstance.get()
    if step == "cohort_manifest":
        assert dg.materialize([cohort_manifest], instance=instance, resources=resources).success
        keys = sorted(p.name for p in (work / "cohort" / "images").iterdir())
        instance.add_dynamic_partitions("patients", keys)
    else:
        key = sorted(p.name for p in (work / "cohort" / "images").iterdir())[0]
        wanted = {"patient_scans": 1, "preprocessed_channels": 2, "radiomics_features": 3, "roi_slices": 4}[step]
        chain = assets[1:wanted] if upstream_only else [assets[wanted]]
        for asset in chain:
            result = dg.materialize(assets, selection=[asset.key], partition_key=key, instance=instance,
                                    resources=resources, raise_on_error=False)
            assert result.success, asset.key
    heavy = [m for m in ("torch", "mlflow", "shap", "sklearn", "matplotlib", "xgboost", "lightgbm") if m in sys.modules]
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"imported_mb": round(imported_mb), "peak_mb": round(peak_mb),
                      "seconds": round(time.perf_counter() - started, 1), "heavy_modules": heavy}))
""")


def prepare(work: Path) -> None:
    if (work / "study.yaml").exists():
        return
    from cssci_platform.lib.synthetic import write_sci_cohort

    shutil.rmtree(work, ignore_errors=True)
    manifest = write_sci_cohort(work / "cohort", n_development=3, n_prospective=0, seed=11)
    (work / "study.yaml").write_text(json.dumps({"name": "memory", "cohort": {"manifest": str(manifest)},
                                                 "outcome": {"name": "good_outcome"}}), encoding="utf-8")
    (work / "dagster_home").mkdir(parents=True, exist_ok=True)
    run_child("cohort_manifest", "steps", work, "prepare")


def run_child(step: str, mode: str, work: Path, store: str, upstream_only: bool = False) -> dict:
    """`store`: the feature store folder (fresh per measurement, so the step computes); `upstream_only`: materialize
    the steps before `step` (unmeasured) instead of `step`."""
    env = {**os.environ, "DAGSTER_HOME": str(work / "dagster_home"), "MLFLOW_DISABLE_TELEMETRY": "true"}
    done = subprocess.run([sys.executable, "-c", CHILD, step, mode, str(work), store, "1" if upstream_only else "0"],
                          env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{step} ({mode}) failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def import_peak(module: str) -> dict:
    code = ("import importlib, json, resource, sys; importlib.import_module(sys.argv[1]); "
            "print(json.dumps({'peak_mb': round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "
            "'torch': 'torch' in sys.modules}))")
    done = subprocess.run([sys.executable, "-c", code, module], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", nargs="*", default=list(STEPS), choices=STEPS)
    parser.add_argument("--work", type=Path, default=WORK)
    parser.add_argument("--bare-only", action="store_true", help="only the lib-functions row")
    args = parser.parse_args()
    prepare(args.work)
    print("| what | peak RSS (MB) | after imports (MB) | s | heavy modules loaded |")
    print("|---|---|---|---|---|")
    for module in [] if args.bare_only else IMPORTS:
        measured = import_peak(module)
        print(f"| import {module} | {measured['peak_mb']} | | | {'torch' if measured['torch'] else ''} |")
    shutil.rmtree(args.work / "feature_store" / "bare", ignore_errors=True)
    measured = run_child("radiomics_features", "bare", args.work, "bare")
    print(f"| scans + channels + radiomics by the lib functions, no asset modules | {measured['peak_mb']} "
          f"| {measured['imported_mb']} | {measured['seconds']} | {', '.join(measured['heavy_modules'])} |", flush=True)
    for step in [] if args.bare_only else args.steps:
        for mode, label in (("whole", "worker: whole defs"), ("steps", "step modules only")):
            store = f"{step}-{mode}"
            shutil.rmtree(args.work / "feature_store" / store, ignore_errors=True)  # computed, not reused
            run_child(step, "steps", args.work, store, upstream_only=True)
            measured = run_child(step, mode, args.work, store)
            print(f"| {step} ({label}) | {measured['peak_mb']} | {measured['imported_mb']} | {measured['seconds']} "
                  f"| {', '.join(measured['heavy_modules'])} |", flush=True)


if __name__ == "__main__":
    main()
