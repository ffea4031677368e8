"""Grid search over the classifier zoo with the selection chain fitted once per CV fold.

Equivalent to `GridSearchCV(Pipeline([*chain, clf]))` with the same stratified folds (the chain never sees
a validation fold's rows), but the chain - harmonization, filters, mRMR, LASSO, PCA: the expensive part -
is fitted once per fold and shared by every candidate of every classifier, instead of once per candidate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid
from sklearn.pipeline import Pipeline

from cssci_platform.lib.classifiers import grid_for_rows, stratified_folds
from cssci_platform.lib.selection import pipeline_reports

SMALL_FOLD_PER_CLASS = 10  # fewer patients of a class in a CV training fold: CV results cannot mean much


@dataclass
class ChainFolds:
    """The chain fitted on each training fold (and on all training rows), with the transformed rows."""

    y: pd.Series
    folds: list[tuple[np.ndarray, np.ndarray]]
    transformed: list[tuple[pd.DataFrame, pd.DataFrame]]  # (fold training rows, fold validation rows)
    full_chain: Pipeline
    full_features: pd.DataFrame
    fold_decisions: list[str] = field(default_factory=list)  # harmonization decisions of the CV folds' chains


@dataclass
class TunedClassifier:
    model: Pipeline  # the fitted chain + the best classifier refitted on all training rows
    best_params: dict
    cv_score_mean: float
    cv_score_sd: float
    cv_fold_scores: list[float]
    oof_probabilities: np.ndarray  # of the best candidate, rows as in `y`, columns as `model.classes_`
    n_candidates: int
    grid_decisions: list[str] = field(default_factory=list)  # how the grid was adapted to the rows (e.g. LightGBM)


def fit_chain_folds(chain: Pipeline, X: pd.DataFrame, y: pd.Series, cv_folds: int, seed: int) -> ChainFolds:
    """`X`, `y`: training rows only. A chain that fails on a CV fold says which fold and what its training part held."""
    splitter = stratified_folds(y, cv_folds, seed)
    folds = [(train, valid) for train, valid in splitter.split(X, y)]
    transformed, decisions = [], []
    for index, (train, valid) in enumerate(folds):
        fitted = clone(chain)
        try:
            transformed.append((fitted.fit_transform(X.iloc[train], y.iloc[train]), fitted.transform(X.iloc[valid])))
        except ValueError as error:
            raise ValueError(f"{fold_description(index, len(folds), X.iloc[train], y.iloc[train])}: {error}") from error
        decisions += [
            f"CV fold {index + 1} of {len(folds)}: combat: {note}"
            for report in pipeline_reports(fitted)
            if report.step == "combat"
            for note in report.notes
            if "small centers" in note
        ]
    full_chain = clone(chain)
    return ChainFolds(y, folds, transformed, full_chain, full_chain.fit_transform(X, y), decisions)


def fold_description(index: int, n_folds: int, X: pd.DataFrame, y: pd.Series) -> str:
    """'CV fold 2 of 5 (training part: 12 patients; classes {...}; centers {...})' for error messages."""
    classes = y.astype(str).value_counts().sort_index().to_dict()
    centers = X["center"].astype(str).value_counts().sort_index().to_dict() if "center" in X else {}
    where = f"; centers {centers}" if centers else ""
    return f"CV fold {index + 1} of {n_folds} (training part: {len(X)} patients; classes {classes}{where})"


def small_sample_warnings(folds: ChainFolds, cv_scores: list[float]) -> list[str]:
    """Why cross-validated results of these folds cannot mean much: a class with fewer than SMALL_FOLD_PER_CLASS
    patients in a CV training fold, and (then) fold AUCs without any spread."""
    smallest = min(int(folds.y.iloc[train].value_counts().min()) for train, _ in folds.folds)
    if smallest >= SMALL_FOLD_PER_CLASS:
        return []
    valid = min(len(v) for _, v in folds.folds)
    notes = [
        f"small sample: CV training folds hold as few as {smallest} patients of a class (< {SMALL_FOLD_PER_CLASS}) "
        f"and validation folds {valid} patients; CV AUCs are unstable"
    ]
    if len(cv_scores) > 1 and float(np.std(cv_scores)) == 0.0:
        notes.append(
            f"degenerate CV: AUC {cv_scores[0]:.3f} in every one of {len(cv_scores)} folds of {valid}+ patients "
            "(SD 0); not chosen as champion while another model is"
        )
    return notes


def tune_on_folds(folds: ChainFolds, estimator: Any, name: str, preset: str = "fast") -> TunedClassifier:
    """Every grid candidate scored by (macro one-vs-rest) ROC AUC on the fold validation rows; refit the best. The
    grid is adapted to the smallest CV training fold (`grid_for_rows`)."""
    grid, decisions = grid_for_rows(name, preset, min(len(train) for train, _ in folds.folds))  # type: ignore[arg-type]
    candidates = list(ParameterGrid(grid))
    results = [_cross_validate(folds, clone(estimator).set_params(**params)) for params in candidates]
    means = [float(np.mean(scores)) for scores, _ in results]
    best = int(np.argmax(means))  # first of equals: grids list simpler models first
    scores, oof = results[best]
    classifier = clone(estimator).set_params(**candidates[best]).fit(folds.full_features, folds.y)
    model = Pipeline([*folds.full_chain.steps, ("clf", classifier)])
    return TunedClassifier(
        model, candidates[best], means[best], float(np.std(scores, ddof=1)), scores, oof, len(candidates), decisions
    )


def _cross_validate(folds: ChainFolds, estimator: Any) -> tuple[list[float], np.ndarray]:
    classes = np.unique(folds.y)
    oof = np.zeros((len(folds.y), len(classes)))
    scores = []
    for (train, valid), (train_rows, valid_rows) in zip(folds.folds, folds.transformed):
        fitted = clone(estimator).fit(train_rows, folds.y.iloc[train])
        probabilities = _aligned(fitted, valid_rows, classes)
        oof[valid] = probabilities
        scores.append(_auc(folds.y.iloc[valid].to_numpy(), probabilities, classes))
    return scores, oof


def _aligned(fitted: Any, rows: pd.DataFrame, classes: np.ndarray) -> np.ndarray:
    """Probabilities in `classes` order (a fold may miss a class the model then never predicts)."""
    raw = fitted.predict_proba(rows)
    aligned = np.zeros((len(rows), len(classes)))
    for column, label in enumerate(fitted.classes_):
        aligned[:, np.searchsorted(classes, label)] = raw[:, column]
    return aligned


def _auc(y: np.ndarray, probabilities: np.ndarray, classes: np.ndarray) -> float:
    if len(classes) == 2:
        return float(roc_auc_score(y == classes[1], probabilities[:, 1]))
    return float(roc_auc_score(y, probabilities, multi_class="ovr", average="macro", labels=classes))
