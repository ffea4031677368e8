r"""Issue 18, report cost on a real home: `cssci report --home HOME` from this tree and from a baseline checkout,
side by side on the same home (e.g. the 200-patient demo's, `benchmarks/_work/demo_200/home`).

Each round runs both sides one after the other (the order alternates between rounds); before each command the
home's report file is deleted, so each writes the whole report (figures, SHAP, PDF) through its own `report_job`
run. Prints the wall seconds per side, their medians and ratio, and which explainer each report names for its
champions' SHAP values; writes them to ``--out``.

    python benchmarks/report_command.py --baseline /tmp/base --home benchmarks/_work/demo_200/home --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
EXPLAINER = re.compile(r"Explainer: (.+?) \(")


def run_report(tree: Path, home: Path) -> tuple[float, list[str]]:
    """Wall seconds of one `cssci report` from `tree`, and the explainers its report names."""
    experiment = (home / "experiment.yaml").read_text(encoding="utf-8")
    name = re.search(r"^name: (\S+)", experiment, re.MULTILINE)
    report = home / "image_store" / "reports" / f"{name.group(1) if name else 'demo'}.html"
    report.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree)}
    for variable in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME", "CSSCI_MLFLOW_URI"):
        env.pop(variable, None)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cssci_platform.cli.main", "report", "--home", str(home)],
                          cwd=tree, env=env, capture_output=True, text=True, encoding="utf-8")
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not report.exists():
        raise SystemExit(f"cssci report from {tree} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return seconds, sorted(set(EXPLAINER.findall(report.read_text(encoding="utf-8"))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--baseline", type=Path, required=True, help="a checkout of the code to compare against")
    parser.add_argument("--home", type=Path, required=True, help="a home with a finished study")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks" / "_work" / "report_command.json")
    args = parser.parse_args()
    sides = {"baseline": args.baseline.resolve(), "this tree": REPO_ROOT}
    seconds: dict[str, list[float]] = {side: [] for side in sides}
    explainers: dict[str, list[str]] = {}
    for round_index in range(args.rounds):
        order = list(sides) if round_index % 2 == 0 else list(reversed(sides))
        for side in order:
            wall, named = run_report(sides[side], args.home.resolve())
            seconds[side].append(round(wall, 1))
            explainers[side] = named
            print(f"round {round_index + 1} {side}: {wall:.1f} s", flush=True)
    medians = {side: statistics.median(values) for side, values in seconds.items()}
    result = {"seconds": seconds, "median": medians, "ratio": round(medians["baseline"] / medians["this tree"], 2),
              "explainers": explainers}
    print(json.dumps(result, indent=2))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
