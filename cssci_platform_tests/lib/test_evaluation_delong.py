"""DeLong (`cssci_platform.lib.evaluation.delong`) against pROC's published values on its aSAH data set and
against a slow O(m n) textbook implementation written here.

pROC values: the documentation (`?roc`, `?roc.test`: AUC 0.7314, DeLong 95% CI 0.6301-0.8326 for S100B; paired
test wfns vs s100b Z = 2.209, p = 0.02718) and, to 15 digits, pROC's own test suite (tests/testthat/test-var.R,
test-ci.auc.R, test-roc.test.R). pROC's default levels make 'Good' the controls and 'Poor' the cases, with
direction '<' for these three markers, i.e. Poor = 1 and higher score = Poor here.
Measured deviation: at most 3e-16 absolute on every pROC number below.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm
from sklearn.metrics import roc_auc_score

from cssci_platform.lib.evaluation import (
    bootstrap_auc_ci,
    delong_ci,
    delong_placements,
    delong_roc_test,
    delong_unpaired_test,
)
from cssci_platform_tests.refdata import refdata_root

EXACT = 1e-10  # pROC's test suite prints 15 significant digits
PUBLISHED = 5e-5  # the documentation rounds to 4 decimals


@pytest.fixture(scope="module")
def asah() -> pd.DataFrame:
    frame = pd.read_csv(refdata_root() / "clinical_aSAH" / "aSAH.csv")
    assert len(frame) == 113 and set(frame["outcome"]) == {"Good", "Poor"}
    return frame.assign(poor=(frame["outcome"] == "Poor").astype(int))


@pytest.mark.refdata
def test_s100b_auc_and_ci_match_proc_documentation(asah: pd.DataFrame) -> None:
    ci = delong_ci(asah["poor"], asah["s100b"])
    assert ci.auc == pytest.approx(0.7314, abs=PUBLISHED)
    assert (ci.low, ci.high) == pytest.approx((0.6301, 0.8326), abs=PUBLISHED)
    assert ci.variance == pytest.approx(0.00266868245717244, rel=EXACT)


@pytest.mark.refdata
@pytest.mark.parametrize(("marker", "auc", "variance"), [
    ("wfns", 0.8237, 0.00146991470882363),
    ("ndka", 0.611957994579946, 0.0031908105493913),  # 0.6119 when truncated to 4 digits
    ("s100b", 0.7314, 0.00266868245717244),
])
def test_variance_matches_proc_var(asah: pd.DataFrame, marker: str, auc: float, variance: float) -> None:
    ci = delong_ci(asah["poor"], asah[marker])
    assert ci.auc == pytest.approx(auc, abs=PUBLISHED)
    assert ci.variance == pytest.approx(variance, rel=EXACT)


@pytest.mark.refdata
def test_ndka_ci_matches_proc_ci_auc(asah: pd.DataFrame) -> None:
    ci = delong_ci(asah["poor"], asah["ndka"])
    expected = (0.501244999271703, 0.611957994579946, 0.722670989888189)
    assert (ci.low, ci.auc, ci.high) == pytest.approx(expected, rel=EXACT)
    women = asah[asah["gender"] == "Female"]
    ci = delong_ci(women["poor"], women["ndka"])
    assert (ci.low, ci.auc, ci.high) == pytest.approx((0.5261398281, 0.6671428571, 0.8081458862), abs=1e-10)


@pytest.mark.refdata
def test_ci_level_follows_alpha(asah: pd.DataFrame) -> None:
    wide, narrow = delong_ci(asah["poor"], asah["s100b"], 0.01), delong_ci(asah["poor"], asah["s100b"], 0.10)
    assert wide.high - wide.low == pytest.approx(2 * norm.isf(0.005) * math.sqrt(wide.variance))
    assert narrow.high - narrow.low == pytest.approx(2 * norm.isf(0.05) * math.sqrt(narrow.variance))


@pytest.mark.refdata
@pytest.mark.parametrize(("first", "second", "z", "p", "low", "high"), [
    ("wfns", "s100b", 2.20898359144091, 0.0271757822291882, 0.0104061769564846, 0.174214419249478),
    ("wfns", "ndka", 2.79777591868904, 0.00514557970691098, 0.0634011709339876, 0.3600405634833566),
    ("ndka", "s100b", -1.39077002573558, 0.164295175223054, -0.2876917446341914, 0.0488706064228094),
])
def test_paired_test_matches_proc_roc_test(asah, first, second, z, p, low, high) -> None:
    test = delong_roc_test(asah["poor"], asah[first], asah[second])
    assert (test.z, test.p_value, test.low, test.high) == pytest.approx((z, p, low, high), rel=EXACT)
    reversed_test = delong_roc_test(asah["poor"], asah[second], asah[first])
    assert reversed_test.z == pytest.approx(-z, rel=EXACT) and reversed_test.p_value == pytest.approx(p, rel=EXACT)


@pytest.mark.refdata
def test_paired_test_matches_proc_documentation(asah: pd.DataFrame) -> None:
    test = delong_roc_test(asah["poor"], asah["wfns"], asah["s100b"])
    assert (test.auc_a, test.auc_b) == pytest.approx((0.8237, 0.7314), abs=PUBLISHED)
    assert test.z == pytest.approx(2.209, abs=5e-4) and test.p_value == pytest.approx(0.02718, abs=5e-6)
    assert test.difference == pytest.approx(test.auc_a - test.auc_b) and math.isinf(test.df)


@pytest.mark.refdata
def test_identical_scores_give_z_zero_p_one(asah: pd.DataFrame) -> None:
    test = delong_roc_test(asah["poor"], asah["wfns"], asah["wfns"])
    assert test.z == 0 and test.p_value == 1


@pytest.mark.refdata
@pytest.mark.parametrize(("first", "second", "statistic", "p"), [
    ("wfns", "s100b", 1.43490640926908, 0.152825378808796),
    ("wfns", "ndka", 3.10125096778969, 0.00220950791756457),
    ("ndka", "s100b", -1.55995743389685, 0.120192832430845),
])
def test_unpaired_test_matches_proc_roc_test(asah, first, second, statistic, p) -> None:
    y = asah["poor"]
    test = delong_unpaired_test(y, asah[first], y, asah[second])
    assert (test.z, test.p_value) == pytest.approx((statistic, p), rel=EXACT)
    assert np.isfinite(test.df) and test.low < test.difference < test.high


@pytest.mark.refdata
def test_bootstrap_and_delong_ci_agree_on_s100b(asah: pd.DataFrame) -> None:
    """Measured (seed 0, 2000 stratified replicates): low 0.6304 vs 0.6301, high 0.8310 vs 0.8326."""
    delong = delong_ci(asah["poor"], asah["s100b"])
    bootstrap = bootstrap_auc_ci(asah["poor"], asah["s100b"], n=2000, seed=0)
    assert bootstrap.estimate == pytest.approx(delong.auc, abs=1e-12)
    assert bootstrap.low == pytest.approx(delong.low, abs=0.02)
    assert bootstrap.high == pytest.approx(delong.high, abs=0.02)


def textbook_placements(y: np.ndarray, score: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """DeLong et al. (1988) directly: psi(X, Y) = 1 if X > Y, 1/2 if equal, 0 otherwise (O(m n))."""
    cases, controls = score[y == 1], score[y == 0]
    psi = (cases[:, None] > controls[None, :]) + 0.5 * (cases[:, None] == controls[None, :])
    return psi.mean(axis=1), psi.mean(axis=0)


def textbook_covariance(y: np.ndarray, *scores: np.ndarray) -> np.ndarray:
    v10, v01 = zip(*(textbook_placements(y, s) for s in scores))
    m, n = len(v10[0]), len(v01[0])
    return np.atleast_2d(np.cov(np.vstack(v10))) / m + np.atleast_2d(np.cov(np.vstack(v01))) / n


def tied_scores(seed: int, n: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Labels and two correlated scores rounded to one decimal, so ties within and across classes abound."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.35).astype(int)
    first = np.round(rng.normal(0.8 * y, 1.0), 1)
    second = np.round(first + rng.normal(0.3 * y, 0.8), 1)
    return y, first, second


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fast_variance_equals_textbook(seed: int) -> None:
    y, first, second = tied_scores(seed)
    ci = delong_ci(y, first)
    assert ci.auc == pytest.approx(roc_auc_score(y, first), abs=1e-12)
    assert ci.variance == pytest.approx(textbook_covariance(y, first)[0, 0], rel=1e-10)
    covariance = delong_placements(y, first, second).covariance
    assert covariance == pytest.approx(textbook_covariance(y, first, second), rel=1e-10)


@pytest.mark.parametrize("seed", [3, 4])
def test_paired_test_equals_textbook(seed: int) -> None:
    y, first, second = tied_scores(seed)
    covariance = textbook_covariance(y, first, second)
    se = math.sqrt(covariance[0, 0] + covariance[1, 1] - 2 * covariance[0, 1])
    z = (roc_auc_score(y, first) - roc_auc_score(y, second)) / se
    test = delong_roc_test(y, first, second)
    assert (test.standard_error, test.z) == pytest.approx((se, z), rel=1e-10)
    assert test.p_value == pytest.approx(2 * norm.sf(abs(z)), rel=1e-10)


def test_reversed_score_mirrors_auc_and_keeps_variance() -> None:
    y, first, _ = tied_scores(5)
    upward, downward = delong_ci(y, first), delong_ci(y, -first)
    assert downward.auc == pytest.approx(1 - upward.auc) and downward.variance == pytest.approx(upward.variance)


def test_ci_is_clipped_to_unit_interval() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    ci = delong_ci(y, np.array([0.1, 0.2, 0.35, 0.3, 0.8, 0.9]))
    assert ci.auc == pytest.approx(8 / 9) and ci.high == 1.0 and ci.low < ci.auc


def test_degenerate_classes_give_nan_not_errors() -> None:
    single_class = delong_ci(np.ones(5, int), np.arange(5.0))
    assert math.isnan(single_class.auc) and math.isnan(single_class.low)
    one_case = delong_ci(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.3, 0.9]))
    assert one_case.auc == 1.0 and math.isnan(one_case.variance) and math.isnan(one_case.high)


def test_bad_inputs_are_rejected() -> None:
    with pytest.raises(ValueError, match="0/1"):
        delong_ci(np.array([0, 2, 1]), np.array([0.1, 0.2, 0.3]))
    with pytest.raises(ValueError, match="NaN"):
        delong_ci(np.array([0, 1, 1]), np.array([0.1, np.nan, 0.3]))
    with pytest.raises(ValueError, match="shape"):
        delong_roc_test(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3]), np.array([0.1, 0.2]))
