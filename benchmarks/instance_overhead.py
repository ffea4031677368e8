"""Patient stage throughput: runs through the home's Dagster instance vs the in-process path (issue 18).

Both paths materialize the patient assets for the same synthetic patients on a fresh home at the same path
(derived file names hash their source paths), two at a time:

- `instance`: `cli.patient_runs.run_patients_on_instance` (the CLI's path since issue 18): `patient_batch_job` runs
  (one per worker) submitted to the run queue (QueuedRunCoordinator, max_concurrent_runs 2), launched by a daemon
  (one process per run, its patients one after another);
- `in_process`: two spawned processes each calling `execute_in_process` of `patient_features_job` per patient (the
  CLI's former process pool,
  kept here only as the reference).

Each path's wall time excludes the manifest run and partition registration (both paths share them). The ratio
in_process / instance is the instance path's throughput relative to today's path (the issue asks >= 0.9x of a bare
loop; a Dagster-free loop of the same work is not measured here).

    python benchmarks/instance_overhead.py --patients 8 --rounds 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "instance_overhead"
TWO_RUNS_AT_A_TIME = "concurrency:\n  runs:\n    max_concurrent_runs: 2\ntelemetry:\n  enabled: false\n"


def prepared_home(home: Path, manifest: Path) -> list[str]:
    import dagster as dg

    from cssci_platform.cli.dagster_runs import materialize_manifest, register_partitions
    from cssci_platform.cli.home import activate_study, configure_environment
    from cssci_platform.lib.cohort import load_cohort

    shutil.rmtree(home, ignore_errors=True)
    (home / "dagster_home").mkdir(parents=True)
    (home / "dagster_home" / "dagster.yaml").write_text(TWO_RUNS_AT_A_TIME, encoding="utf-8")
    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME", "CSSCI_EXPERIMENT_CONFIG",
                 "CSSCI_MLFLOW_URI", "CSSCI_LOG_DIR"):
        os.environ.pop(name, None)
    configure_environment(home, manifest)
    activate_study(home, manifest)
    cohort = load_cohort(manifest)
    keys = sorted(cohort.patients)
    with dg.DagsterInstance.get() as instance:
        materialize_manifest(instance)
        register_partitions(instance, keys, sorted({p.center for p in cohort.patients.values()}))
    return keys


def time_instance(keys: list[str]) -> tuple[float, int]:
    import dagster as dg

    from cssci_platform.cli.instance_runs import instance_session
    from cssci_platform.cli.patient_runs import run_patients_on_instance

    started = time.perf_counter()
    with dg.DagsterInstance.get() as instance, instance_session(instance) as session:
        outcomes = run_patients_on_instance(session, keys)
    return time.perf_counter() - started, sum(o.success for o in outcomes)


def run_in_process(patient_key: str) -> bool:
    from cssci_platform.cli.dagster_runs import run_job

    return run_job("patient_features_job", partition_key=patient_key).success


def time_in_process(keys: list[str]) -> tuple[float, int]:
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:
        succeeded = sum(pool.map(run_in_process, keys))
    return time.perf_counter() - started, succeeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    from cssci_platform.lib.synthetic import write_sci_cohort

    shutil.rmtree(WORK, ignore_errors=True)
    manifest = write_sci_cohort(WORK / "cohort", n_development=args.patients, n_prospective=0, seed=41,
                                second_rater_fraction=0)
    rows = []
    for round_index in range(args.rounds):
        order = [("instance", time_instance), ("in_process", time_in_process)]
        for name, timed in order if round_index % 2 == 0 else order[::-1]:
            keys = prepared_home(WORK / "home", manifest)
            seconds, succeeded = timed(keys)
            rows.append({"round": round_index, "path": name, "patients": len(keys), "succeeded": succeeded,
                         "seconds": round(seconds, 1), "load_average": os.getloadavg()[0]})
            print(json.dumps(rows[-1]), flush=True)
    for name in ("instance", "in_process"):
        seconds = [r["seconds"] for r in rows if r["path"] == name]
        print(f"{name}: median {sorted(seconds)[len(seconds) // 2]:.1f} s for {args.patients} patients")


if __name__ == "__main__":
    main()
