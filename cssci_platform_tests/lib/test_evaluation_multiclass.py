"""Multiclass metrics (`cssci_platform.lib.evaluation.multiclass`): top-k on a constructed example, every
point estimate against scikit-learn (measured: equal to 1e-16), and the bootstrap CIs against the generic
`bootstrap_ci` loop with scikit-learn metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import precision_recall_fscore_support, roc_auc_score, top_k_accuracy_score

from cssci_platform.lib.evaluation import (
    bootstrap_ci,
    multiclass_evaluation,
    multiclass_metrics,
    one_vs_rest_auc,
    precision_recall_f1,
    top_k_accuracy,
)

CLASSES = ["A", "B", "C", "D"]


def test_top_k_on_a_constructed_example() -> None:
    """Patient 1: true A ranked 1st; 2: true B ranked 2nd; 3: true C ranked 3rd; 4: true D ranked 4th."""
    y = np.array(["A", "B", "C", "D"])
    probabilities = np.array([
        [0.70, 0.10, 0.15, 0.05],
        [0.50, 0.30, 0.15, 0.05],
        [0.40, 0.35, 0.20, 0.05],
        [0.10, 0.20, 0.30, 0.00],
    ])
    assert [top_k_accuracy(y, probabilities, CLASSES, k) for k in (1, 2, 3, 4)] == [0.25, 0.5, 0.75, 1.0]


def test_top_k_ties_follow_sklearn() -> None:
    y = np.array(["A", "B", "C", "A", "C"])
    probabilities = np.array([[0.4, 0.4, 0.2], [0.4, 0.4, 0.2], [1 / 3] * 3, [0.2, 0.4, 0.4], [0.5, 0.25, 0.25]])
    for k in (1, 2):
        expected = top_k_accuracy_score(y, probabilities, k=k, labels=["A", "B", "C"])
        assert top_k_accuracy(y, probabilities, ["A", "B", "C"], k) == pytest.approx(expected)


def random_predictions(seed: int = 0, n: int = 240) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, len(CLASSES), n)
    logits = rng.normal(0, 1, (n, len(CLASSES))) + 1.2 * np.eye(len(CLASSES))[codes]
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return np.array(CLASSES)[codes], probabilities


def test_point_metrics_match_sklearn() -> None:
    y, probabilities = random_predictions()
    for k in (1, 2, 3):
        assert top_k_accuracy(y, probabilities, CLASSES, k) == pytest.approx(
            top_k_accuracy_score(y, probabilities, k=k, labels=CLASSES), abs=1e-15)
    predicted = np.array(CLASSES)[probabilities.argmax(axis=1)]
    precision, recall, f1, _ = precision_recall_fscore_support(y, predicted, labels=CLASSES, zero_division=np.nan)
    ours = precision_recall_f1(y, probabilities, CLASSES)
    for name, expected in [("precision", precision), ("recall", recall), ("f1", f1)]:
        assert [ours[name][c] for c in CLASSES] == pytest.approx(expected, abs=1e-15)
    auc = roc_auc_score(y, probabilities, multi_class="ovr", average=None, labels=CLASSES)
    assert [one_vs_rest_auc(y, probabilities, CLASSES)[c] for c in CLASSES] == pytest.approx(auc, abs=1e-15)


def test_evaluation_estimates_match_sklearn_and_legacy_metrics() -> None:
    y, probabilities = random_predictions(1)
    evaluation = multiclass_evaluation(y, probabilities, CLASSES, n=200, seed=0)
    legacy = multiclass_metrics(y, probabilities, CLASSES)
    assert set(evaluation.top_k_accuracy) == {1, 2, 3}
    assert evaluation.top_k_accuracy[2].estimate == pytest.approx(legacy["top2_accuracy"], abs=1e-15)
    assert evaluation.auc_macro_ovr.estimate == pytest.approx(legacy["auc_macro_ovr"], abs=1e-15)
    for metrics in (evaluation.precision, evaluation.recall, evaluation.f1, evaluation.auc_ovr):
        assert list(metrics) == CLASSES
        assert all(ci.low <= ci.estimate <= ci.high and ci.n_replicates == 200 for ci in metrics.values())


def test_bootstrap_cis_equal_the_generic_loop() -> None:
    """Same seed, same stratified draws (classes listed in sorted order, so the strata match)."""
    y, probabilities = random_predictions(2, n=120)
    evaluation = multiclass_evaluation(y, probabilities, CLASSES, n=150, seed=5)

    def macro_auc(labels: np.ndarray, scores: np.ndarray) -> float:
        return float(roc_auc_score(labels, scores, multi_class="ovr", average="macro", labels=CLASSES))

    def recall_of_b(labels: np.ndarray, scores: np.ndarray) -> float:
        predicted = np.array(CLASSES)[scores.argmax(axis=1)]
        return float(np.mean(predicted[labels == "B"] == "B"))

    for ours, metric in [(evaluation.auc_macro_ovr, macro_auc), (evaluation.recall["B"], recall_of_b)]:
        reference = bootstrap_ci(y, probabilities, metric, n=150, seed=5)
        expected = (reference.estimate, reference.low, reference.high)
        assert (ours.estimate, ours.low, ours.high) == pytest.approx(expected, abs=1e-12)


def test_three_classes_report_top1_and_top2_only() -> None:
    y, probabilities = random_predictions(3, n=60)
    keep = y != "D"
    three = probabilities[keep][:, :3] / probabilities[keep][:, :3].sum(axis=1, keepdims=True)
    evaluation = multiclass_evaluation(y[keep], three, ["A", "B", "C"], n=50)
    assert set(evaluation.top_k_accuracy) == {1, 2}


def test_never_predicted_class_has_nan_precision() -> None:
    y = np.array(["A", "B", "C", "C"])
    probabilities = np.array([[0.8, 0.1, 0.1], [0.6, 0.3, 0.1], [0.1, 0.2, 0.7], [0.2, 0.2, 0.6]])
    metrics = precision_recall_f1(y, probabilities, ["A", "B", "C"])
    assert math.isnan(metrics["precision"]["B"]) and metrics["recall"]["B"] == 0.0 and metrics["precision"]["A"] == 0.5


def test_unknown_labels_are_rejected() -> None:
    with pytest.raises(ValueError, match="not in classes"):
        top_k_accuracy(np.array(["A", "Z"]), np.full((2, 2), 0.5), ["A", "B"], 1)


def test_multiclass_metrics_accept_classes_in_any_declared_order():
    from cssci_platform.lib.evaluation.performance import multiclass_metrics

    rng = np.random.default_rng(3)
    classes = ["lung", "kidney", "breast", "thyroid", "prostate"]  # a manifest's order, not sorted
    y = np.array(classes * 8)
    probabilities = rng.dirichlet(np.ones(5), size=len(y))
    declared = multiclass_metrics(y, probabilities, classes)
    order = np.argsort(classes)
    sorted_ = multiclass_metrics(y, probabilities[:, order], [classes[i] for i in order])
    assert declared == pytest.approx(sorted_)
