"""The classifier zoo: every member fits binary and multiclass problems deterministically, grids are well
formed, folds are stratified, probabilities follow a declared class order. The grid search: test_fold_tuning.py."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.model_selection import ParameterGrid
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
)

SITES = np.array(["breast", "kidney", "lung"])


def binary_problem(n: int = 80, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    return make_classification(n, 6, n_informative=4, n_redundant=0, random_state=seed)


def three_class_problem(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    X, y = make_classification(n, 6, n_informative=4, n_redundant=0, n_classes=3, n_clusters_per_class=1,
                               random_state=seed)
    return X, SITES[y]


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
    with pytest.raises(ValueError, match=r"at least 2 training patients; class counts: \{'good': 39, 'poor': 1\}"):
        stratified_folds(["good"] * 39 + ["poor"], 10, 0)
    with pytest.raises(ValueError, match=r"at least 2 classes .* class counts: \{'good': 40\}"):
        stratified_folds(["good"] * 40, 10, 0)


def test_folds_shrink_to_the_smallest_class() -> None:
    y = [0] * 37 + [1] * 3
    folds = stratified_folds(y, 10, 0)
    assert folds.get_n_splits() == 3
    assert all(set(np.asarray(y)[valid]) == {0, 1} for _, valid in folds.split(np.zeros((40, 1)), y))


def test_platt_svm_calibrates_on_as_many_folds_as_the_rarest_class_allows() -> None:
    X, y = binary_problem(40)
    y = np.array([0] * 37 + [1] * 3)
    svm = PlattScaledSVC(random_state=0).fit(X, y)
    assert svm.calibration_folds_ == 3
    assert not hasattr(svm, "decision_function")  # grid search ranks SVMs by their probabilities
    with pytest.raises(ValueError, match=r"class counts: \{0: 39, 1: 1\}"):
        PlattScaledSVC(random_state=0).fit(X, np.array([0] * 39 + [1]))
