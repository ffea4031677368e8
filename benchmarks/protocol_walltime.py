"""Wall time of each shipped protocol config on its default synthetic cohort: `cssci run --config <name>`.

Each protocol runs in a fresh home (no cached cohort, derived images or Dagster instance) in a subprocess,
exactly as a user runs it, one after the other. Recorded per protocol: the total wall time of the command
(cohort generation included), the stage times `cssci run` prints (stage start to next stage start), the
load average before and after, and the exit code. Only overrides given with ``--set`` change the shipped
config (the published configs ask for ImageNet weights, which this machine does not have: pass
``--set deep.weights=none``).

    python benchmarks/protocol_walltime.py --set deep.weights=none
    python benchmarks/protocol_walltime.py --protocols demo --set deep.weights=none
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

from cssci_platform.lib.study_config import shipped_configs

WORK = Path(__file__).resolve().parent / "_work" / "protocols"
STAGE_LINE = re.compile(r"^\s*([0-9.]+) s  (.+)$")


def run_protocol(name: str, overrides: list[str], workers: int, work: Path) -> dict:
    home = work / name
    if home.exists():
        subprocess.run(["rm", "-rf", str(home)], check=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CSSCI_", "DAGSTER_HOME"))}
    env |= {"CSSCI_MLFLOW_URI": f"sqlite:///{work / 'mlflow.db'}", "COLUMNS": "200"}
    command = [
        sys.executable,
        "-m",
        "cssci_platform.cli.main",
        "run",
        "--config",
        name,
        "--home",
        str(home),
        "--workers",
        str(workers),
        *[part for o in overrides for part in ("--set", o)],
    ]
    load_before, started = os.getloadavg(), time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, encoding="utf-8", cwd=work)
    wall = time.perf_counter() - started
    (work / f"{name}.log").write_text(completed.stdout + "\n--- stderr ---\n" + completed.stderr, encoding="utf-8")
    stages = {
        m.group(2).strip(): float(m.group(1)) for line in completed.stdout.splitlines() if (m := STAGE_LINE.match(line))
    }
    return {
        "protocol": name,
        "exit_code": completed.returncode,
        "wall_s": round(wall, 1),
        "stages_s": stages,
        "load_before": load_before,
        "load_after": os.getloadavg(),
        "command": " ".join(command[1:]),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocols", nargs="+", default=list(shipped_configs()), choices=list(shipped_configs()))
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="override for every protocol")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, default=WORK / "results.json")
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    machine = {
        "nproc": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
    }
    results = []
    for name in args.protocols:
        print(f"{name} ...", flush=True)
        results.append(run_protocol(name, args.overrides, args.workers, WORK))
        print(json.dumps(results[-1], indent=1), flush=True)
        args.out.write_text(
            json.dumps({"machine": machine, "overrides": args.overrides, "results": results}, indent=1),
            encoding="utf-8",
        )


if __name__ == "__main__":
    main()
