"""A run's start-up: what every Dagster run process pays before its first step, old code vs new, side by side.

Two measurements, each side in fresh processes, alternating which side goes first per round:

- `load`: a fresh Python loads the definitions (`cssci_platform.definitions`, the whole graph built), as the run
  process of every run, the code server and each UI reload do; also which of scikit-learn, SciPy and pandas it
  imported.
- `ingest`: `cssci ingest` of a small synthetic cohort into a fresh home, then from the instance's events, per run:
  launched -> RUN_START (the run process: interpreter, Dagster, the definitions) and RUN_START -> first step; and
  the command's wall time and number of runs; the CPU seconds of the command and every process below it (daemon,
  code servers, run workers; read from /proc every 50 ms, so a process's last < 50 ms are missed) and how many code
  servers it started.

The old side is a checkout of the baseline commit (`git worktree add /tmp/base <rev>`), put first on PYTHONPATH; the
environment (.venv) is the same.

    python benchmarks/run_startup.py --baseline /tmp/base --rounds 5 --parts load,ingest
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
WORK = REPO_ROOT / "benchmarks" / "_work" / "run_startup"
LOAD = """
import json, sys, time
started = time.perf_counter()
import cssci_platform.definitions as definitions
definitions.defs().get_repository_def().get_all_jobs()
print(json.dumps({"seconds": time.perf_counter() - started, "source": sys.modules["cssci_platform"].__file__,
                  "modelling_stack": sorted(m for m in ("sklearn", "scipy", "pandas") if m in sys.modules)}))
"""
RUN_TIMES = """
import json, sys
import dagster as dg
instance = dg.DagsterInstance.get()
runs = []
for run in instance.get_runs():
    events = instance.all_logs(run.run_id)
    first = {}
    for entry in events:
        if entry.dagster_event is not None:
            first.setdefault(entry.dagster_event.event_type_value, entry.timestamp)
    steps = [e.timestamp for e in events if e.dagster_event and e.dagster_event.event_type_value == "STEP_START"]
    if "PIPELINE_STARTING" in first and "PIPELINE_START" in first and steps:
        runs.append({"job": run.job_name, "launch_to_start": first["PIPELINE_START"] - first["PIPELINE_STARTING"],
                     "start_to_first_step": min(steps) - first["PIPELINE_START"]})
print(json.dumps(runs))
"""


def side_env(source: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CSSCI_", "DAGSTER_"))}
    return {**env, "PYTHONPATH": str(source)}


def load_once(source: Path) -> dict:
    completed = subprocess.run([sys.executable, "-c", LOAD], env=side_env(source), capture_output=True, text=True,
                               check=True, cwd=source)
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert Path(result["source"]).resolve().is_relative_to(source.resolve()), result["source"]
    return result


def ingest_once(source: Path, side: str, cohort: Path) -> dict:
    home = WORK / f"home_{side}"
    shutil.rmtree(home, ignore_errors=True)
    env = {**side_env(source), "CSSCI_HOME": str(home)}
    started = time.perf_counter()
    command = subprocess.Popen([sys.executable, "-m", "cssci_platform.cli.main", "ingest", str(cohort / "cohort.yaml"),
                                "--workers", "2"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True, cwd=source)
    tree = process_tree_cpu(command)
    wall = time.perf_counter() - started
    if command.returncode != 0:
        raise SystemExit(f"{side}: cssci ingest failed ({command.returncode}): {command.stderr.read()[-2000:]}")
    times = subprocess.run([sys.executable, "-c", RUN_TIMES], env={**env, "DAGSTER_HOME": str(home / "dagster_home")},
                           capture_output=True, text=True, check=True, cwd=source)
    runs = json.loads(times.stdout.strip().splitlines()[-1])
    return {"wall": wall, "runs": len(runs), "launch_to_start": [r["launch_to_start"] for r in runs],
            "start_to_first_step": [r["start_to_first_step"] for r in runs], **tree}


def process_tree_cpu(command: subprocess.Popen) -> dict:
    """Until `command` ends: the CPU seconds (user + system) of it and of every process below it, and how many code
    servers (`dagster api grpc`) were among them."""
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[int, float] = {}
    lines: dict[int, str] = {}
    below = {command.pid}
    while command.poll() is None:
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                pid, parent = int(entry.name), int(fields[1])
                if pid in below or parent in below:
                    below.add(pid)
                    cpu[pid] = (int(fields[11]) + int(fields[12])) / tick
                    lines.setdefault(pid, (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode())
            except (OSError, IndexError, ValueError):  # ended while read
                continue
        time.sleep(0.05)
    servers = sum(line.split()[1:5] == ["-m", "dagster", "api", "grpc"] for line in lines.values())
    return {"cpu": sum(cpu.values()), "code_servers": servers}


def synthetic_cohort(patients: int) -> Path:
    from cssci_platform.lib.synthetic import write_sci_cohort

    folder = WORK / f"cohort_{patients}"
    if not (folder / "cohort.yaml").exists():
        write_sci_cohort(folder, n_development=patients, n_prospective=0, seed=5)
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the baseline commit")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--parts", default="load,ingest")
    parser.add_argument("--patients", type=int, default=8, help="synthetic patients of the `ingest` part")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    sides = {"old": args.baseline.resolve(), "new": REPO_ROOT}
    parts = args.parts.split(",")
    cohort = synthetic_cohort(args.patients) if "ingest" in parts else None
    results: dict[str, dict[str, list]] = {side: {"load": [], "ingest": []} for side in sides}
    for round_ in range(args.rounds):
        order = list(sides) if round_ % 2 == 0 else list(reversed(sides))
        for side in order:
            if "load" in parts:
                results[side]["load"].append(load_once(sides[side]))
            if "ingest" in parts and cohort is not None:
                results[side]["ingest"].append(ingest_once(sides[side], side, cohort))
            print(round_, side, json.dumps({k: v[-1] for k, v in results[side].items() if v}), flush=True)
    for side in sides:
        loads, ingests = results[side]["load"], results[side]["ingest"]
        if loads:
            print(f"{side}: definitions load median {statistics.median(r['seconds'] for r in loads):.2f} s "
                  f"(imports {loads[0]['modelling_stack'] or 'none'} of scikit-learn, SciPy, pandas)")
        if ingests:
            starts = [s for r in ingests for s in r["launch_to_start"]]
            steps = [s for r in ingests for s in r["start_to_first_step"]]
            wall = statistics.median(r["wall"] for r in ingests)
            cpu = statistics.median(r["cpu"] for r in ingests)
            print(f"{side}: ingest of {args.patients} patients median {wall:.1f} s, CPU {cpu:.1f} s, "
                  f"{ingests[0]['code_servers']} code servers, {ingests[0]['runs']} runs; "
                  f"launch -> RUN_START median {statistics.median(starts):.2f} s, "
                  f"RUN_START -> first step median {statistics.median(steps):.2f} s")


if __name__ == "__main__":
    main()
