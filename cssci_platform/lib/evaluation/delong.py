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

The interval printed in report tables and used by the prospective drift flag is `auc_interval`, not the plain
DeLong CI above (which undercovers in small samples at high AUC: about 0.87 at AUC 0.9 with 15 patients per
class, and is (1, 1) at AUC 1):

- inside (0, 1): the DeLong interval on the logit scale, logit(AUC) +- z * sqrt(var) / (AUC (1 - AUC)),
  back-transformed (Pepe 2003, The Statistical Evaluation of Medical Tests, section 5.2; Qin & Hotilovac 2008,
  Stat Methods Med Res 17:207); it stays inside (0, 1) and covers 0.95 in the simulation above;
- at AUC 0 or 1 (every pair ordered, DeLong variance 0, logit infinite): the score-type interval of Newcombe
  (2006, Stat Med 25:559), the AUCs t with (AUC - t)^2 <= z^2 V(t), V Hanley & McNeil's (1982) variance with
  both class sizes replaced by their mean N = (m + n) / 2:
  V(t) = t (1 - t) / (m n) * ((2N - 1) - (3N - 3) / ((2 - t) (1 + t))). It is one-sided at the boundary
  (0.80-1 for AUC 1 with 10 patients per class, 0.64-1 with 5) instead of the degenerate (1, 1).

`AucInterval.notes` says when a reader should be wary: AUC 0 or 1, or fewer than `SMALL_CLASS` patients in a class.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq
from scipy.stats import norm, rankdata, t

from cssci_platform.lib.evaluation._inputs import binary_outcome, finite_scores


@dataclass(frozen=True)
class DeLongCI:
    auc: float
    variance: float
    low: float
    high: float
    alpha: float = 0.05


SMALL_CLASS = 10
LOGIT_DELONG = "logit-DeLong"
NEWCOMBE_SCORE = "Newcombe score (AUC at the boundary)"


@dataclass(frozen=True)
class AucInterval:
    """The AUC with its boundary-respecting (1 - alpha) interval (`auc_interval`), the method used, class sizes."""

    auc: float
    low: float
    high: float
    method: str
    positives: int
    negatives: int
    alpha: float = 0.05

    @property
    def notes(self) -> list[str]:
        """Warnings a table should print next to this interval."""
        notes = []
        if self.auc in (0.0, 1.0):
            notes.append(
                f"AUC = {self.auc:.0f}: every pair of patients is ordered {'correctly' if self.auc else 'wrongly'}; "
                "with few patients this is common by chance, and the interval is one-sided (Newcombe score)"
            )
        smallest = min(self.positives, self.negatives)
        if smallest < SMALL_CLASS:
            notes.append(f"only {smallest} patients in the smaller class: the AUC and its interval are imprecise")
        return notes


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


def auc_interval(y_true: np.ndarray, score: np.ndarray, alpha: float = 0.05) -> AucInterval:
    """The AUC interval of report tables and the drift flag (module docstring): logit-DeLong inside (0, 1),
    Newcombe's score interval at AUC 0 or 1; NaN bounds with fewer than two patients in a class."""
    placements = delong_placements(y_true, score)
    auc, variance = float(placements.auc[0]), float(placements.covariance[0, 0])
    m, n = placements.positive.shape[1], placements.negative.shape[1]
    z = _z(alpha)
    if not math.isfinite(variance):
        return AucInterval(auc, math.nan, math.nan, LOGIT_DELONG, m, n, alpha)
    if 0 < auc < 1 and variance > 0:
        half_width = z * math.sqrt(variance) / (auc * (1 - auc))
        centre = math.log(auc / (1 - auc))
        return AucInterval(auc, _expit(centre - half_width), _expit(centre + half_width), LOGIT_DELONG, m, n, alpha)
    low, high = newcombe_score_interval(auc, m, n, alpha)
    return AucInterval(auc, low, high, NEWCOMBE_SCORE, m, n, alpha)


def newcombe_score_interval(auc: float, positives: int, negatives: int, alpha: float = 0.05) -> tuple[float, float]:
    """The AUCs t with (auc - t)^2 <= z^2 V(t), V the Hanley-McNeil variance with N = (m + n) / 2 (Newcombe 2006)."""
    z2, mean_size, pairs = _z(alpha) ** 2, (positives + negatives) / 2, positives * negatives

    def excess(t: float) -> float:
        variance = t * (1 - t) / pairs * ((2 * mean_size - 1) - (3 * mean_size - 3) / ((2 - t) * (1 + t)))
        return (auc - t) ** 2 - z2 * variance

    edge = 1e-12  # V(0) = V(1) = 0: the roots sought are strictly inside (0, 1)
    low = brentq(excess, 0.0, auc - edge) if auc > edge and excess(0.0) > 0 else 0.0
    high = brentq(excess, auc + edge, 1.0) if auc < 1 - edge and excess(1.0) > 0 else 1.0
    return float(low), float(high)


def _expit(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def delong_roc_test(y_true: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, alpha: float = 0.05) -> AucComparison:
    """Paired DeLong test of two scores of the same patients (pROC `roc.test`, paired)."""
    placements = delong_placements(y_true, score_a, score_b)
    covariance = placements.covariance
    auc_a, auc_b = (float(a) for a in placements.auc)
    se = float(np.sqrt(np.maximum(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1], 0.0)))
    difference = auc_a - auc_b
    z = 0.0 if difference == 0 and se == 0 else _divide(difference, se)
    half_width = _z(alpha) * se
    return AucComparison(
        auc_a,
        auc_b,
        difference,
        se,
        z,
        float(2 * norm.sf(abs(z))),
        difference - half_width,
        difference + half_width,
        math.inf,
        alpha,
    )


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
    return AucComparison(
        first.auc,
        second.auc,
        difference,
        se,
        statistic,
        float(2 * t.sf(abs(statistic), df)),
        difference - half_width,
        difference + half_width,
        float(df),
        alpha,
    )


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
