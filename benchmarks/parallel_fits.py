"""Issue 18: the zoo's fit units as parallel steps vs the same run step after step, side by side, identical results;
and where one model's MLflow logging spends its time.

Parts (``--parts``):

- ``zoo``: `trained_models` (plan -> fit_unit per fold x mode x signature -> register_zoo) on a copy of a finished
  home's warehouse (default the demo home /tmp/demo_home, read-only: its feature_matrix, splits and ICC are reused),
  each side in its own subprocess with a fresh Dagster instance and a fresh sqlite MLflow store:
  ``serial`` = `dg.materialize` (in-process executor, one step after another, the path `cssci run` takes today),
  ``parallel`` = `dg.execute_job(reconstructable(...))` under the multiprocess executor with ``--processes``.
  Wall time per side, then the zoo's tables (run ids and timestamps aside), MLflow params and selected features per
  model and the champions are compared.
- ``logging``: one fitted model (the home's first signature, LR, leakage_safe) logged ``--log-rounds`` times with
  `log_model_run` under cProfile: seconds per model and the top cumulative entries (skops, signature, input
  example, run creation, params/metrics batches, artifacts).

    python benchmarks/parallel_fits.py --home /tmp/demo_home --parts logging,zoo --processes 2

Figures go to ``benchmarks/_work/parallel_fits/parallel_fits.json`` with `uptime` at start and end: the machine may be
shared, so say so with the figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "parallel_fits"
ENV_KEYS = ("CSSCI_WAREHOUSE", "CSSCI_MANIFEST", "CSSCI_MLFLOW_URI", "CSSCI_EXPERIMENT_CONFIG")


def _uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def prepare_side(home: Path, side: str, classifiers: list[str] | None) -> dict[str, str]:
    """A copy of the home's warehouse and study file under WORK/side, a fresh MLflow store and Dagster home."""
    folder = WORK / side
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "dagster_home").mkdir(parents=True)
    shutil.copy(home / "warehouse.duckdb", folder / "warehouse.duckdb")
    manifest = (home / "current_manifest").read_text().strip()
    document = yaml.safe_load((home / "experiment.yaml").read_text())
    document["cohort"] = {**document["cohort"], "manifest": manifest, "synthetic": None}
    if classifiers:
        document["models"]["classifiers"] = classifiers
    (folder / "experiment.yaml").write_text(yaml.safe_dump(document))
    return {
        "CSSCI_WAREHOUSE": str(folder / "warehouse.duckdb"),
        "CSSCI_MANIFEST": manifest,
        "CSSCI_MLFLOW_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "CSSCI_EXPERIMENT_CONFIG": str(folder / "experiment.yaml"),
        "DAGSTER_HOME": str(folder / "dagster_home"),
    }


def zoo_job():
    """trained_models alone under modeling_job's executor, resources from the environment (reconstructable)."""
    import dagster as dg

    from cssci_platform.defs.models.jobs import MODELING_EXECUTOR
    from cssci_platform.defs.models.training import trained_models

    return dg.Definitions(
        assets=[trained_models],
        jobs=[dg.define_asset_job("zoo", selection=[trained_models], executor_def=MODELING_EXECUTOR)],
        resources=_resources(),
    ).resolve_job_def("zoo")


def _resources() -> dict:
    from cssci_platform.resources.cohort import CohortResource
    from cssci_platform.resources.study import StudyResource
    from cssci_platform.resources.tracking import TrackingResource
    from cssci_platform.resources.warehouse import WarehouseResource

    return {
        "warehouse": WarehouseResource(path=os.environ["CSSCI_WAREHOUSE"]),
        "cohort": CohortResource(manifest_path=os.environ["CSSCI_MANIFEST"]),
        "tracking": TrackingResource(tracking_uri=os.environ["CSSCI_MLFLOW_URI"]),
        "study": StudyResource(path=os.environ["CSSCI_EXPERIMENT_CONFIG"]),
    }


