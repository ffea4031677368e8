"""Issue 18: the default `cssci demo` (200 patients: 180 development + 20 prospective) end to end on this machine,
and whether it shows its planted signal.

Runs `cssci demo` with no size option in a fresh home (a subprocess, exactly as a user runs it; environment
warm: the virtual environment exists, nothing of the study does), and records the total wall time, the stage
times the command prints (stage start to next stage start), `uptime` before and after (the machine may be
shared) and the exit code. Then, from the home's warehouse, each champion's test AUC with the 95 % CI the report
uses (logit-DeLong, `lib.evaluation.delong.auc_interval`) and its CV AUC. The demo must show the planted signal:
Rad and Combined test AUC CI low > 0.5. `--evaluate HOME` reads an existing home (and `--log`, its output)
instead of running.

    python benchmarks/demo_200.py                       # home benchmarks/_work/demo_200/home, ~10-40 min
    python benchmarks/demo_200.py --evaluate /tmp/o4_demo --log /tmp/o4_logs/demo.log
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import numpy as np

from cssci_platform.lib.evaluation.delong import auc_interval

WORK = Path(__file__).resolve().parent / "_work" / "demo_200"
STAGE_LINE = re.compile(r"^\s*([0-9.]+) s  (.+)$")
SHOWN = ("Rad", "Combined")  # the signatures that must show the planted signal (issue 18)
CHAMPION_TESTS = """
SELECT t.signature, t.mode, t.classifier, t.cv_auc_mean, p.label, p.probability
FROM trained_models t JOIN predictions p ON p.model_name = t.run_id
WHERE t.champion AND p.role = 'test' AND p.class_label = '1'
ORDER BY t.signature, t.mode, p.patient_key
"""


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def run_demo(home: Path, log: Path, workers: int) -> dict:
    shutil.rmtree(home, ignore_errors=True)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("CSSCI_", "DAGSTER_HOME"))}
    env |= {"CSSCI_HOME": str(home), "COLUMNS": "200"}
    command = [sys.executable, "-m", "cssci_platform.cli.main", "demo", "--workers", str(workers)]
    before, started = uptime(), time.perf_counter()
    completed = subprocess.run(command, env=env, capture_output=True, text=True, encoding="utf-8", cwd=home.parent)
    wall = time.perf_counter() - started
    log.write_text(completed.stdout + "\n--- stderr ---\n" + completed.stderr, encoding="utf-8")
    return {"exit_code": completed.returncode, "wall_s": round(wall, 1), "uptime_before": before,
            "uptime_after": uptime(), "command": " ".join(command[1:])}


def stage_times(log: Path) -> dict[str, float]:
    lines = log.read_text(encoding="utf-8").splitlines()
    return {m.group(2).strip(): float(m.group(1)) for line in lines if (m := STAGE_LINE.match(line))}


def champion_intervals(warehouse: Path) -> list[dict]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        rows = con.execute(CHAMPION_TESTS).pl()
    results = []
    for (signature, mode), group in rows.group_by(["signature", "mode"], maintain_order=True):
        labels = np.array([int(value) for value in group["label"]])
        interval = auc_interval(labels, group["probability"].to_numpy())
        results.append({"signature": signature, "mode": mode, "classifier": group["classifier"][0],
                        "cv_auc": round(float(group["cv_auc_mean"][0]), 3), "test_auc": round(interval.auc, 3),
                        "ci_low": round(interval.low, 3), "ci_high": round(interval.high, 3),
                        "positives": interval.positives, "negatives": interval.negatives})
    return results


def markdown(champions: list[dict]) -> str:
    lines = ["| signature | mode | champion | CV AUC | test AUC (95 % CI) | test n (pos/neg) |",
             "|---|---|---|---:|---:|---:|"]
    lines += [f"| {c['signature']} | {c['mode']} | {c['classifier']} | {c['cv_auc']:.3f} | {c['test_auc']:.3f} "
              f"({c['ci_low']:.3f}-{c['ci_high']:.3f}) | {c['positives']}/{c['negatives']} |" for c in champions]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--evaluate", type=Path, help="an existing demo home: evaluate it, run nothing")
    parser.add_argument("--log", type=Path, help="with --evaluate: the output of its `cssci demo`")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    run: dict = {"nproc": os.cpu_count()}
    if args.evaluate:
        home, log = args.evaluate, args.log
    else:
        home, log = WORK / "home", WORK / "demo.log"
        run |= run_demo(home, log, args.workers)
    if log is not None:
        run["stages_s"] = stage_times(log)
    run["champions"] = champion_intervals(home / "warehouse.duckdb")
    (WORK / "results.json").write_text(json.dumps(run, indent=1), encoding="utf-8")
    print(json.dumps({k: v for k, v in run.items() if k != "champions"}, indent=1))
    print(markdown(run["champions"]))
    shown = [c for c in run["champions"] if c["signature"] in SHOWN]
    ok = len(shown) >= len(SHOWN) and all(c["ci_low"] > 0.5 for c in shown)
    print(f"planted signal shown (Rad and Combined test AUC CI low > 0.5 of their champions): {ok}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
