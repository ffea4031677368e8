"""Point estimates: AUC, the Youden threshold, threshold metrics, multiclass AUC and top-k accuracy.

Scores are oriented so that higher means the positive class. The operating threshold is chosen on
training (out-of-fold) predictions and then frozen for every other cohort; `paper_faithful` runs may
re-pick it per cohort, which callers tag.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata
from sklearn.metrics import roc_auc_score, roc_curve, top_k_accuracy_score

THRESHOLD_METRICS = ("accuracy", "sensitivity", "specificity", "ppv", "npv", "f1")


@dataclass(frozen=True)
class ConfusionCounts:
    """Counts at a threshold; each field is an int or, for bootstrap replicates, an int array."""

    tp: np.ndarray | int
    tn: np.ndarray | int
    fp: np.ndarray | int
    fn: np.ndarray | int


def binary_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC; NaN when only one class is present (e.g. a small test set), never an exception."""
    y_true = np.asarray(y_true).astype(int)
    if len(np.unique(y_true)) < 2:
        return math.nan
    return float(roc_auc_score(y_true, score))


def youden_threshold(y_true: np.ndarray, score: np.ndarray) -> float:
    """The score threshold maximising sensitivity + specificity - 1 (ties: the higher threshold)."""
    fpr, tpr, thresholds = roc_curve(np.asarray(y_true).astype(int), score)
    finite = np.isfinite(thresholds)
    j = (tpr - fpr)[finite]
    best = np.flatnonzero(j == j.max())
    return float(thresholds[finite][best].max())


def confusion_counts(y_true: np.ndarray, score: np.ndarray, threshold: float) -> ConfusionCounts:
    """Counts when `score >= threshold` predicts positive; 2-D inputs count along the last axis."""
    y = np.asarray(y_true).astype(int) == 1
    predicted = np.asarray(score) >= threshold
    return ConfusionCounts(
        tp=(predicted & y).sum(axis=-1),
        tn=(~predicted & ~y).sum(axis=-1),
        fp=(predicted & ~y).sum(axis=-1),
        fn=(~predicted & y).sum(axis=-1),
    )


def metrics_from_counts(counts: ConfusionCounts) -> dict[str, np.ndarray]:
    """THRESHOLD_METRICS from counts; a ratio with a zero denominator is NaN (F1 too when PPV+Sen is 0)."""
    tp, tn, fp, fn = (np.asarray(c, dtype=float) for c in (counts.tp, counts.tn, counts.fp, counts.fn))
    sensitivity, ppv = ratio(tp, tp + fn), ratio(tp, tp + fp)
    return {
        "accuracy": ratio(tp + tn, tp + tn + fp + fn),
        "sensitivity": sensitivity,
        "specificity": ratio(tn, tn + fp),
        "ppv": ppv,
        "npv": ratio(tn, tn + fn),
        "f1": ratio(2 * ppv * sensitivity, ppv + sensitivity),
    }


def threshold_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, PPV, NPV, F1 when `score >= threshold` predicts positive."""
    metrics = metrics_from_counts(confusion_counts(y_true, score, threshold))
    return {name: float(value) for name, value in metrics.items()}


def multiclass_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Macro one-vs-rest AUC and top-1/2/3 accuracy; `probabilities` columns follow `classes`."""
    y = np.asarray(y_true).astype(str)
    order = np.argsort(
        np.asarray(classes, dtype=str)
    )  # scikit-learn wants sorted labels; the manifest's order need not be
    labels, probabilities = np.asarray(classes, dtype=str)[order], np.asarray(probabilities)[:, order]
    metrics = {
        f"top{k}_accuracy": float(top_k_accuracy_score(y, probabilities, k=k, labels=labels))
        for k in (1, 2, 3)
        if k < len(classes)
    }
    present = np.isin(labels, np.unique(y))
    if present.sum() == len(labels):
        metrics["auc_macro_ovr"] = float(
            roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=labels)
        )
    else:
        metrics["auc_macro_ovr"] = math.nan
    return metrics


def ratio(numerator: np.ndarray | float, denominator: np.ndarray | float) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0 (or either side is NaN); no warnings."""
    numerator, denominator = np.asarray(numerator, dtype=float), np.asarray(denominator, dtype=float)
    safe = np.where(denominator == 0, 1.0, denominator)
    return np.where(denominator == 0, np.nan, numerator / safe)


def rank_auc(labels: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUC (ties count 1/2) of each row: `labels` boolean, both (..., n); NaN for one class."""
    labels = np.asarray(labels, dtype=bool)
    ranks = rankdata(scores, method="average", axis=-1)
    positives = labels.sum(axis=-1).astype(float)
    negatives = labels.shape[-1] - positives
    rank_sum = np.where(labels, ranks, 0.0).sum(axis=-1)
    return ratio(rank_sum - positives * (positives + 1) / 2, positives * negatives)
