"""DeLong's AUC variance, confidence interval and tests (DeLong, DeLong & Clarke-Pearson 1988).

Computed with the fast midrank algorithm of Sun & Xu (2014, IEEE Signal Process. Lett. 21:1389), O(n log n)
per score, and following pROC's conventions exactly (Robin et al. 2011):

- placements: for the m positives (cases), V10_i = (midrank of X_i among all scores - midrank of X_i among
  the positives) / n, i.e. the fraction of the n negatives (controls) below X_i, ties counting 1/2; for the
  negatives, V01_j = 1 - (midrank of Y_j among all - midrank among the negatives) / m. AUC = mean(V10).
- variance: S10 / m + S01 / n, where S10 and S01 are the sample (co)variances (denominator m - 1, n - 1) of
  the placements.
- CI (`ci.auc(method="delong")`): AUC +- z_(1-alpha/2) * sqrt(variance), then clipped to [0, 1].
- paired test (`roc.test(paired=TRUE)`): z = (AUC_a - AUC_b) / sqrt(var_a + var_b - 2 cov_ab), two-sided
  normal p; the CI of the difference is d +- z_(1-alpha/2) * SE (not clipped). z is 0 when d and SE are 0.
- unpaired test (`roc.test(paired=FALSE)`): D = (AUC_a - AUC_b) / sqrt(var_a + var_b), referred to a t
  distribution with df = (var_a + var_b)^2 / (var_a^2 / (N_a - 1) + var_b^2 / (N_b - 1)), N the number of
  patients; its CI of the difference (not reported by pROC) uses the same t quantile.

Scores are oriented so that higher means the positive class (pROC's direction "<"). With fewer than two
patients in either class the variance is undefined and every number but the AUC is NaN.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm, rankdata, t

from cssci_platform.lib.evaluation._inputs import binary_outcome, finite_scores


@dataclass(frozen=True)
class DeLongCI:
    auc: float
    variance: float
    low: float
    high: float
    alpha: float = 0.05


@dataclass(frozen=True)
class AucComparison:
    """AUC_a - AUC_b with its test; the statistic follows a t distribution with `df` degrees of freedom
    (infinite, i.e. normal, for the paired test)."""

    auc_a: float
    auc_b: float
    difference: float
    standard_error: float
    z: float
    p_value: float
    low: float
    high: float
    df: float = math.inf
    alpha: float = 0.05


@dataclass(frozen=True)
class Placements:
    """Per-score structural components: `auc` (k,), `positive` V10 (k, m), `negative` V01 (k, n)."""

    auc: np.ndarray
    positive: np.ndarray
    negative: np.ndarray

    @property
    def covariance(self) -> np.ndarray:
        """The (k, k) DeLong covariance matrix of the AUCs: S10 / m + S01 / n."""
        m, n = self.positive.shape[1], self.negative.shape[1]
        if m < 2 or n < 2:
            return np.full((len(self.auc), len(self.auc)), np.nan)
        return np.atleast_2d(np.cov(self.positive)) / m + np.atleast_2d(np.cov(self.negative)) / n


def delong_placements(y_true: np.ndarray, *scores: np.ndarray) -> Placements:
    """Sun & Xu's midrank placements of one or more scores of the same patients."""
    y = binary_outcome(y_true)
    matrix = np.vstack([finite_scores(s, len(y)) for s in scores])
    positive, negative = matrix[:, y], matrix[:, ~y]
    m, n = positive.shape[1], negative.shape[1]
    if m == 0 or n == 0:
        return Placements(np.full(len(scores), np.nan), positive, negative)
    overall = rankdata(np.hstack([positive, negative]), method="average", axis=1)
    v10 = (overall[:, :m] - rankdata(positive, method="average", axis=1)) / n
    v01 = 1.0 - (overall[:, m:] - rankdata(negative, method="average", axis=1)) / m
    return Placements(v10.mean(axis=1), v10, v01)


def delong_ci(y_true: np.ndarray, score: np.ndarray, alpha: float = 0.05) -> DeLongCI:
    """AUC, its DeLong variance and the (1 - alpha) CI clipped to [0, 1], as pROC's ci.auc."""
    placements = delong_placements(y_true, score)
    auc, variance = float(placements.auc[0]), float(placements.covariance[0, 0])
    half_width = _z(alpha) * math.sqrt(variance)
    low, high = np.clip([auc - half_width, auc + half_width], 0.0, 1.0)
    return DeLongCI(auc, variance, float(low), float(high), alpha)


def delong_roc_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, alpha: float = 0.05) -> AucComparison:
    """Paired DeLong test of two scores of the same patients (pROC `roc.test`, paired)."""
    placements = delong_placements(y_true, score_a, score_b)
    covariance = placements.covariance
    auc_a, auc_b = (float(a) for a in placements.auc)
    se = float(np.sqrt(np.maximum(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0)))
    difference = auc_a - auc_b
    z = 0.0 if difference == 0 and se == 0 else _divide(difference, se)
    half_width = _z(alpha) * se
    return AucComparison(auc_a, auc_b, difference, se, z, float(2 * norm.sf(abs(z))),
                         difference - half_width, difference + half_width, math.inf, alpha)


def delong_unpaired_test(
    y_a: np.ndarray, score_a: np.ndarray, y_b: np.ndarray, score_b: np.ndarray, alpha: float = 0.05
) -> AucComparison:
    """DeLong test of two AUCs from different patients (pROC `roc.test`, unpaired: a t test, see module)."""
    _z(alpha)  # validates alpha
    first, second = delong_ci(y_a, score_a), delong_ci(y_b, score_b)
    total = first.variance + second.variance
    n_a, n_b = len(np.asarray(y_a)), len(np.asarray(y_b))
    df = _divide(total**2, first.variance**2 / (n_a - 1) + second.variance**2 / (n_b - 1))
    difference = first.auc - second.auc
    se = math.sqrt(total)
    statistic = _divide(difference, se)
    half_width = float(t.isf(alpha / 2, df)) * se
    return AucComparison(first.auc, second.auc, difference, se, statistic, float(2 * t.sf(abs(statistic), df)),
                         difference - half_width, difference + half_width, float(df), alpha)


def _z(alpha: float) -> float:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1), got {alpha}")
    return float(norm.isf(alpha / 2))


def _divide(numerator: float, denominator: float) -> float:
    """numerator / denominator, +-inf for a non-zero numerator over 0 and NaN for 0 / 0 (as R)."""
    if denominator:
        return numerator / denominator
    if numerator:
        return math.copysign(math.inf, numerator)
    return math.nan
