"""The classifier zoo: every member fits binary and multiclass problems deterministically, grids are well
formed, and the grid search learns from the training rows it is given and nothing else."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.datasets import make_classification
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import ParameterGrid, StratifiedKFold, cross_val_predict
from sklearn.naive_bayes import GaussianNB
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.classifiers import (
    CLASSIFIER_NAMES,
    PlattScaledSVC,
    align_probabilities,
    grid_for,
    make_estimator,
    n_combinations,
    positive_scores,
    stratified_folds,
    tune_classifier,
)

SITES = np.array(["breast", "kidney", "lung"])


def binary_problem(n: int = 80, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n, 6, n_informative=4, n_redundant=0, random_state=seed)


def three_class_problem(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n, 6, n_informative=4, n_redundant=0, n_classes=3, n_clusters_per_class=1,
                               random_state=seed)
    return X, SITES[y]


def separable_frame(n: int = 160, seed: int = 0) -> tuple[pd.DataFrame, pd.Series]:
    X, y = make_classification(n, 8, n_informative=3, n_redundant=0, class_sep=1.5, random_state=seed)
    index = pd.Index([f"P{i:03d}" for i in range(n)], name="patient_key")
    return pd.DataFrame(X, index=index, columns=[f"f{j}" for j in range(8)]), pd.Series(y, index=index)


def zoo_pipeline(name: str, seed: int = 0) -> Pipeline:
    return Pipeline([("scale", StandardScaler()), ("clf", make_estimator(name, seed=seed))])


@pytest.mark.parametrize("problem", ["binary", "three_class"])
@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_every_classifier_gives_probabilities_deterministically(name: str, problem: str) -> None:
    X, y = binary_problem() if problem == "binary" else three_class_problem()
    first = make_estimator(name, seed=7).fit(X, y)
    again = make_estimator(name, seed=7).fit(X, y)
    probabilities = first.predict_proba(X)
    assert list(first.classes_) == sorted(set(y.tolist()))
    assert probabilities.shape == (len(y), len(first.classes_))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-6)
    assert np.all((probabilities >= 0) & (probabilities <= 1))
    np.testing.assert_array_equal(probabilities, again.predict_proba(X))
    assert set(first.predict(X).tolist()) <= set(y.tolist())
    assert np.mean(first.predict(X) == y) > 0.6  # learnt something on its own training rows


@pytest.mark.parametrize("name", ["RandomForest", "ExtraTrees", "XGBoost", "LightGBM", "KNN"])
def test_threaded_classifiers_do_not_depend_on_thread_count(name: str) -> None:
    X, y = three_class_problem()
    one = make_estimator(name, seed=3, n_jobs=1).fit(X, y).predict_proba(X)
    two = make_estimator(name, seed=3, n_jobs=2).fit(X, y).predict_proba(X)
    np.testing.assert_array_equal(one, two)


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_seed_and_thread_count_reach_the_estimator(name: str) -> None:
    params = make_estimator(name, seed=11, n_jobs=1).get_params(deep=True)
    assert all(value == 11 for key, value in params.items() if key.endswith("random_state"))
    # None: a parameter without effect (LogisticRegression's n_jobs is deprecated since scikit-learn 1.8)
    assert all(value in (1, None) for key, value in params.items() if key.endswith("n_jobs"))
    threaded = ("KNN", "RandomForest", "ExtraTrees", "XGBoost", "LightGBM")
    assert (name not in threaded) or any(value == 1 for key, value in params.items() if key.endswith("n_jobs"))
    if name not in ("NaiveBayes", "KNN"):  # the two with nothing random
        assert any(key.endswith("random_state") for key in params)


@pytest.mark.parametrize("name", CLASSIFIER_NAMES)
def test_grids_are_small_for_fast_larger_for_full_and_name_real_parameters(name: str) -> None:
    assert 1 <= n_combinations(name, "fast") <= 4
    assert n_combinations(name, "full") > n_combinations(name, "fast")
    pipeline = zoo_pipeline(name)
    known = set(pipeline.get_params(deep=True))
    for preset in ("fast", "full"):
        grid = grid_for(name, preset, step="clf")
        parts = grid if isinstance(grid, list) else [grid]
        assert all(key.startswith("clf__") and key in known for part in parts for key in part)
        for combination in ParameterGrid(grid):
            pipeline.set_params(**combination)  # every combination is settable


def test_grid_without_step_has_no_prefix_and_unknown_names_fail() -> None:
    assert grid_for("LR", "fast", step=None) == {"C": [0.1, 1.0, 10.0]}
    with pytest.raises(ValueError, match="unknown classifier 'Lasso'"):
        make_estimator("Lasso", seed=0)
    with pytest.raises(ValueError, match="unknown grid preset 'huge'"):
        grid_for("LR", "huge")  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["LR", "SVM", "RandomForest", "XGBoost"])
def test_tuned_model_beats_chance_on_held_out_rows(name: str) -> None:
    X, y = separable_frame()
    train, test = X.index[:120], X.index[120:]
    tuned = tune_classifier(zoo_pipeline(name), X.loc[train], y.loc[train], name, "fast", seed=0, cv_folds=5)
    assert roc_auc_score(y.loc[test], positive_scores(tuned.model, X.loc[test], [0, 1])) > 0.8
    assert tuned.cv_score_mean > 0.7 and tuned.cv_score_sd > 0
    assert tuned.n_splits == 5 and len(tuned.cv_fold_scores) == 5
    assert tuned.n_candidates == n_combinations(name, "fast")
    assert tuned.scoring == "roc_auc" and tuned.classes == (0, 1)
    assert set(tuned.best_params) <= set(tuned.model.get_params())
    assert roc_auc_score(y.loc[train], tuned.oof_scores([0, 1])) > 0.7


def test_out_of_fold_probabilities_are_the_best_candidate_on_the_same_folds() -> None:
    X, y = separable_frame(100)
    tuned = tune_classifier(zoo_pipeline("KNN"), X, y, "KNN", "fast", seed=4, cv_folds=5)
    folds = StratifiedKFold(5, shuffle=True, random_state=4)
    expected = cross_val_predict(zoo_pipeline("KNN").set_params(**tuned.best_params), X, y, cv=folds,
                                 method="predict_proba")
    np.testing.assert_array_equal(tuned.oof_probabilities, expected)
    in_sample = tuned.model.predict_proba(X)
    assert not np.allclose(tuned.oof_probabilities, in_sample)  # a row never scores itself


def test_tuning_is_reproducible() -> None:
    X, y = separable_frame(100)
    first = tune_classifier(zoo_pipeline("MLP", seed=2), X, y, "MLP", "fast", seed=2, cv_folds=3)
    again = tune_classifier(zoo_pipeline("MLP", seed=2), X, y, "MLP", "fast", seed=2, cv_folds=3)
    assert first.best_params == again.best_params and first.cv_fold_scores == again.cv_fold_scores
    np.testing.assert_array_equal(first.oof_probabilities, again.oof_probabilities)
    np.testing.assert_array_equal(first.model.predict_proba(X), again.model.predict_proba(X))


FIT_ROWS: dict[str, list[frozenset[str]]] = defaultdict(list)
TRANSFORMED_ROWS: dict[str, set[str]] = defaultdict(set)


class RowRecorder(TransformerMixin, BaseEstimator):
    """Passes data through and records, in module-level logs (clones share them via `tag`), which rows it saw."""

    def __init__(self, tag: str = "default") -> None:
        self.tag = tag

    def fit(self, X: pd.DataFrame, y: Any = None) -> RowRecorder:
        FIT_ROWS[self.tag].append(frozenset(X.index))
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        TRANSFORMED_ROWS[self.tag].update(X.index)
        return X


def test_grid_search_sees_only_the_training_rows() -> None:
    X, y = separable_frame(120)
    train, held_out = X.index[:90], set(X.index[90:])
    pipeline = Pipeline([("record", RowRecorder("leak")), ("clf", make_estimator("LR", seed=0))])
    tuned = tune_classifier(pipeline, X.loc[train], y.loc[train], "LR", "fast", seed=0, cv_folds=5)
    fits = FIT_ROWS["leak"]
    assert len(fits) == tuned.n_candidates * 5 + 1 + 5  # CV fits, the refit, the out-of-fold fits
    assert all(not (rows & held_out) for rows in fits)
    assert not (TRANSFORMED_ROWS["leak"] & held_out)
    assert frozenset(train) in fits  # the refit used every training row
    assert all(len(rows) < len(train) for rows in fits if rows != frozenset(train))


def test_multiclass_string_labels_use_macro_ovr_auc_and_align_to_a_declared_order() -> None:
    X, y = three_class_problem(120)
    tuned = tune_classifier(zoo_pipeline("LightGBM"), X, y, "LightGBM", "fast", seed=0, cv_folds=5)
    assert tuned.scoring == "roc_auc_ovr" and tuned.classes == ("breast", "kidney", "lung")
    assert tuned.oof_probabilities.shape == (120, 3)
    np.testing.assert_allclose(tuned.oof_probabilities.sum(axis=1), 1.0, atol=1e-9)
    order = ["lung", "breast", "kidney"]
    np.testing.assert_array_equal(tuned.oof_scores(order), tuned.oof_probabilities[:, [2, 0, 1]])
    probabilities = tuned.model.predict_proba(X)
    np.testing.assert_array_equal(positive_scores(tuned.model, X, order), probabilities[:, [2, 0, 1]])
    assert tuned.cv_score_mean > 0.7


def test_positive_scores_follow_the_declared_positive_class() -> None:
    X, y = binary_problem()
    labels = np.where(y == 1, "poor", "good")
    model = make_estimator("XGBoost", seed=0).fit(X, labels)
    assert list(model.classes_) == ["good", "poor"]
    np.testing.assert_array_equal(positive_scores(model, X, ["poor", "good"]), model.predict_proba(X)[:, 0])
    np.testing.assert_array_equal(positive_scores(model, X, ["good", "poor"]), model.predict_proba(X)[:, 1])
    with pytest.raises(ValueError, match="does not name exactly the model's classes"):
        positive_scores(model, X, ["good", "bad"])
    with pytest.raises(ValueError, match="does not name exactly"):
        align_probabilities(np.ones((2, 2)) / 2, ["a", "b"], ["a", "a"])


def test_too_few_patients_per_class_is_a_precise_error() -> None:
    X, y = separable_frame(40)
    y = pd.Series(["good"] * 39 + ["poor"], index=X.index)
    with pytest.raises(ValueError, match=r"at least 2 training patients; class counts: \{'good': 39, 'poor': 1\}"):
        tune_classifier(zoo_pipeline("LR"), X, y, "LR", "fast", seed=0)
    with pytest.raises(ValueError, match=r"at least 2 classes .* class counts: \{'good': 40\}"):
        stratified_folds(["good"] * 40, 10, 0)


def test_folds_shrink_to_the_smallest_class() -> None:
    X, y = separable_frame(40)
    y = pd.Series([0] * 37 + [1] * 3, index=X.index)
    tuned = tune_classifier(zoo_pipeline("NaiveBayes"), X, y, "NaiveBayes", "fast", seed=0, cv_folds=10)
    assert tuned.n_splits == 3 and len(tuned.cv_fold_scores) == 3


def test_a_grid_the_final_step_cannot_take_fails_before_fitting() -> None:
    X, y = separable_frame(40)
    pipeline = Pipeline([("scale", StandardScaler()), ("model", GaussianNB())])
    with pytest.raises(ValueError, match=r"the LR grid sets \['model__C'\].*GaussianNB"):
        tune_classifier(pipeline, X, y, "LR", "fast", seed=0)


def test_a_bare_estimator_is_tuned_with_unprefixed_keys() -> None:
    X, y = separable_frame(60)
    tuned = tune_classifier(make_estimator("KNN"), X, y, "KNN", "fast", seed=0, cv_folds=3)
    assert set(tuned.best_params) == {"n_neighbors", "weights"}


def test_platt_svm_calibrates_on_as_many_folds_as_the_rarest_class_allows() -> None:
    X, y = binary_problem(40)
    y = np.array([0] * 37 + [1] * 3)
    svm = PlattScaledSVC(random_state=0).fit(X, y)
    assert svm.calibration_folds_ == 3
    assert not hasattr(svm, "decision_function")  # grid search ranks SVMs by their probabilities
    with pytest.raises(ValueError, match=r"class counts: \{0: 39, 1: 1\}"):
        PlattScaledSVC(random_state=0).fit(X, np.array([0] * 39 + [1]))
