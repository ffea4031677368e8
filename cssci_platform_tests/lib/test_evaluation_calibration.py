"""Calibration (`cssci_platform.lib.evaluation.calibration`): logistic recalibration against statsmodels and
against simulated truth, the binned curve against scikit-learn, Brier against scikit-learn, and
Hosmer-Lemeshow on a case computed by hand. Measured: intercept/slope and their standard errors within
1e-9 relative of statsmodels."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.special import expit
from scipy.stats import chi2
from sklearn.calibration import calibration_curve as sklearn_calibration_curve
from sklearn.metrics import brier_score_loss

from cssci_platform.lib.evaluation import (
    brier_score,
    calibration_curve,
    calibration_in_the_large,
    calibration_summary,
    hosmer_lemeshow,
    logistic_recalibration,
    scaled_brier_score,
)
from cssci_platform.lib.evaluation.calibration import logit


def simulated_cohort(seed: int = 0, n: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """True log-odds and outcomes drawn from them: expit(true log-odds) is perfectly calibrated."""
    rng = np.random.default_rng(seed)
    true_log_odds = rng.normal(-0.5, 1.5, n)
    return true_log_odds, (rng.random(n) < expit(true_log_odds)).astype(int)


def test_perfect_calibration_gives_slope_one_intercept_zero() -> None:
    true_log_odds, y = simulated_cohort()
    fit = logistic_recalibration(y, expit(true_log_odds))
    assert fit.converged
    assert abs(fit.slope - 1) < 3 * fit.slope_se and abs(fit.intercept) < 3 * fit.intercept_se
    assert fit.slope_ci[0] < 1 < fit.slope_ci[1] and fit.slope_se < 0.03
    assert abs(calibration_in_the_large(y, expit(true_log_odds))) < 0.01


@pytest.mark.parametrize("scale", [0.5, 2.0])
def test_scaled_log_odds_give_slope_equal_to_scale(scale: float) -> None:
    """risk = expit(true / scale) means true log-odds = scale * logit(risk): the slope is `scale`."""
    true_log_odds, y = simulated_cohort(1)
    fit = logistic_recalibration(y, expit(true_log_odds / scale))
    assert abs(fit.slope - scale) < 3 * fit.slope_se
    assert abs(fit.slope_model_intercept) < 3 * 0.03


def test_shifted_log_odds_give_intercept_equal_to_shift() -> None:
    """risk = expit(true - 1) under-predicts: logit P(y) = 1 + logit(risk), so the intercept is +1."""
    true_log_odds, y = simulated_cohort(2)
    risk = expit(true_log_odds - 1)
    fit = logistic_recalibration(y, risk)
    assert abs(fit.intercept - 1) < 3 * fit.intercept_se and abs(fit.slope - 1) < 3 * fit.slope_se
    assert calibration_in_the_large(y, risk) > 0.1


def test_recalibration_matches_statsmodels() -> None:
    sm = pytest.importorskip("statsmodels.api")
    true_log_odds, y = simulated_cohort(3, n=800)
    risk = expit(0.7 * true_log_odds + 0.3)
    fit = logistic_recalibration(y, risk)
    slope_model = sm.Logit(y, sm.add_constant(logit(risk))).fit(disp=0, tol=1e-12)
    offset_model = sm.GLM(y, np.ones(len(y)), family=sm.families.Binomial(), offset=logit(risk)).fit(tol=1e-12)
    assert (fit.slope_model_intercept, fit.slope) == pytest.approx(tuple(slope_model.params), rel=1e-9)
    assert fit.slope_se == pytest.approx(slope_model.bse[1], rel=1e-9)
    assert fit.intercept == pytest.approx(offset_model.params[0], rel=1e-9)
    assert fit.intercept_se == pytest.approx(offset_model.bse[0], rel=1e-9)


def test_separation_gives_nan_not_an_error() -> None:
    fit = logistic_recalibration(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]))
    assert not fit.converged and math.isnan(fit.slope)


def test_brier_scores() -> None:
    y, risk = np.array([1, 0, 0, 1]), np.array([0.5, 0.5, 0.2, 0.4])
    assert brier_score(y, risk) == pytest.approx(0.225)  # (0.25 + 0.25 + 0.04 + 0.36) / 4
    assert scaled_brier_score(y, risk) == pytest.approx(1 - 0.225 / 0.25)
    assert calibration_in_the_large(y, risk) == pytest.approx(0.5 - 0.4)
    true_log_odds, y = simulated_cohort(4, n=500)
    assert brier_score(y, expit(true_log_odds)) == pytest.approx(brier_score_loss(y, expit(true_log_odds)), rel=1e-12)


@pytest.mark.parametrize("decimals", [None, 2, 1])
def test_curve_matches_sklearn_quantile_bins(decimals: int | None) -> None:
    """Rounded risks tie at bin edges, so edges merge and ties must fall in the same bin as scikit-learn's."""
    true_log_odds, y = simulated_cohort(5, n=1000)
    risk = expit(true_log_odds) if decimals is None else np.round(expit(true_log_odds), decimals)
    curve = calibration_curve(y, risk, n_bins=10)
    observed, predicted = sklearn_calibration_curve(y, risk, n_bins=10, strategy="quantile")
    assert curve.observed == pytest.approx(observed, abs=1e-12)
    assert curve.mean_predicted == pytest.approx(predicted, abs=1e-12)
    assert curve.counts.sum() == len(y) and (curve.observed_low <= curve.observed).all()
    assert (curve.observed <= curve.observed_high).all()


