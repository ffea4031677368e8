"""Tests comparing groups, as Table 1 reports them: p-value formatting, continuous and categorical tests.

- Continuous variables: normality is judged by Shapiro-Wilk in EVERY group (p >= ``normality_alpha``; a group
  with fewer than 3 values or constant values counts as not normal). All groups normal: mean ± SD (sample SD,
  ddof=1) and Student's t-test with pooled variance (2 groups; what SPSS' "equal variances assumed" row and
  the studies report) or one-way ANOVA (> 2 groups); ``welch=True`` switches to Welch's t-test / Welch's
  ANOVA. Otherwise: median [Q1, Q3] (linear interpolation, R's type 7) and the two-sided Mann-Whitney U test
  (scipy defaults: exact without ties for small samples, else normal approximation with tie and continuity
  correction, as R's wilcox.test) or Kruskal-Wallis (> 2 groups).
- Categorical variables: n (%) with percentages of the group's non-missing values. Test on the levels x groups
  table (levels or groups with no patients dropped): Pearson's chi-square (no Yates correction unless
  ``yates=True``) when every expected count is >= 5, else Fisher's exact test. 2x2: scipy's Fisher exact test.
  R x 2 / 2 x C: the exact Fisher-Freeman-Halton test (two-sided: sum of the probabilities of all tables with
  the same margins that are no more likely than the observed one, relative tolerance 1e-7 as R's fisher.test),
  enumerated when at most `EXACT_TABLE_LIMIT` partial tables arise. Larger tables (or more tables than that):
  Fisher-Freeman-Halton with a Monte Carlo p-value from `MONTE_CARLO_TABLES` seeded random tables (as R's
  ``fisher.test(simulate.p.value=TRUE)``); the test column says which was used.
- Missing values are excluded per variable and counted in the ``n_missing`` column; rows whose group is missing
  are left out. p-values are formatted by `format_p`; the raw value stays in ``p_value``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.special import gammaln
from statsmodels.stats.oneway import anova_oneway

EXACT_TABLE_LIMIT = 5_000_000
MONTE_CARLO_TABLES = 100_000
MONTE_CARLO_SEED = 20240501


def format_p(p: float | None, digits: int = 3) -> str:
    """``<0.001`` below 10^-digits, else `digits` decimals; more decimals when rounding would reach 0.05."""
    if p is None or not np.isfinite(p):
        return ""
    floor = 10.0**-digits
    if p < floor:
        return f"<{floor:.{digits}f}"
    text = f"{p:.{digits}f}"
    while p < 0.05 <= float(text) and digits < 6:
        digits += 1
        text = f"{p:.{digits}f}"
    return text


def is_normal(values: np.ndarray, alpha: float = 0.05) -> bool:
    """Shapiro-Wilk p >= alpha; fewer than 3 values or constant values are not called normal."""
    if values.size < 3 or np.ptp(values) == 0:
        return False
    return bool(stats.shapiro(values).pvalue >= alpha)


def compare_continuous(groups: Sequence[np.ndarray], normal: bool, welch: bool = False) -> tuple[str, float]:
    """(test name, two-sided p) for two or more groups of a continuous variable."""
    if any(g.size == 0 for g in groups):
        return "", math.nan
    if len(groups) == 2:
        if normal:
            name = "Welch's t-test" if welch else "Student's t-test"
            return name, float(stats.ttest_ind(groups[0], groups[1], equal_var=not welch).pvalue)
        return "Mann-Whitney U", float(stats.mannwhitneyu(groups[0], groups[1], alternative="two-sided").pvalue)
    if normal:
        if welch:
            return "Welch's ANOVA", float(anova_oneway(list(groups), use_var="unequal").pvalue)
        return "One-way ANOVA", float(stats.f_oneway(*groups).pvalue)
    return "Kruskal-Wallis", float(stats.kruskal(*groups).pvalue)


def mean_sd(values: np.ndarray, digits: int) -> str:
    if values.size == 0:
        return "-"
    sd = values.std(ddof=1) if values.size > 1 else math.nan
    return f"{values.mean():.{digits}f} ± {sd:.{digits}f}"


def median_iqr(values: np.ndarray, digits: int) -> str:
    if values.size == 0:
        return "-"
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    return f"{median:.{digits}f} [{q1:.{digits}f}, {q3:.{digits}f}]"


def fisher_exact_r_by_2(table: np.ndarray, limit: int = EXACT_TABLE_LIMIT) -> float | None:
    """Exact two-sided Fisher-Freeman-Halton p of an R x 2 table; None when enumeration would exceed `limit`.

    Tables with the observed margins are enumerated row by row through the first-column count; a table's
    probability is prod_i C(r_i, x_i) / C(N, c_1).
    """
    table = np.asarray(table, dtype=np.int64)
    rows = table.sum(axis=1)
    first_total = int(table[:, 0].sum())
    capacity_after = np.append(np.cumsum(rows[::-1])[::-1][1:], 0)
    sums = np.zeros(1, dtype=np.int64)
    log_weights = np.zeros(1)
    for row_total, capacity in zip(rows, capacity_after, strict=True):
        if sums.size * (row_total + 1) > limit:
            return None
        counts = np.arange(row_total + 1)
        sums = (sums[:, None] + counts[None, :]).ravel()
        log_weights = (log_weights[:, None] + _log_choose(row_total, counts)[None, :]).ravel()
        feasible = (sums <= first_total) & (sums + capacity >= first_total)
        sums, log_weights = sums[feasible], log_weights[feasible]
    log_total = float(_log_choose(int(rows.sum()), np.array([first_total]))[0])
    observed = float(sum(_log_choose(int(r), np.array([x]))[0] for r, x in zip(rows, table[:, 0], strict=True)))
    probabilities = np.exp(log_weights - log_total)
    as_extreme = probabilities <= math.exp(observed - log_total) * (1 + 1e-7)
    return float(min(1.0, probabilities[as_extreme].sum()))


def _log_choose(n: int, k: np.ndarray) -> np.ndarray:
    return gammaln(n + 1) - gammaln(k + 1) - gammaln(n - k + 1)


def compare_categorical(table: np.ndarray, yates: bool = False) -> tuple[str, float]:
    """(test name, p) for a levels x groups count table; see the module docstring for the choice."""
    table = np.asarray(table, dtype=np.int64)
    table = table[table.sum(axis=1) > 0][:, table.sum(axis=0) > 0]
    if min(table.shape) < 2:
        return "", math.nan
    if (stats.contingency.expected_freq(table) >= 5).all():
        return "Chi-square", float(stats.chi2_contingency(table, correction=yates).pvalue)
    if table.shape == (2, 2):
        return "Fisher's exact", float(stats.fisher_exact(table).pvalue)
    if 2 in table.shape:
        exact = fisher_exact_r_by_2(table if table.shape[1] == 2 else table.T)
        if exact is not None:
            return "Fisher-Freeman-Halton exact", exact
    method = stats.MonteCarloMethod(n_resamples=MONTE_CARLO_TABLES, rng=np.random.default_rng(MONTE_CARLO_SEED))
    return "Fisher-Freeman-Halton (Monte Carlo)", float(stats.fisher_exact(table, method=method).pvalue)


def ordered_levels(values: pd.Series) -> list[Any]:
    """Categories' own order for a categorical dtype, else sorted (by text when types are mixed)."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        present = set(values.dropna())
        return [c for c in values.cat.categories if c in present]
    unique = list(pd.unique(values.dropna()))
    try:
        return sorted(unique)
    except TypeError:
        return sorted(unique, key=str)
