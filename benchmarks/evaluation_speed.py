"""Evaluation speed: DeLong on 100k patients, and 1000 stratified bootstrap replicates of AUC for 50 models.

Usage: python benchmarks/evaluation_speed.py [--patients 100000] [--models 50] [--replicates 1000] [--repeats 5]
Prints median wall times; figures go to benchmarks/RESULTS.md by hand with the machine and the command.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from cssci_platform.lib.evaluation import bootstrap_auc_ci, delong_ci, delong_roc_test


def timed(function, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        function()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patients", type=int, default=100_000)
    parser.add_argument("--models", type=int, default=50)
    parser.add_argument("--test-patients", type=int, default=200, help="patients per model for the bootstrap")
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, args.patients)
    a, b = y + rng.normal(0, 1.5, args.patients), y + rng.normal(0, 2.0, args.patients)
    print(f"delong_ci, {args.patients} patients: {timed(lambda: delong_ci(y, a), args.repeats):.3f} s")
    seconds = timed(lambda: delong_roc_test(y, a, b), args.repeats)
    print(f"delong_roc_test (paired), {args.patients} patients: {seconds:.3f} s")
    ys = rng.integers(0, 2, (args.models, args.test_patients))
    scores = ys + rng.normal(0, 1.5, ys.shape)
    run = lambda: [bootstrap_auc_ci(ys[m], scores[m], n=args.replicates, seed=m) for m in range(args.models)]  # noqa: E731
    print(
        f"bootstrap AUC CI, {args.replicates} replicates x {args.models} models of {args.test_patients} patients: "
        f"{timed(run, args.repeats):.3f} s"
    )


if __name__ == "__main__":
    main()