def test_hosmer_lemeshow_by_hand() -> None:
    """Ten risks, g = 5: the 20 % quantiles fall strictly between neighbours, so the groups are the pairs
    below. Per group (O - E)^2 / E for events plus the same for non-events (E0 = n - E1):
    (0.1, 0.2) y 0 0: E1 0.3, O1 0 -> 0.09/0.3 + 0.09/1.7
    (0.3, 0.4) y 0 1: E1 0.7, O1 1 -> 0.09/0.7 + 0.09/1.3
    (0.5, 0.6) y 1 0: E1 1.1, O1 1 -> 0.01/1.1 + 0.01/0.9
    (0.7, 0.8) y 1 1: E1 1.5, O1 2 -> 0.25/1.5 + 0.25/0.5
    (0.85, 0.95) y 1 1: E1 1.8, O1 2 -> 0.04/1.8 + 0.04/0.2
    On the fitting cohort df = 5 - 2 = 3; held out, df = 5."""
    risk = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.95])
    y = np.array([0, 0, 0, 1, 1, 0, 1, 1, 1, 1])
    statistic = (0.09 / 0.3 + 0.09 / 1.7) + (0.09 / 0.7 + 0.09 / 1.3) + (0.01 / 1.1 + 0.01 / 0.9) \
        + (0.25 / 1.5 + 0.25 / 0.5) + (0.04 / 1.8 + 0.04 / 0.2)
    order = np.random.default_rng(0).permutation(10)  # grouping must not depend on the row order
    test = hosmer_lemeshow(y[order], risk[order], groups=5, development=True)
    assert test.statistic == pytest.approx(statistic, rel=1e-12) and test.statistic == pytest.approx(1.459834, abs=1e-6)
    assert test.df == 3 and test.p_value == pytest.approx(chi2.sf(statistic, 3), rel=1e-12)
    held_out = hosmer_lemeshow(y[order], risk[order], groups=5)
    assert held_out.statistic == test.statistic and held_out.p_value == pytest.approx(chi2.sf(statistic, 5), rel=1e-12)
    assert test.counts.tolist() == [2] * 5 and test.expected_events == pytest.approx([0.3, 0.7, 1.1, 1.5, 1.8])


def test_hosmer_lemeshow_ten_groups_and_merged_edges() -> None:
    true_log_odds, y = simulated_cohort(6, n=2000)
    calibrated = hosmer_lemeshow(y, expit(true_log_odds), development=True)
    assert calibrated.df == 8 and calibrated.counts.tolist() == [200] * 10 and calibrated.p_value > 0.01
    assert hosmer_lemeshow(y, expit(true_log_odds + 1.0)).p_value < 1e-6
    coarse = hosmer_lemeshow(y, np.round(expit(true_log_odds), 1))  # at most 11 distinct risks, edges merge
    assert coarse.df == len(coarse.counts) and len(coarse.counts) < 10


def test_summary_collects_every_number() -> None:
    true_log_odds, y = simulated_cohort(7, n=1000)
    summary = calibration_summary(y, expit(true_log_odds))
    assert summary["calibration_slope"] == pytest.approx(logistic_recalibration(y, expit(true_log_odds)).slope)
    assert summary["hosmer_lemeshow_df"] == 10 and summary["hosmer_lemeshow_groups"] == 10  # held out: df = G
    assert summary["brier"] == pytest.approx(brier_score(y, expit(true_log_odds)))


def test_risks_outside_unit_interval_are_rejected() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score(np.array([0, 1]), np.array([0.2, 1.2]))