def worker_zoo(side: str, processes: int) -> dict:
    """Run trained_models on this side's copy (environment prepared by the parent); wall seconds and step pids."""
    import dagster as dg

    from cssci_platform.defs.models.training import trained_models

    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance:
        if side == "serial":
            result = dg.materialize([trained_models], instance=instance, resources=_resources(), run_config=quiet,
                                    raise_on_error=False)
            success, events = result.success, result.all_events
        else:
            execution: dict = {"max_concurrent": processes}
            if os.environ.get("PARALLEL_FITS_FORKSERVER"):  # step processes forked from one that imported them once
                execution["start_method"] = {"forkserver": {"preload_modules": ["cssci_platform.defs.models.training"]}}
            run_config = {**quiet, "execution": {"config": execution}}
            with dg.execute_job(dg.reconstructable(zoo_job), instance=instance, run_config=run_config,
                                raise_on_error=False) as result:
                success, events = result.success, result.all_events
    seconds = time.perf_counter() - started
    steps = {e.step_key: e.pid for e in events if e.event_type_value == "STEP_START"}
    return {"side": side, "success": success, "seconds": seconds, "steps": len(steps),
            "step_processes": len(set(steps.values()))}


def snapshot(env: dict[str, str]) -> dict:
    """The zoo's rows without run ids / timestamps (predictions keyed by model), MLflow params + selected features."""
    import mlflow
    import polars as pl

    from cssci_platform.lib.warehouse import table_frame

    warehouse = Path(env["CSSCI_WAREHOUSE"])
    models = table_frame(warehouse, "SELECT * FROM trained_models")
    name = {r: f"{n} {m} {f}" for r, n, m, f in models.select("run_id", "result_name", "mode", "fold").rows()}
    drop = {"run_id", "model_uri", "created_at", "model_version"}
    out: dict = {}
    for table, key in {"trained_models": ["result_name", "mode", "fold"],
                       "model_results": ["result_name", "mode", "fold", "role", "metric"],
                       "predictions": ["model_name", "patient_key", "class_label"]}.items():
        where = "signature <> 'CNN'" if table == "predictions" else "true"  # the zoo's rows, not fine-tuned CNNs'
        frame = table_frame(warehouse, f"SELECT * FROM {table} WHERE {where}")
        if table == "predictions":
            frame = frame.with_columns(pl.col("model_name").replace_strict(name))
        out[table] = frame.drop([c for c in frame.columns if c in drop]).sort(key, nulls_last=True).to_dicts()
    client = mlflow.MlflowClient(env["CSSCI_MLFLOW_URI"])
    runs = {}
    for run_id, model in name.items():
        params = client.get_run(run_id).data.params
        artifacts = [a.path for a in client.list_artifacts(run_id, "selection")]
        features = (json.loads(Path(client.download_artifacts(run_id, "selection/selected_features.json")).read_text())
                    if "selection/selected_features.json" in artifacts else [])
        runs[model] = {"params": params, "features": features}
    out["runs"] = runs
    out["champions"] = sorted(models.filter(pl.col("champion"))["result_name"].to_list())
    return out


def worker_logging(rounds: int) -> dict:
    """One trained model (first signature, LR, leakage_safe) logged `rounds` times under cProfile."""
    import logging
    import warnings

    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from cssci_platform.defs.splits.assets import study_split_folds
    from cssci_platform.lib.cohort import load_cohort
    from cssci_platform.lib.model_tracking import TrackingConfig, log_model_run
    from cssci_platform.lib.modeling.chains import ChainSettings
    from cssci_platform.lib.modeling.results import final_features, run_metrics, run_params, warning_tags
    from cssci_platform.lib.modeling.zoo import fit_units, outcome_classes, train_unit
    from cssci_platform.lib.queries import modeling as queries

    resources = _resources()
    config = resources["study"].config()
    models = config.models.model_copy(update={"classifiers": ["LR"]})
    split, folds = study_split_folds(resources["warehouse"], config)
    with resources["warehouse"].connect() as con:
        matrix = queries.stored_feature_matrix(con).to_pandas().set_index("patient_key")
        outcome = queries.modelled_outcome(con, split)
    classes = outcome_classes(load_cohort(Path(os.environ["CSSCI_MANIFEST"])).spec, outcome)
    chain = ChainSettings(config.harmonization, config.selection, None, config.models.cv_folds, config.models.seed)
    unit = fit_units(matrix, folds, models, ["leakage_safe"])[0]
    fit = train_unit(matrix, folds, classes, models, unit, chain)[0]
    model = fit.model
    tracking = TrackingConfig(tracking_uri=os.environ["CSSCI_MLFLOW_URI"], experiment_name="logging_profile")
    example = matrix.loc[fit.roles.reindex(matrix.index) == "train"].head(3).drop(columns=["cohort", "label"])
    import pandas as pd

    split_table = pd.DataFrame({"patient_key": fit.roles.index, "role": fit.roles.to_numpy(), "fold": fit.fold})

    def log_once() -> None:
        log_model_run(tracking, run_name=model.spec.name, model=model.pipeline, input_example=example,
                      params=run_params(model, models.grid, models.cv_folds, models.seed), metrics=run_metrics(model),
                      selected_features=final_features(model), tags=warning_tags(model),
                      selection_reports=model.selection, split_table=split_table)

    log_once()  # first run: experiment creation, imports
    profile = cProfile.Profile()
    seconds = []
    for _ in range(rounds):
        started = time.perf_counter()
        profile.enable()
        log_once()
        profile.disable()
        seconds.append(time.perf_counter() - started)
    text = io.StringIO()
    pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(45)
    return {"model": model.spec.name, "rounds": rounds, "seconds": seconds,
            "seconds_per_model": sum(seconds) / rounds, "profile": text.getvalue()}


