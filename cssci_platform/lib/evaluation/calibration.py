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
- `hosmer_lemeshow`: over the G non-empty quantile groups (g = 10 asked), the sum over groups and over
  both outcomes of (observed - expected)^2 / expected, with expected events = sum of risks and expected
  non-events = sum of (1 - risk) in the group; p from chi-square with G - 2 degrees of freedom. G = g
  unless tied risks merge edges (where the R `cut` above stops: "breaks are not unique").
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


@dataclass(frozen=True)
class HosmerLemeshow:
    statistic: float
    df: int
    p_value: float
    observed_events: np.ndarray
    expected_events: np.ndarray
    counts: np.ndarray


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
    return CalibrationCurve(np.bincount(group, weights=risk) / counts, events / counts,
                            intervals[:, 0], intervals[:, 1], counts)


def calibration_in_the_large(y: np.ndarray, risk: np.ndarray) -> float:
    labels, risk = _checked(y, risk)
    return float(labels.mean() - risk.mean())


def logistic_recalibration(y: np.ndarray, risk: np.ndarray, alpha: float = 0.05) -> LogisticRecalibration:
    labels, risk = _checked(y, risk)
    log_odds = logit(risk)
    ones = np.ones((len(labels), 1))
    (intercept,), intercept_cov, offset_converged = _logistic_mle(ones, labels, offset=log_odds)
    (slope_intercept, slope), slope_cov, slope_converged = _logistic_mle(
        np.column_stack([ones, log_odds]), labels, offset=np.zeros(len(labels)))
    return LogisticRecalibration(
        float(intercept), math.sqrt(intercept_cov[0, 0]), float(slope), math.sqrt(slope_cov[1, 1]),
        float(slope_intercept), offset_converged and slope_converged, alpha,
    )


def brier_score(y: np.ndarray, risk: np.ndarray) -> float:
    labels, risk = _checked(y, risk)
    return float(np.mean((risk - labels) ** 2))


def scaled_brier_score(y: np.ndarray, risk: np.ndarray) -> float:
    labels, _ = _checked(y, risk)
    prevalence = labels.mean()
    reference = prevalence * (1 - prevalence)
    return 1 - brier_score(y, risk) / reference if reference else math.nan


def hosmer_lemeshow(y: np.ndarray, risk: np.ndarray, groups: int = 10) -> HosmerLemeshow:
    labels, risk = _checked(y, risk)
    group = quantile_groups(risk, groups)
    counts = np.bincount(group).astype(float)
    observed = np.bincount(group, weights=labels)
    expected = np.bincount(group, weights=risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = (observed - expected) ** 2 / expected + (observed - expected) ** 2 / (counts - expected)
    statistic = float(np.nansum(terms))
    df = len(counts) - 2
    p_value = float(chi2.sf(statistic, df)) if df > 0 else math.nan
    return HosmerLemeshow(statistic, df, p_value, observed, expected, counts.astype(int))


def calibration_summary(y: np.ndarray, risk: np.ndarray, groups: int = 10) -> dict[str, float]:
    """Every calibration number of this module, flat, for report tables."""
    recalibration = logistic_recalibration(y, risk)
    hl = hosmer_lemeshow(y, risk, groups)
    return {
        "brier": brier_score(y, risk), "scaled_brier": scaled_brier_score(y, risk),
        "citl_difference": calibration_in_the_large(y, risk),
        "calibration_intercept": recalibration.intercept, "calibration_slope": recalibration.slope,
        "hosmer_lemeshow_chi2": hl.statistic, "hosmer_lemeshow_df": float(hl.df), "hosmer_lemeshow_p": hl.p_value,
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
