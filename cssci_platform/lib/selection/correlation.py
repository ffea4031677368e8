"""Spearman redundancy removal: drop the most redundant feature, one per round, until no pair is too similar.

Rule, per round, among the features still in play: a pair is redundant when |rho| > threshold (strict).
Drop the feature in the most redundant pairs; ties go to the one with the highest mean |rho| to the other
remaining features (equal within 1e-12 counts as a tie); remaining ties drop the feature that comes later
in column order, so the earlier column survives. Repeat until no redundant pair is left. Unsupervised: it
uses the training rows' features only.
"""

from __future__ import annotations

from typing import Any, Self

import numpy as np
from scipy import stats

from ._base import OnConstant, ReportingSelector

_MEAN_TIE = 1e-12


def spearman_matrix(X: np.ndarray) -> np.ndarray:
    """|Spearman rho| between columns (Pearson on average ranks)."""
    return np.abs(np.corrcoef(stats.rankdata(X, axis=0), rowvar=False))


def greedy_redundancy_drop(abs_rho: np.ndarray, threshold: float) -> list[int]:
    """Column indices dropped by the rule above, in drop order. O(p^2) overall: counts and sums are updated."""
    p = abs_rho.shape[0]
    similarity = abs_rho.copy()
    np.fill_diagonal(similarity, 0.0)
    redundant = similarity > threshold
    counts = redundant.sum(axis=1)
    sums = similarity.sum(axis=1)
    remaining = np.ones(p, dtype=bool)
    dropped: list[int] = []
    while remaining.sum() > 1 and counts[remaining].max() > 0:
        means = sums / (remaining.sum() - 1)
        most = remaining & (counts == counts[remaining].max())
        candidates = most & (means >= means[most].max() - _MEAN_TIE)
        victim = int(np.flatnonzero(candidates)[-1])
        dropped.append(victim)
        remaining[victim] = False
        counts -= redundant[:, victim]
        sums -= similarity[:, victim]
    return dropped


class SpearmanRedundancyFilter(ReportingSelector):
    """Greedy removal of features with Spearman |rho| > ``threshold`` to another kept feature (rule above)."""

    step_name = "spearman_redundancy"

    def __init__(self, threshold: float = 0.9, on_constant: OnConstant = "error") -> None:
        self.threshold = threshold
        self.on_constant = on_constant

    def fit(self, X: Any, y: Any = None) -> Self:
        X_arr, names = self._validated(X)
        usable, notes = self._usable_columns(X_arr, names, self.on_constant)
        usable_index = np.flatnonzero(usable)
        abs_rho = spearman_matrix(X_arr[:, usable])
        dropped = usable_index[greedy_redundancy_drop(np.atleast_2d(abs_rho), self.threshold)]
        support = usable.copy()
        support[dropped] = False
        off_diagonal = np.atleast_2d(abs_rho) - np.eye(len(usable_index))
        statistic = dict(zip(names[usable], off_diagonal.max(axis=1), strict=True))
        details = {"threshold": self.threshold, "drop_order": [str(names[i]) for i in dropped]}
        return self._finish(names, support, "max_abs_rho_to_any", statistic, notes, details)
