"""Multiclass performance with bootstrap CIs: top-k accuracy, per-class precision/recall/F1, one-vs-rest
AUC per class and their unweighted (macro) mean. `probabilities` columns follow `classes`.

- top-k accuracy: the true class is among the k highest scores; ties are broken as scikit-learn's
  `top_k_accuracy_score` does (among equal scores the class listed later ranks higher). k runs over 1, 2, 3
  where k < number of classes (top-k with k = number of classes is always 1).
- precision/recall/F1 of class c: the predicted class is the argmax (first listed on ties); a zero
  denominator gives NaN (scikit-learn's `zero_division` would give 0 and a warning).
- one-vs-rest AUC of class c: Mann-Whitney AUC of column c for class c against all others (scikit-learn's
  `roc_auc_score(multi_class="ovr", average=None)`); macro = their mean.
CIs: stratified percentile bootstrap (see `bootstrap.py`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cssci_platform.lib.evaluation.bootstrap import (
    DEFAULT_REPLICATES,
    DEFAULT_SEED,
    BootstrapCI,
    replicate_indices,
    summarise,
)
from cssci_platform.lib.evaluation.performance import rank_auc, ratio


@dataclass(frozen=True)
class MulticlassEvaluation:
    top_k_accuracy: dict[int, BootstrapCI]
    precision: dict[str, BootstrapCI]
    recall: dict[str, BootstrapCI]
    f1: dict[str, BootstrapCI]
    auc_ovr: dict[str, BootstrapCI]
    auc_macro_ovr: BootstrapCI


def class_codes(y_true: np.ndarray, classes: list[str]) -> np.ndarray:
    """Index of each label in `classes` (labels compared as strings); unknown labels are a ValueError."""
    labels, names = np.asarray(y_true).astype(str), np.asarray(classes, dtype=str)
    unknown = sorted(set(labels) - set(names))
    if unknown:
        raise ValueError(f"labels not in classes: {unknown}")
    if len(set(names)) != len(names):
        raise ValueError(f"classes must be distinct: {list(classes)}")
    index = {name: i for i, name in enumerate(names)}
    return np.array([index[label] for label in labels], dtype=int)


def top_k_accuracy(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], k: int) -> float:
    codes, scores = _checked(y_true, probabilities, classes)
    return _top_k(codes, scores, k)


def precision_recall_f1(
    y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]
) -> dict[str, dict[str, float]]:
    """{"precision" | "recall" | "f1": {class: value}} for the argmax prediction."""
    codes, scores = _checked(y_true, probabilities, classes)
    return {name: dict(zip(classes, values.tolist())) for name, values in _precision_recall_f1(codes, scores).items()}


def one_vs_rest_auc(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> dict[str, float]:
    codes, scores = _checked(y_true, probabilities, classes)
    return dict(zip(classes, _one_vs_rest_auc(codes, scores).tolist()))


def multiclass_evaluation(
    y_true: np.ndarray, probabilities: np.ndarray, classes: list[str], n: int = DEFAULT_REPLICATES,
    seed: int | None = DEFAULT_SEED, stratified: bool = True, alpha: float = 0.05,
) -> MulticlassEvaluation:
    codes, scores = _checked(y_true, probabilities, classes)
    ks = [k for k in (1, 2, 3) if k < len(classes)]
    estimate = _point_metrics(codes, scores, ks)
    replicates = np.array([_point_metrics(codes[rows], scores[rows], ks)
                           for chunk in replicate_indices(codes, n, seed, stratified) for rows in chunk])
    cis = [summarise(value, replicates[:, column], alpha) for column, value in enumerate(estimate)]
    n_classes = len(classes)
    blocks = [cis[len(ks) + block * n_classes:len(ks) + (block + 1) * n_classes] for block in range(4)]
    precision, recall, f1, auc_ovr = (dict(zip(classes, block)) for block in blocks)
    return MulticlassEvaluation(dict(zip(ks, cis[:len(ks)])), precision, recall, f1, auc_ovr, cis[-1])


def _point_metrics(codes: np.ndarray, scores: np.ndarray, ks: list[int]) -> np.ndarray:
    """Flat vector: top-k accuracies, then per class precision, recall, F1, OvR AUC, then macro AUC."""
    prf = _precision_recall_f1(codes, scores)
    auc = _one_vs_rest_auc(codes, scores)
    return np.concatenate([[_top_k(codes, scores, k) for k in ks],
                           prf["precision"], prf["recall"], prf["f1"], auc, [auc.mean()]])


def _checked(y_true: np.ndarray, probabilities: np.ndarray, classes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    codes = class_codes(y_true, classes)
    scores = np.asarray(probabilities, dtype=float)
    if scores.shape != (len(codes), len(classes)) or not np.isfinite(scores).all():
        raise ValueError(f"probabilities must be finite with shape ({len(codes)}, {len(classes)}), got {scores.shape}")
    return codes, scores


def _top_k(codes: np.ndarray, scores: np.ndarray, k: int) -> float:
    true_score = np.take_along_axis(scores, codes[:, None], axis=1)
    index = np.arange(scores.shape[1])[None, :]
    ahead = (scores > true_score) | ((scores == true_score) & (index > codes[:, None]))
    return float(np.mean(ahead.sum(axis=1) < k))


def _precision_recall_f1(codes: np.ndarray, scores: np.ndarray) -> dict[str, np.ndarray]:
    n_classes = scores.shape[1]
    predicted = scores.argmax(axis=1)
    confusion = np.bincount(codes * n_classes + predicted, minlength=n_classes**2).reshape(n_classes, n_classes)
    hits = np.diag(confusion).astype(float)
    precision, recall = ratio(hits, confusion.sum(axis=0)), ratio(hits, confusion.sum(axis=1))
    return {"precision": precision, "recall": recall, "f1": ratio(2 * precision * recall, precision + recall)}


def _one_vs_rest_auc(codes: np.ndarray, scores: np.ndarray) -> np.ndarray:
    classes = np.arange(scores.shape[1])
    return rank_auc(codes[None, :] == classes[:, None], scores.T)
