"""How long `cssci ingest` takes to exit once its work is done (issue 18, session 19): a small synthetic cohort is
ingested once into a home (untimed), then `cssci ingest` of the same cohort again (every patient done: the command
opens the instance and its warehouse, plans, runs nothing) is run `--rounds` times. For each: the wall time of the
command, and the time from its last line of output to its exit (Python's exit: handlers, module teardown, its last
garbage collection). Run it with each tree on PYTHONPATH to compare:

    PYTHONPATH=/path/to/tree python benchmarks/command_exit.py --rounds 5
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
WORK = REPO_ROOT / "benchmarks" / "_work" / "command_exit"


def environment(home: Path) -> dict[str, str]:
    kept = {name: value for name, value in os.environ.items() if not name.startswith(("CSSCI_", "DAGSTER_"))}
    return kept | {"CI": "true", "CSSCI_FEATURE_STORE": str(home.with_name("store"))}


def ingest(manifest: Path, home: Path) -> tuple[float, float]:
    """The command's wall time and the time from its last output line to its exit."""
    command = [str(Path(sys.executable).parent / "cssci"), "ingest", str(manifest), "--home", str(home)]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=environment(home), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    assert process.stdout is not None
    last_line = started
    for _ in process.stdout:
        last_line = time.perf_counter()
    process.wait()
    ended = time.perf_counter()
    if process.returncode != 0:
        raise SystemExit(f"cssci ingest failed ({process.returncode})")
    return ended - started, ended - last_line


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    from cssci_platform.lib.synthetic import write_sci_cohort

    shutil.rmtree(WORK, ignore_errors=True)
    manifest = write_sci_cohort(WORK / "cohort", n_development=2, n_prospective=0, seed=7, second_rater_fraction=0)
    home = WORK / "home"
    ingest(manifest, home)
    for _ in range(args.rounds):
        wall, exiting = ingest(manifest, home)
        print(f"ingest with nothing to run: {wall:.2f} s, of which exiting after its last line {exiting:.2f} s",
              flush=True)


if __name__ == "__main__":
    main()
