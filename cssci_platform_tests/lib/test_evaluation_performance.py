"""Point metrics used by training (`binary_auc`, `youden_threshold`, `threshold_metrics`,
`multiclass_metrics`): hand-counted values and the NaN rules training relies on, through the import path
training uses."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from cssci_platform.lib.evaluation import binary_auc, multiclass_metrics, threshold_metrics, youden_threshold

Y = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
SCORE = np.array([0.9, 0.7, 0.6, 0.2, 0.8, 0.55, 0.4, 0.3, 0.1, 0.05])


def test_threshold_metrics_by_hand() -> None:
    """At 0.5: TP 3, FN 1, FP 2, TN 4."""
    metrics = threshold_metrics(Y, SCORE, 0.5)
    assert metrics == pytest.approx({"accuracy": 0.7, "sensitivity": 0.75, "specificity": 4 / 6, "ppv": 0.6,
                                     "npv": 0.8, "f1": 2 * 0.6 * 0.75 / 1.35})
    assert all(type(value) is float for value in metrics.values())
    assert threshold_metrics(Y, SCORE, 0.6)["sensitivity"] == 0.75  # score >= threshold is positive


def test_undefined_ratios_are_nan() -> None:
    metrics = threshold_metrics(Y, SCORE, 0.95)  # nobody predicted positive
    assert math.isnan(metrics["ppv"]) and math.isnan(metrics["f1"]) and metrics["sensitivity"] == 0.0
    assert math.isnan(binary_auc(np.ones(4), np.arange(4.0)))


def test_auc_and_youden() -> None:
    assert binary_auc(Y, SCORE) == pytest.approx(roc_auc_score(Y, SCORE))
    # J at 0.6 = 3/4 - 1/6 = 0.583 is the maximum (0.2: 1 - 4/6 = 0.333; 0.7: 0.5 - 1/6 = 0.333)
    assert youden_threshold(Y, SCORE) == 0.6


def test_multiclass_metrics_keys() -> None:
    y = np.array(["a", "b", "c", "a", "b", "c"])
    probabilities = np.eye(3)[[0, 1, 2, 1, 1, 2]] * 0.8 + 0.2 / 3
    metrics = multiclass_metrics(y, probabilities, ["a", "b", "c"])
    assert set(metrics) == {"top1_accuracy", "top2_accuracy", "auc_macro_ovr"}
    assert metrics["top1_accuracy"] == pytest.approx(5 / 6)
    assert math.isnan(multiclass_metrics(y[:2], probabilities[:2], ["a", "b", "c"])["auc_macro_ovr"])
