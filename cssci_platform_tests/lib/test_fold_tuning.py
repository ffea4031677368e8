"""The grid search the studies use (lib/modeling/tuning: the chain fitted once per CV fold): it learns from the
training rows it is given and nothing else, its out-of-fold probabilities never score a row with a model that saw
it, and the same seed gives the same search."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.classifiers import make_estimator, n_combinations, positive_scores, stratified_folds
from cssci_platform.lib.modeling.tuning import fit_chain_folds, tune_on_folds

FIT_ROWS: dict[str, list[frozenset[str]]] = defaultdict(list)
TRANSFORMED_ROWS: dict[str, set[str]] = defaultdict(set)
CLASSIFIER_FIT_ROWS: list[frozenset[str]] = []


def separable_frame(n: int = 160, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_classification(n, 8, n_informative=3, n_redundant=0, class_sep=1.5, random_state=seed)
    index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_key")
    return pd.DataFrame(X, index=index, columns=[f"f{j}" for j in range(8)]), pd.Series(y, index=index)


def scaling_chain() -> Pipeline:
    return Pipeline([("scale", StandardScaler().set_output(transform="pandas"))])


class RowRecorder(TransformerMixin, BaseEstimator):
    """Passes data through and records, in module-level logs (clones share them via `tag`), which rows it saw."""

    def __init__(self, tag: str = "default") -> None:
        self.tag = tag

    def fit(self, X: pd.DataFrame, y: Any = None) -> RowRecorder:
        FIT_ROWS[self.tag].append(frozenset(X.index))
        self.n_rows_seen_ = len(X)  # a fitted attribute: Pipeline.transform checks that its steps are fitted
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        TRANSFORMED_ROWS[self.tag].update(X.index)
        return X


class RecordingLogisticRegression(LogisticRegression):
    """LR that records the rows of every fit (the classifier step of the search)."""

    def fit(self, X: pd.DataFrame, y: Any, sample_weight: Any = None) -> RecordingLogisticRegression:
        CLASSIFIER_FIT_ROWS.append(frozenset(X.index))
        return super().fit(X, y, sample_weight)


@pytest.mark.parametrize("name", ["LR", "SVM", "RandomForest", "XGBoost"])
def test_the_tuned_model_beats_chance_on_held_out_rows(name: str) -> None:
    X, y = separable_frame()
    train, test = X.index[:120], X.index[120:]
    folds = fit_chain_folds(scaling_chain(), X.loc[train], y.loc[train], 5, 0)
    tuned = tune_on_folds(folds, make_estimator(name), name)
    assert roc_auc_score(y.loc[test], positive_scores(tuned.model, X.loc[test], [0, 1])) > 0.8
    assert tuned.cv_score_mean > 0.7 and tuned.cv_score_sd > 0 and len(tuned.cv_fold_scores) == 5
    assert tuned.n_candidates == n_combinations(name, "fast")
    assert roc_auc_score(y.loc[train], tuned.oof_probabilities[:, 1]) > 0.7


def test_the_search_sees_only_the_training_rows() -> None:
    X, y = separable_frame(120)
    train, held_out = X.index[:90], set(X.index[90:])
    FIT_ROWS["leak"].clear()
    CLASSIFIER_FIT_ROWS.clear()
    chain = Pipeline([("record", RowRecorder("leak"))])
    tuned = tune_on_folds(fit_chain_folds(chain, X.loc[train], y.loc[train], 5, 0), RecordingLogisticRegression(), "LR")
    assert len(FIT_ROWS["leak"]) == 5 + 1  # the chain: once per CV fold, then on all training rows
    assert len(CLASSIFIER_FIT_ROWS) == tuned.n_candidates * 5 + 1  # every candidate on every fold, then the refit
    for fits in (FIT_ROWS["leak"], CLASSIFIER_FIT_ROWS):
        assert all(not (rows & held_out) for rows in fits)
        assert fits[-1] == frozenset(train)  # the refit used every training row
        assert all(len(rows) < len(train) for rows in fits[:-1])
    assert not (TRANSFORMED_ROWS["leak"] & held_out)


def test_out_of_fold_probabilities_are_the_best_candidate_on_the_same_folds() -> None:
    X, y = separable_frame(100)
    tuned = tune_on_folds(fit_chain_folds(scaling_chain(), X, y, 5, 4), make_estimator("KNN"), "KNN")
    best = Pipeline([*scaling_chain().steps, ("clf", make_estimator("KNN").set_params(**tuned.best_params))])
    expected = cross_val_predict(best, X, y, cv=stratified_folds(y, 5, 4), method="predict_proba")
    np.testing.assert_allclose(tuned.oof_probabilities, expected, atol=1e-12)
    assert not np.allclose(tuned.oof_probabilities, tuned.model.predict_proba(X))  # a row never scores itself


def test_tuning_is_reproducible() -> None:
    X, y = separable_frame(100)
    first = tune_on_folds(fit_chain_folds(scaling_chain(), X, y, 3, 2), make_estimator("MLP", seed=2), "MLP")
    again = tune_on_folds(fit_chain_folds(scaling_chain(), X, y, 3, 2), make_estimator("MLP", seed=2), "MLP")
    assert first.best_params == again.best_params and first.cv_fold_scores == again.cv_fold_scores
    np.testing.assert_array_equal(first.oof_probabilities, again.oof_probabilities)
    np.testing.assert_array_equal(first.model.predict_proba(X), again.model.predict_proba(X))