def _in_subprocess(env: dict[str, str], *args: str) -> dict:
    out = WORK / f"result_{'_'.join(args)}.json"
    command = [sys.executable, __file__, "--worker", *args, "--worker-out", str(out)]
    subprocess.run(command, env={**os.environ, **env, "PYTHONPATH": str(REPO_ROOT)}, check=True, cwd=REPO_ROOT)
    return json.loads(out.read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--home", type=Path, default=Path("/tmp/demo_home"))
    parser.add_argument("--parts", default="logging,zoo")
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--classifiers", default="", help="comma list overriding the study's (default: the study's)")
    parser.add_argument("--log-rounds", type=int, default=5)
    parser.add_argument("--order", default="serial,parallel")
    parser.add_argument("--forkserver", action="store_true", help="parallel side: forkserver start, modules preloaded")
    parser.add_argument("--out", type=Path, default=WORK / "parallel_fits.json")
    parser.add_argument("--worker", nargs="*")
    parser.add_argument("--worker-out", type=Path)
    args = parser.parse_args()
    if args.worker:
        kind, *rest = args.worker
        result = worker_zoo(rest[0], int(rest[1])) if kind == "zoo" else worker_logging(int(rest[0]))
        if kind == "zoo":
            result["snapshot"] = snapshot({k: os.environ[k] for k in ENV_KEYS})
        args.worker_out.write_text(json.dumps(result, default=str))
        return
    WORK.mkdir(parents=True, exist_ok=True)
    if args.forkserver:
        os.environ["PARALLEL_FITS_FORKSERVER"] = "1"
    classifiers = [c for c in args.classifiers.split(",") if c] or None
    report: dict = {"uptime_start": _uptime(), "home": str(args.home), "classifiers": classifiers,
                    "processes": args.processes, "cpu_count": os.cpu_count()}
    parts = args.parts.split(",")
    if "logging" in parts:
        env = prepare_side(args.home, "logging", classifiers)
        report["logging"] = _in_subprocess(env, "logging", str(args.log_rounds))
        print(f"logging: {report['logging']['seconds_per_model']:.2f} s per model", flush=True)
    if "zoo" in parts:
        sides = {}
        for side in args.order.split(","):
            env = prepare_side(args.home, side, classifiers)
            sides[side] = _in_subprocess(env, "zoo", side, str(args.processes))
            print(f"{side}: {sides[side]['seconds']:.1f} s, {sides[side]['steps']} steps in "
                  f"{sides[side]['step_processes']} processes, success {sides[side]['success']}", flush=True)
        if set(sides) != {"serial", "parallel"}:
            report["zoo"] = {side: {k: v for k, v in r.items() if k != "snapshot"} for side, r in sides.items()}
            args.out.write_text(json.dumps(report, indent=1, default=str))
            return
        serial, parallel = sides["serial"].pop("snapshot"), sides["parallel"].pop("snapshot")
        report["zoo"] = sides
        report["identical"] = {part: serial[part] == parallel[part] for part in serial}
        report["models"] = len(serial["trained_models"])
        report["serial_over_parallel"] = sides["serial"]["seconds"] / sides["parallel"]["seconds"]
        print(f"identical: {report['identical']}; serial / parallel = {report['serial_over_parallel']:.2f}x")
    report["uptime_end"] = _uptime()
    args.out.write_text(json.dumps(report, indent=1, default=str))
    print(report["uptime_start"], "|", report["uptime_end"])


if __name__ == "__main__":
    main()
