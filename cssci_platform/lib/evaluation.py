"""Model performance: AUC, the Youden threshold and threshold metrics, multiclass AUC and top-k accuracy.

Scores are oriented so that higher means the positive class. The operating threshold is chosen on
training (out-of-fold) predictions and then frozen for every other cohort; `paper_faithful` runs may
re-pick it per cohort, which callers tag.
"""

from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve, top_k_accuracy_score


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


def threshold_metrics(y_true: np.ndarray, score: np.ndarray, threshold: float) -> dict[str, float]:
    """Accuracy, sensitivity, specificity, PPV, NPV, F1 when `score >= threshold` predicts positive."""
    y = np.asarray(y_true).astype(int)
    predicted = (np.asarray(score) >= threshold).astype(int)
    tp = int(((predicted == 1) & (y == 1)).sum())
    tn = int(((predicted == 0) & (y == 0)).sum())
    fp = int(((predicted == 1) & (y == 0)).sum())
    fn = int(((predicted == 0) & (y == 1)).sum())
    sensitivity, ppv = _ratio(tp, tp + fn), _ratio(tp, tp + fp)
    return {
        "accuracy": _ratio(tp + tn, len(y)), "sensitivity": sensitivity, "specificity": _ratio(tn, tn + fp),
        "ppv": ppv, "npv": _ratio(tn, tn + fn),
        "f1": _ratio(2 * ppv * sensitivity, ppv + sensitivity) if not math.isnan(ppv + sensitivity) else math.nan,
    }


def multiclass_metrics(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    """Macro one-vs-rest AUC and top-1/2/3 accuracy; `probabilities` columns follow `classes`."""
    y = np.asarray(y_true).astype(str)
    labels = np.asarray(classes, dtype=str)
    metrics = {f"top{k}_accuracy": float(top_k_accuracy_score(y, probabilities, k=k, labels=labels))
               for k in (1, 2, 3) if k < len(classes)}
    present = np.isin(labels, np.unique(y))
    if present.sum() == len(labels):
        metrics["auc_macro_ovr"] = float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=labels))
    else:
        metrics["auc_macro_ovr"] = math.nan
    return metrics


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else math.nan
