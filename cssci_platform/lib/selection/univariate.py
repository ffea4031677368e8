"""Univariate rank tests against the outcome: Mann-Whitney U (two classes) / Kruskal-Wallis (three or more).

Both are computed for all features at once from column ranks (average ranks for ties) with the large-sample
approximations and tie corrections of ``scipy.stats.mannwhitneyu(method="asymptotic")`` (two-sided, with
continuity correction) and ``scipy.stats.kruskal`` (chi-square with C - 1 df); SPSS, which the published
studies used, reports the same asymptotic significance.
"""

from __future__ import annotations

from typing import Any, Literal, Self

import numpy as np
from scipy import special, stats

from ._base import OnConstant, OnEmpty, ReportingSelector, class_codes


def tie_sums(X: np.ndarray) -> np.ndarray:
    """Per column, sum over tie groups of (t^3 - t), t = group size."""
    n, p = X.shape
    ordered = np.sort(X, axis=0)
    new_group = np.vstack([np.ones((1, p), bool), ordered[1:] != ordered[:-1]])
    group_id = np.cumsum(new_group, axis=0) - 1  # 0..n-1 within each column
    sizes = np.bincount((group_id + n * np.arange(p)).ravel(), minlength=n * p).reshape(p, n).astype(np.float64)
    return (sizes**3 - sizes).sum(axis=1)


def mann_whitney_pvalues(X: np.ndarray, group: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(U of the group-0 sample, two-sided p) per column; ``group`` is a 0/1 array."""
    n = X.shape[0]
    first = group == 0
    n1, n2 = int(first.sum()), int((~first).sum())
    ranks = stats.rankdata(X, axis=0)
    u1 = ranks[first].sum(axis=0) - n1 * (n1 + 1) / 2
    u = np.maximum(u1, n1 * n2 - u1)
    sigma = np.sqrt(n1 * n2 / 12 * ((n + 1) - tie_sums(X) / (n * (n - 1))))
    z = (u - n1 * n2 / 2 - 0.5) / sigma
    return u1, np.clip(2 * special.ndtr(-z), 0.0, 1.0)


def kruskal_pvalues(X: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(H, p) per column; ``codes`` are class codes 0..C-1."""
    n = X.shape[0]
    n_classes = int(codes.max()) + 1
    ranks = stats.rankdata(X, axis=0)
    rank_sums = np.stack([ranks[codes == c].sum(axis=0) for c in range(n_classes)])
    sizes = np.bincount(codes, minlength=n_classes)[:, None]
    h = 12 / (n * (n + 1)) * (rank_sums**2 / sizes).sum(axis=0) - 3 * (n + 1)
    h /= 1 - tie_sums(X) / (n**3 - n)
    return h, stats.chi2.sf(h, n_classes - 1)


class RankTestFilter(ReportingSelector):
    """Keep features whose rank test against the outcome gives p < ``alpha`` (optionally BH-adjusted p).

    Two classes: Mann-Whitney U; three or more: Kruskal-Wallis. ``report_.statistic`` holds the p-values.
    """

    step_name = "rank_test_filter"
    supervised = True

    def __init__(
        self,
        alpha: float = 0.05,
        p_adjust: Literal["none", "fdr_bh"] = "none",
        on_constant: OnConstant = "error",
        on_empty: OnEmpty = "keep_best",
    ) -> None:
        self.alpha = alpha
        self.p_adjust = p_adjust
        self.on_constant = on_constant
        self.on_empty = on_empty

    def fit(self, X: Any, y: Any = None) -> Self:
        X_arr, names = self._validated(X)
        codes, classes = class_codes(y, X_arr.shape[0], self.step_name)
        usable, notes = self._usable_columns(X_arr, names, self.on_constant)
        test, p_usable = rank_test(X_arr[:, usable], codes, len(classes))
        if self.p_adjust == "fdr_bh":
            p_usable = stats.false_discovery_control(p_usable, method="bh")
        p = np.full(len(names), np.nan)
        p[usable] = p_usable
        support = usable & (np.nan_to_num(p, nan=1.0) < self.alpha)
        best = int(np.flatnonzero(usable)[np.argmin(p_usable)])
        notes += self._keep_best_if_empty(support, best, names, self.on_empty, f"no p < {self.alpha}")
        statistic = dict(zip(names[usable], p_usable, strict=True))
        details = {"test": test, "classes": [str(c) for c in classes], "alpha": self.alpha, "p_adjust": self.p_adjust}
        return self._finish(names, support, "p_value", statistic, notes, details)


def rank_test(X: np.ndarray, codes: np.ndarray, n_classes: int) -> tuple[str, np.ndarray]:
    if n_classes == 2:
        return "mann_whitney_u", mann_whitney_pvalues(X, codes)[1]
    return "kruskal_wallis", kruskal_pvalues(X, codes)[1]
