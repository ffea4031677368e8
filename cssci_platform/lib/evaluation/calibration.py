"""Calibration of predicted risks: binned curve, calibration-in-the-large, logistic recalibration, Brier
score, Hosmer-Lemeshow test. `y` is 0/1 (1 = event), `risk` the predicted probability of the event.

Definitions (each number names the one it uses):

- Quantile groups (curve and Hosmer-Lemeshow): edges are the 0, 1/g, ..., 1 quantiles of the risks
  (linear interpolation, R type 7), duplicated edges merged; a risk equal to an inner edge falls in the
  lower group (right-closed intervals, lowest included). This is scikit-learn's
  `calibration_curve(strategy="quantile")` binning and R's usual Hosmer-Lemeshow grouping
  `cut(p, quantile(p, seq(0, 1, 1/g)), include.lowest = TRUE)`; empty groups are dropped.
- `calibration_in_the_large`: mean(y) - mean(risk), observed minus expected event rate (> 0: the model
  under-predicts on average).
- `logistic_recalibration` (Cox 1958; Van Calster et al. 2016, J Clin Epidemiol 74:167), maximum
  likelihood with L = logit(risk), risks clipped to [1e-10, 1 - 1e-10] first:
  `intercept`: a in logit P(y=1) = a + 1 * L (L as offset, slope fixed at 1), the "calibration
  intercept" / calibration-in-the-large on the log-odds scale, ideal 0 (> 0: under-prediction);
  `slope`: b in logit P(y=1) = a' + b * L, ideal 1 (< 1: predictions too extreme, over-fitting);
  `slope_model_intercept`: that a'. Wald standard errors and CIs from the observed information.
- `brier_score`: mean((risk - y)^2). `scaled_brier_score`: 1 - Brier / (ybar (1 - ybar)), ybar = mean(y).
- `hosmer_lemeshow`: over the G non-empty quantile groups, the sum over groups and over both outcomes of
  (observed - expected)^2 / expected, with expected events = sum of risks and expected non-events = sum of
  (1 - risk) in the group. Degrees of freedom: G on a held-out (test, validation, prospective) cohort, where
  no parameter was estimated, so the statistic is referred to chi2(G) (Hosmer & Lemeshow 2013, Applied
  Logistic Regression 3rd ed., section 5.2.2 on external validation); G - 2 on the cohort the model was fitted
  on (`development=True`, the original test). Groups asked (`hosmer_lemeshow_groups`, unless given):
  g = floor(min(expected events, expected non-events) / 5), clamped to 2..10 (3..10 on the fitting cohort so
  that df > 0): at least about 5 expected events and 5 expected non-events per group, the usual validity
  condition of the chi-square approximation, and the customary 10 groups once the cohort is large enough.
  G = g unless tied risks merge edges (where the R `cut` above stops: "breaks are not unique").
  `HosmerLemeshow.convention` states the groups and df used, for report tables.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import expit
from scipy.stats import chi2, norm

from cssci_platform.lib.evaluation._inputs import binary_outcome, probabilities
from cssci_platform.lib.evaluation.proportions import wilson_interval

RISK_CLIP = 1e-10
_MAX_ITERATIONS = 100


@dataclass(frozen=True)
class CalibrationCurve:
    """Per non-empty quantile group: mean predicted risk, observed event fraction with its Wilson CI."""

    mean_predicted: np.ndarray
    observed: np.ndarray
    observed_low: np.ndarray
    observed_high: np.ndarray
    counts: np.ndarray


@dataclass(frozen=True)
class LogisticRecalibration:
    intercept: float
    intercept_se: float
    slope: float
    slope_se: float
    slope_model_intercept: float
    converged: bool
    alpha: float = 0.05

    @property
    def intercept_ci(self) -> tuple[float, float]:
        return _wald(self.intercept, self.intercept_se, self.alpha)

    @property
    def slope_ci(self) -> tuple[float, float]:
        return _wald(self.slope, self.slope_se, self.alpha)


HL_EXPECTED_PER_GROUP = 5
HL_MAX_GROUPS = 10


@dataclass(frozen=True)
class HosmerLemeshow:
    statistic: float
    df: int
    p_value: float
    observed_events: np.ndarray
    expected_events: np.ndarray
    counts: np.ndarray
    development: bool = False

    @property
    def convention(self) -> str:
        """The groups and degrees of freedom used, in words."""
        cohort = "fitting cohort, df = G - 2" if self.development else "held-out cohort, df = G"
        return f"G = {len(self.counts)} quantile groups ({cohort} = {self.df})"


def quantile_groups(risk: np.ndarray, groups: int) -> np.ndarray:
    """Group index 0..G-1 of each risk (see module docstring); G <= groups, no group empty."""
    edges = np.unique(np.quantile(risk, np.linspace(0, 1, groups + 1)))
    raw = np.searchsorted(edges[1:-1], risk)
    return np.unique(raw, return_inverse=True)[1]


def calibration_curve(y: np.ndarray, risk: np.ndarray, n_bins: int = 10, alpha: float = 0.05) -> CalibrationCurve:
    labels, risk = _checked(y, risk)
    group = quantile_groups(risk, n_bins)
    counts = np.bincount(group)
    events = np.bincount(group, weights=labels)
    intervals = np.array([wilson_interval(int(k), int(total), alpha) for k, total in zip(events, counts)])
    return CalibrationCurve(
        np.bincount(group, weights=risk) / counts, events / counts, intervals[:, 0], intervals[:, 1], counts
    )


def calibration_in_the_large(y: np.ndarray, risk: np.ndarray) -> float:
    labels, risk = _checked(y, risk)
    return float(labels.mean() - risk.mean())


def logistic_recalibration(y: np.ndarray, risk: np.ndarray, alpha: float = 0.05) -> LogisticRecalibration:
    labels, risk = _checked(y, risk)
    log_odds = logit(risk)
    ones = np.ones((len(labels), 1))
    (intercept,), intercept_cov, offset_converged = _logistic_mle(ones, labels, offset=log_odds)
    (slope_intercept, slope), slope_cov, slope_converged = _logistic_mle(
        np.column_stack([ones, log_odds]), labels, offset=np.zeros(len(labels))
    )
    return LogisticRecalibration(
        float(intercept),
        math.sqrt(intercept_cov[0, 0]),
        float(slope),
        math.sqrt(slope_cov[1, 1]),
        float(slope_intercept),
        offset_converged and slope_converged,
        alpha,
    )


def brier_score(y: np.ndarray, risk: np.ndarray) -> float:
    labels, risk = _checked(y, risk)
    return float(np.mean((risk - labels) ** 2))


def scaled_brier_score(y: np.ndarray, risk: np.ndarray) -> float:
    labels, _ = _checked(y, risk)
    prevalence = labels.mean()
    reference = prevalence * (1 - prevalence)
    return 1 - brier_score(y, risk) / reference if reference else math.nan


def hosmer_lemeshow_groups(risk: np.ndarray, development: bool = False) -> int:
    """The number of quantile groups to ask for (module docstring): floor(min(E, n - E) / 5) within 2..10 (3..10 when
    `development`), E the expected number of events."""
    risk = probabilities(risk, len(np.asarray(risk)))
    expected = float(risk.sum())
    fewest = math.floor(min(expected, len(risk) - expected) / HL_EXPECTED_PER_GROUP)
    return int(np.clip(fewest, 3 if development else 2, HL_MAX_GROUPS))


def hosmer_lemeshow(
    y: np.ndarray, risk: np.ndarray, groups: int | None = None, development: bool = False
) -> HosmerLemeshow:
    """The Hosmer-Lemeshow test; `development`: the risks come from a model fitted on these patients (df = G - 2),
    else a held-out cohort (df = G). `groups` defaults to `hosmer_lemeshow_groups`."""
    labels, risk = _checked(y, risk)
    group = quantile_groups(risk, groups or hosmer_lemeshow_groups(risk, development))
    counts = np.bincount(group).astype(float)
    observed = np.bincount(group, weights=labels)
    expected = np.bincount(group, weights=risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (observed - expected) ** 2 / expected + (observed - expected) ** 2 / (counts - expected)
    statistic = float(np.nansum(terms))
    df = len(counts) - (2 if development else 0)
    p_value = float(chi2.sf(statistic, df)) if df > 0 else math.nan
    return HosmerLemeshow(statistic, df, p_value, observed, expected, counts.astype(int), development)


def calibration_summary(
    y: np.ndarray, risk: np.ndarray, groups: int | None = None, development: bool = False
) -> dict[str, float]:
    """Every calibration number of this module, flat, for report tables (Hosmer-Lemeshow as `hosmer_lemeshow`)."""
    recalibration = logistic_recalibration(y, risk)
    hl = hosmer_lemeshow(y, risk, groups, development)
    return {
        "brier": brier_score(y, risk),
        "scaled_brier": scaled_brier_score(y, risk),
        "citl_difference": calibration_in_the_large(y, risk),
        "calibration_intercept": recalibration.intercept,
        "calibration_slope": recalibration.slope,
        "hosmer_lemeshow_chi2": hl.statistic,
        "hosmer_lemeshow_groups": float(len(hl.counts)),
        "hosmer_lemeshow_df": float(hl.df),
        "hosmer_lemeshow_p": hl.p_value,
    }


def logit(risk: np.ndarray) -> np.ndarray:
    clipped = np.clip(np.asarray(risk, dtype=float), RISK_CLIP, 1 - RISK_CLIP)
    return np.log(clipped) - np.log1p(-clipped)


def _logistic_mle(design: np.ndarray, y: np.ndarray, offset: np.ndarray) -> tuple[np.ndarray, np.ndarray, bool]:
    """Newton-Raphson for logit P(y=1) = offset + design @ beta: (beta, covariance, converged); NaN when the
    information matrix is singular or the iterations diverge (e.g. complete separation)."""
    beta = np.zeros(design.shape[1])
    for _ in range(_MAX_ITERATIONS):
        mu = expit(offset + design @ beta)
        information = design.T @ (design * (mu * (1 - mu))[:, None])
        try:
            step = np.linalg.solve(information, design.T @ (y - mu))
        except np.linalg.LinAlgError:
            break
        beta = beta + step
        if np.max(np.abs(step)) < 1e-10:
            mu = expit(offset + design @ beta)
            covariance = np.linalg.inv(design.T @ (design * (mu * (1 - mu))[:, None]))
            return beta, covariance, True
    nan = np.full(design.shape[1], np.nan)
    return nan, np.full((design.shape[1],) * 2, np.nan), False


def _checked(y: np.ndarray, risk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = binary_outcome(y)
    return labels.astype(float), probabilities(risk, len(labels))


def _wald(estimate: float, se: float, alpha: float) -> tuple[float, float]:
    half_width = float(norm.isf(alpha / 2)) * se
    return estimate - half_width, estimate + half_width
