"""Features computed once per cohort (issue 18, reuse across experiments): the patient stage of a second experiment
on the same cohort vs the first's.

Two homes (own warehouse, image store, Dagster instance, study name), one synthetic SCI cohort (demo protocol) and
one feature store (default: beside the manifest). Each home materializes patient_scans, preprocessed_channels and
radiomics_features for every patient, in this process, one patient after another; the table gives the wall time per
home, the extractions PyRadiomics ran and the files preprocessing wrote (from the steps' metadata), and whether the
second home's radiomics_features rows equal the first's.

    python benchmarks/feature_reuse.py --patients 6
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import dagster as dg

from cssci_platform.defs.features.assets import preprocessed_channels, radiomics_features
from cssci_platform.defs.ingest.assets import cohort_manifest, patient_scans
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource

WORK = Path(__file__).resolve().parents[1] / "benchmarks" / "_work" / "feature_reuse"
ASSETS = [cohort_manifest, patient_scans, preprocessed_channels, radiomics_features]
ROWS = "SELECT * EXCLUDE (value), value FROM radiomics_features ORDER BY ALL"


def home_resources(manifest: Path, home: Path, name: str) -> dict:
    home.mkdir(parents=True, exist_ok=True)
    study = home / "study.yaml"
    study.write_text(json.dumps({"name": name, "cohort": {"manifest": str(manifest)},
                                 "outcome": {"name": "good_outcome"}}), encoding="utf-8")
    return {"cohort": CohortResource(manifest_path=str(manifest)),
            "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
            "image_store": ImageStoreResource(root=str(home / "image_store")),
            "study": StudyResource(path=str(study))}


def run_home(manifest: Path, home: Path, name: str) -> dict:
    resources = home_resources(manifest, home, name)
    totals = {"extractions_run": 0, "extractions_reused": 0, "files_written": 0}
    with dg.instance_for_test() as instance:
        assert dg.materialize([cohort_manifest], instance=instance, resources=resources).success
        keys = sorted(p.name for p in (manifest.parent / "images").iterdir())
        instance.add_dynamic_partitions("patients", keys)
        started = time.perf_counter()
        for key in keys:
            result = dg.materialize(ASSETS, selection=[a.key for a in ASSETS[1:]], partition_key=key,
                                    instance=instance, resources=resources)
            for event in result.get_asset_materialization_events():
                metadata = {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}
                totals["extractions_run"] += metadata.get("computed_extractions", 0)
                totals["extractions_reused"] += metadata.get("reused_extractions", 0)
                totals["files_written"] += metadata.get("computed_files", 0)
        totals["seconds"] = round(time.perf_counter() - started, 1)
    return totals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=6)
    args = parser.parse_args()
    shutil.rmtree(WORK, ignore_errors=True)
    manifest = write_sci_cohort(WORK / "cohort", n_development=args.patients, n_prospective=0, seed=5)
    first = run_home(manifest, WORK / "home_first", "first_outcome")
    second = run_home(manifest, WORK / "home_second", "second_outcome")
    same = table_frame(WORK / "home_first" / "warehouse.duckdb", ROWS).equals(
        table_frame(WORK / "home_second" / "warehouse.duckdb", ROWS))
    print("| home | patients | patient stage (s) | extractions run | extractions reused | files written |")
    print("|---|---|---|---|---|---|")
    for label, totals in (("first experiment", first), ("second experiment, same cohort", second)):
        print(f"| {label} | {args.patients} | {totals['seconds']} | {totals['extractions_run']} "
              f"| {totals['extractions_reused']} | {totals['files_written']} |")
    ratio = second["seconds"] / first["seconds"]
    print(f"\nsecond / first wall time: {ratio:.2f}; radiomics_features rows equal: {same}")


if __name__ == "__main__":
    main()
