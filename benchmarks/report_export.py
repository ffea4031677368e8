r"""Issue 18, report cost: a study report's figures rendered to PNG once (the page's bytes written to the figure
files) vs rendered again by the export, side by side in one process, on the toy study of the report tests
(`cssci_platform_tests.lib.test_report_publication.study`, ~20 figures, no MLflow).

Sides, alternated ``--rounds`` times: ``again`` = `build_study_report` + `export_report` where the export renders
each figure's PNG again (what it did before); ``once`` = the same with the PNG the page embeds. The PDF is skipped
(it does not depend on this). Prints seconds per side and the ratio; writes them to ``--out``.

    python benchmarks/report_export.py --rounds 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))


def _side(inputs, once: bool) -> float:
    from cssci_platform.lib.report.export import export_report
    from cssci_platform.lib.report.study import build_study_report

    started = time.perf_counter()
    report = build_study_report(inputs)
    if not once:
        report.pngs = {}  # the export then renders each figure again, as before
    with tempfile.TemporaryDirectory() as folder:
        export_report(report, Path(folder), "toy", pdf=False)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", default=str(REPO_ROOT / "benchmarks" / "_work" / "report_export.json"))
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    from cssci_platform_tests.lib.test_report_publication import study

    inputs = study()
    _side(inputs, True)  # imports, fonts
    seconds: dict[str, list[float]] = {"again": [], "once": []}
    for _ in range(args.rounds):
        for side in ("again", "once"):
            seconds[side].append(_side(inputs, side == "once"))
    mean = {side: sum(values) / len(values) for side, values in seconds.items()}
    result = {"seconds": seconds, "mean": mean, "ratio_again_over_once": mean["again"] / mean["once"],
              "uptime": subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()}
    print(json.dumps(result, indent=1))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
