"""The validation maths of the prospective loop, without Dagster: metrics per champion version and the drift flag."""

import math

import numpy as np
import polars as pl
import pytest
from sklearn.metrics import brier_score_loss, roc_auc_score

from cssci_platform.lib.evaluation import auc_interval
from cssci_platform.lib.evaluation.prospective_validation import (
    lower_test_bound,
    prospective_metrics,
    validate_champions,
)


def _scored(version: str, outcomes: list[str], probabilities: list[float], threshold: float, run: str) -> pl.DataFrame:
    n = len(outcomes)
    return pl.DataFrame(
        {
            "signature": ["Rad"] * n,
            "registered_model": ["study_Rad"] * n,
            "model_version": [version] * n,
            "patient_key": [f"P{i}" for i in range(n)],
            "class_label": ["1"] * n,
            "probability": probabilities,
            "outcome": outcomes,
            "threshold": [threshold] * n,
            "train_run": [run] * n,
        }
    )


def _test(outcomes: list[str], probabilities: list[float]) -> pl.DataFrame:
    return pl.DataFrame({"probability": probabilities, "class_label": ["1"] * len(outcomes), "value": outcomes})


def test_each_champion_version_gets_its_metrics_and_is_flagged_only_below_its_own_test_interval() -> None:
    good = _scored("1", ["0", "0", "1", "1"], [0.1, 0.3, 0.7, 0.9], 0.5, "run-a")
    drifted = _scored("2", ["0", "0", "1", "1"], [0.9, 0.7, 0.3, 0.1], 0.5, "run-b")
    strong_test = _test(["0"] * 10 + ["1"] * 10, list(np.linspace(0.05, 0.45, 10)) + list(np.linspace(0.55, 0.95, 10)))
    [first, second] = validate_champions(pl.concat([good, drifted]), {"run-a": strong_test, "run-b": strong_test})

    assert (first.model_version, first.n_patients, second.model_version) == ("1", 4, "2")
    assert first.metrics["auc"] == pytest.approx(1.0) and second.metrics["auc"] == pytest.approx(0.0)
    assert first.test_auc_low == pytest.approx(
        lower_test_bound(np.r_[np.zeros(10), np.ones(10)].astype(int), strong_test["probability"].to_numpy())
    )
    assert not first.below_test_interval and first.flag is None
    assert second.below_test_interval and second.flag.startswith("Rad v2: validation AUC 0.000 < test CI low")
    rows = second.rows(computed_at=None)
    assert {r["metric"] for r in rows} == set(second.metrics) and all(r["below_test_ci"] for r in rows)


def test_metrics_follow_their_definitions_and_leave_out_what_cannot_be_computed() -> None:
    y, p = np.array([0, 1, 1, 0, 1]), np.array([0.2, 0.8, 0.4, 0.6, 0.9])
    metrics = prospective_metrics(y, p, 0.5)
    assert metrics["n"] == 5 and metrics["prevalence"] == pytest.approx(0.6)
    assert metrics["brier"] == pytest.approx(brier_score_loss(y, p))
    assert metrics["auc"] == pytest.approx(roc_auc_score(y, p))
    interval = auc_interval(y, p)
    assert (metrics["auc_low"], metrics["auc_high"]) == pytest.approx((interval.low, interval.high))
    assert metrics["sensitivity"] == pytest.approx(2 / 3) and metrics["specificity"] == pytest.approx(1 / 2)

    one_class = prospective_metrics(np.array([1, 1]), np.array([0.3, 0.8]), math.nan)
    assert set(one_class) == {"n", "prevalence", "brier"}  # no AUC without both classes, no threshold metrics at NaN
    assert math.isnan(lower_test_bound(np.ones(4, dtype=int), np.linspace(0, 1, 4)))


def test_validation_performance_uses_the_reports_cohort_threshold_rule() -> None:
    """leakage_safe keeps the frozen training threshold; paper_faithful re-picks Youden's on the cohort, as the report
    and training do (`cohort_threshold`), so a model's threshold metrics are one number everywhere."""
    from cssci_platform.lib.evaluation import youden_threshold
    from cssci_platform.lib.evaluation.prospective_validation import validation_performance

    y, p = np.array([0, 0, 1, 1, 0, 1]), np.array([0.1, 0.35, 0.4, 0.8, 0.2, 0.9])
    frozen = validation_performance(y, p, 0.5)
    assert frozen["threshold"] == 0.5 and frozen["sensitivity"] == pytest.approx(2 / 3)
    repicked = validation_performance(y, p, 0.5, mode="paper_faithful")
    assert repicked["threshold"] == pytest.approx(youden_threshold(y, p)) and repicked["sensitivity"] == 1.0
