"""Wilson intervals (`cssci_platform.lib.evaluation.proportions`) against statsmodels'
`proportion_confint(method="wilson")` (measured: at most 1e-16 apart) and threshold metrics with CIs on a
confusion table counted by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from cssci_platform.lib.evaluation import threshold_metrics, threshold_metrics_with_ci, wilson_interval


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.01])
@pytest.mark.parametrize(("successes", "total"), [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (47, 113), (999, 1000)])
def test_wilson_matches_statsmodels(successes: int, total: int, alpha: float) -> None:
    proportion = pytest.importorskip("statsmodels.stats.proportion")
    expected = proportion.proportion_confint(successes, total, alpha=alpha, method="wilson")
    assert wilson_interval(successes, total, alpha) == pytest.approx(expected, abs=1e-12)


def test_wilson_known_value() -> None:
    """Closed form at 0 successes: (0, z^2 / (n + z^2)), 0.2775 for n = 10."""
    low, high = wilson_interval(0, 10)
    assert low == 0.0 and high == pytest.approx(1.959964**2 / (10 + 1.959964**2), abs=1e-6)


def test_empty_and_impossible_counts() -> None:
    assert all(math.isnan(v) for v in wilson_interval(0, 0))
    with pytest.raises(ValueError):
        wilson_interval(4, 3)


def test_threshold_metrics_with_ci_counts_by_hand() -> None:
    # threshold 0.5: positives 0.9 0.7 0.6 0.2 -> TP 3, FN 1; negatives 0.8 0.55 0.4 0.3 0.1 0.05 -> FP 2, TN 4
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    score = np.array([0.9, 0.7, 0.6, 0.2, 0.8, 0.55, 0.4, 0.3, 0.1, 0.05])
    metrics = threshold_metrics_with_ci(y, score, 0.5)
    expected = {"accuracy": (7, 10), "sensitivity": (3, 4), "specificity": (4, 6), "ppv": (3, 5), "npv": (4, 5)}
    assert set(metrics) == set(expected)
    for name, (k, total) in expected.items():
        assert (metrics[name].successes, metrics[name].total) == (k, total)
        assert metrics[name].estimate == pytest.approx(k / total)
        assert (metrics[name].low, metrics[name].high) == wilson_interval(k, total)
        assert metrics[name].estimate == pytest.approx(threshold_metrics(y, score, 0.5)[name])


def test_no_predicted_positive_gives_nan_ppv() -> None:
    metrics = threshold_metrics_with_ci(np.array([0, 1, 1]), np.array([0.1, 0.2, 0.3]), 0.9)
    assert metrics["ppv"].total == 0 and math.isnan(metrics["ppv"].estimate) and math.isnan(metrics["ppv"].low)
    assert metrics["sensitivity"].estimate == 0.0 and metrics["sensitivity"].low == 0.0
