"""Where `cssci ingest`'s fixed time goes (issue 18, session 17): one ingest of a cohort into a fresh home, then each
run's times from its events, relative to the command's start: queued, dequeued (`PIPELINE_STARTING`), its worker up
(first engine event), started, first step, first and last patient outcome, ended; and when the command ended.

    python benchmarks/patient_stage_throughput.py --patients 16 --rounds 1   # writes the cohort and study.yaml
    python benchmarks/command_phases.py benchmarks/_work/patient_stage/cohort_16/cohort.yaml

The study is benchmarks/_work/patient_stage/study.yaml (the one the throughput benchmark last wrote), or --study.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "patient_stage"
PHASES = (("dequeued", "PIPELINE_STARTING"), ("worker up", "ENGINE_EVENT"), ("started", "PIPELINE_START"),
          ("first step", "STEP_START"))


def run_ingest(manifest: Path, study: Path, home: Path) -> tuple[float, float, subprocess.CompletedProcess]:
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(home.with_name(home.name + "_store"), ignore_errors=True)
    home.mkdir(parents=True)
    shutil.copy(study, home / "experiment.yaml")
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("CSSCI_", "DAGSTER_"))}
    environment |= {"CI": "true", "CSSCI_FEATURE_STORE": str(home.with_name(home.name + "_store"))}
    started = time.time()
    done = subprocess.run([str(Path(sys.executable).parent / "cssci"), "ingest", str(manifest), "--home", str(home),
                           "--workers", "2"], env=environment, capture_output=True, text=True, check=False)
    return started, time.time(), done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("manifest", type=Path)
    parser.add_argument("--study", type=Path, default=WORK / "study.yaml")
    args = parser.parse_args()
    import dagster as dg

    home = WORK / "phases_home"
    started, ended, done = run_ingest(args.manifest.resolve(), args.study, home)
    if done.returncode != 0:
        raise SystemExit(f"cssci ingest failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    print(f"command: {ended - started:.2f} s")
    with dg.DagsterInstance.from_config(str(home / "dagster_home")) as instance:
        for record in sorted(instance.get_run_records(), key=lambda r: r.create_timestamp):
            events = [e for e in instance.all_logs(record.dagster_run.run_id) if e.dagster_event]

            def first(event_type: str, of: list = events) -> str:
                times = [e.timestamp - started for e in of if e.dagster_event.event_type_value == event_type]
                return f"{times[0]:.2f}" if times else "-"

            outcomes = [e.timestamp - started for e in events
                        if e.dagster_event.event_type_value == "ASSET_OBSERVATION"]
            patients = f" patients {outcomes[0]:.2f}..{outcomes[-1]:.2f}" if outcomes else ""
            print(f"{record.dagster_run.job_name:22s} queued {record.create_timestamp.timestamp() - started:.2f} "
                  + " ".join(f"{name} {first(event_type)}" for name, event_type in PHASES)
                  + f"{patients} ended {(record.end_time or started) - started:.2f}")


if __name__ == "__main__":
    main()
