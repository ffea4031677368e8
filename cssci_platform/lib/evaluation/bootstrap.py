"""Percentile bootstrap confidence intervals, stratified by outcome class by default.

Each replicate draws patients with replacement; stratified replicates draw within each class, so every
replicate keeps the class counts of the data (pROC's `boot.stratified=TRUE`). The CI is the (alpha/2,
1 - alpha/2) quantiles of the replicate values with linear interpolation (R's type 7, pROC's choice);
replicates where the metric is undefined (NaN, e.g. no predicted positive for PPV) are left out, and
`n_replicates` says how many were used. The estimate is the metric on the original data. Draws come from
`numpy.random.default_rng(seed)` in the same order for every function here, so the same seed gives the
same replicates to `bootstrap_ci` and to its vectorised shortcuts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from cssci_platform.lib.evaluation._inputs import binary_outcome, finite_scores
from cssci_platform.lib.evaluation.performance import THRESHOLD_METRICS, confusion_counts, metrics_from_counts, rank_auc

DEFAULT_REPLICATES = 1000
DEFAULT_SEED = 0
_CHUNK_CELLS = 4_000_000  # indices per chunk of replicates (32 MB of int64)


@dataclass(frozen=True)
class BootstrapCI:
    estimate: float
    low: float
    high: float
    n_replicates: int
    alpha: float = 0.05


def replicate_indices(labels: np.ndarray, n: int, seed: int | None, stratified: bool = True) -> Iterator[np.ndarray]:
    """Chunks of bootstrap draws, one row of len(labels) patient indices per replicate."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    strata = [np.flatnonzero(labels == c) for c in np.unique(labels)] if stratified else [np.arange(len(labels))]
    rows = max(1, _CHUNK_CELLS // max(len(labels), 1))
    for start in range(0, n, rows):
        size = min(rows, n - start)
        yield np.hstack([members[rng.integers(0, len(members), size=(size, len(members)))] for members in strata])


def percentile_interval(replicates: np.ndarray, alpha: float = 0.05) -> tuple[float, float]:
    finite = np.asarray(replicates, dtype=float)
    finite = finite[np.isfinite(finite)]
    if not finite.size:
        return float("nan"), float("nan")
    low, high = np.quantile(finite, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def summarise(estimate: float, replicates: np.ndarray, alpha: float = 0.05) -> BootstrapCI:
    low, high = percentile_interval(replicates, alpha)
    return BootstrapCI(float(estimate), low, high, int(np.isfinite(replicates).sum()), alpha)


def bootstrap_ci(
    y: np.ndarray,
    score: np.ndarray,
    metric_fn: Callable[[np.ndarray, np.ndarray], float],
    n: int = DEFAULT_REPLICATES,
    seed: int | None = DEFAULT_SEED,
    stratified: bool = True,
    alpha: float = 0.05,
) -> BootstrapCI:
    """Percentile CI of `metric_fn(y, score)`; `score` may be 2-D (patients x classes), rows are resampled."""
    y, score = np.asarray(y), np.asarray(score)
    chunks = replicate_indices(y, n, seed, stratified)
    replicates = [metric_fn(y[rows], score[rows]) for chunk in chunks for rows in chunk]
    return summarise(metric_fn(y, score), np.asarray(replicates, dtype=float), alpha)


def bootstrap_auc_ci(
    y: np.ndarray, score: np.ndarray, n: int = DEFAULT_REPLICATES, seed: int | None = DEFAULT_SEED,
    stratified: bool = True, alpha: float = 0.05,
) -> BootstrapCI:
    """`bootstrap_ci(y, score, binary_auc, ...)`, vectorised over replicates (same draws, same result)."""
    labels = binary_outcome(y)
    score = finite_scores(score, len(labels))
    replicates = np.concatenate([rank_auc(labels[rows], score[rows])
                                 for rows in replicate_indices(labels, n, seed, stratified)])
    return summarise(float(rank_auc(labels, score)), replicates, alpha)


def bootstrap_threshold_metrics(
    y: np.ndarray, score: np.ndarray, threshold: float, n: int = DEFAULT_REPLICATES,
    seed: int | None = DEFAULT_SEED, stratified: bool = True, alpha: float = 0.05,
) -> dict[str, BootstrapCI]:
    """Percentile CIs of every threshold metric (accuracy ... F1) at a frozen threshold, vectorised."""
    labels = binary_outcome(y)
    score = finite_scores(score, len(labels))
    chunks = [metrics_from_counts(confusion_counts(labels[rows], score[rows], threshold))
              for rows in replicate_indices(labels, n, seed, stratified)]
    estimate = metrics_from_counts(confusion_counts(labels, score, threshold))
    return {name: summarise(float(estimate[name]), np.concatenate([c[name] for c in chunks]), alpha)
            for name in THRESHOLD_METRICS}
