"""The classifier zoo of the three studies, their hyper-parameter grids and the stratified CV folds.

Names follow the studies' tables: LR, NaiveBayes, SVM, KNN, RandomForest, ExtraTrees, XGBoost, LightGBM,
GradientBoosting, AdaBoost, MLP. `make_estimator(name, seed, n_jobs)` builds an unfitted estimator;
`grid_for(name, preset, step)` gives its grid, keys prefixed for the Pipeline step that holds it. Presets:
``"full"`` (what a study searches) and ``"fast"`` (1-4 combinations, for the CPU demo and tests).

Every estimator accepts string or integer labels, binary or multiclass, and exposes ``classes_`` in sorted
label order (``np.unique``); ``predict_proba`` columns follow ``classes_``. `positive_scores` reorders them
to a declared class order.

The grid search itself is `cssci_platform.lib.modeling.tuning`: it takes the grids from `grid_for_rows` and
the folds from `stratified_folds` (seeded, stratified, on TRAINING rows only: DESIGN.md section 2).

Determinism: the same seed, data, n_jobs and library versions give identical probabilities (tested).
XGBoost uses ``tree_method="hist"`` (deterministic on CPU); LightGBM ``deterministic=True`` with
``force_row_wise=True``. Multi-threaded BLAS (MLP, LR) may differ in the last bits across machines.

SVM probabilities: ``SVC(probability=True)`` is deprecated in scikit-learn 1.9 (removed in 1.11), so `SVM`
is `PlattScaledSVC`: an SVC whose decision values are mapped to probabilities by Platt (sigmoid) scaling
fitted on seeded stratified out-of-fold decision values, the final SVC refitted on all rows (what libsvm's
probability=True did, via ``CalibratedClassifierCV(ensemble=False)``). Multiclass: one-vs-rest sigmoids,
normalized. It exposes no ``decision_function``, so the grid search ranks SVM candidates by the same
probabilities the studies report AUC from.
"""

from __future__ import annotations

import copy
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Self

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, MetaEstimatorMixin, clone
from sklearn.calibration import CalibratedClassifierCV
from sklearn.ensemble import (
    AdaBoostClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import ParameterGrid, StratifiedKFold
from sklearn.naive_bayes import GaussianNB
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import LabelEncoder
from sklearn.svm import SVC
from sklearn.utils.validation import check_is_fitted

from cssci_platform.lib.modeling.settings import CLASSIFIER_NAMES

GridPreset = Literal["full", "fast"]
ParamGrid = dict[str, list[Any]] | list[dict[str, list[Any]]]


class PlattScaledSVC(ClassifierMixin, BaseEstimator):
    """SVC with Platt-scaled probabilities from seeded stratified out-of-fold decision values.

    ``calibration_folds`` is shrunk to the smallest class count of the rows it is fitted on (at least 2), so
    rare classes inside a CV training fold do not break the fit; ``calibration_folds_`` records the number used.
    """

    def __init__(
        self,
        C: float = 1.0,
        kernel: str = "rbf",
        gamma: str | float = "scale",
        degree: int = 3,
        class_weight: dict | str | None = None,
        calibration_folds: int = 5,
        random_state: int | None = None,
    ) -> None:
        self.C = C
        self.kernel = kernel
        self.gamma = gamma
        self.degree = degree
        self.class_weight = class_weight
        self.calibration_folds = calibration_folds
        self.random_state = random_state

    def fit(self, X: Any, y: Any) -> Self:
        self.calibration_folds_ = min(self.calibration_folds, min(class_counts(y).values()))
        if self.calibration_folds_ < 2:
            raise ValueError(f"Platt scaling needs >= 2 rows per class; class counts: {class_counts(y)}")
        svc = SVC(C=self.C, kernel=self.kernel, gamma=self.gamma, degree=self.degree, class_weight=self.class_weight)
        folds = StratifiedKFold(self.calibration_folds_, shuffle=True, random_state=self.random_state)
        self.calibrated_ = CalibratedClassifierCV(svc, method="sigmoid", cv=folds, ensemble=False).fit(X, y)
        self.classes_ = self.calibrated_.classes_
        self.n_features_in_ = self.calibrated_.n_features_in_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.predict_proba(X)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class LabelEncodedClassifier(MetaEstimatorMixin, ClassifierMixin, BaseEstimator):
    """Fits `estimator` on labels encoded 0..k-1 (XGBoost's requirement); ``classes_`` are the original labels."""

    def __init__(self, estimator: Any = None) -> None:
        self.estimator = estimator

    def fit(self, X: Any, y: Any, **fit_params: Any) -> Self:
        self.label_encoder_ = LabelEncoder().fit(np.asarray(y))
        self.classes_ = self.label_encoder_.classes_
        self.estimator_ = clone(self.estimator).fit(X, self.label_encoder_.transform(np.asarray(y)), **fit_params)
        self.n_features_in_ = getattr(self.estimator_, "n_features_in_", None)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return np.asarray(self.estimator_.predict_proba(X), dtype=float)

    def predict(self, X: Any) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    @property
    def feature_importances_(self) -> np.ndarray:
        check_is_fitted(self, "estimator_")
        return self.estimator_.feature_importances_


def _xgboost(seed: int, n_jobs: int) -> LabelEncodedClassifier:
    from xgboost import XGBClassifier  # imported on use: a heavy import most callers never need

    return LabelEncodedClassifier(
        XGBClassifier(tree_method="hist", random_state=seed, n_jobs=n_jobs, verbosity=0)
    )


def _lightgbm(seed: int, n_jobs: int) -> Any:
    from lightgbm import LGBMClassifier

    return LGBMClassifier(random_state=seed, n_jobs=n_jobs, verbose=-1, deterministic=True, force_row_wise=True)


def _mlp(seed: int, n_jobs: int) -> MLPClassifier:
    # no early stopping: its validation split would hold out rows and add a second source of randomness
    return MLPClassifier(hidden_layer_sizes=(32,), max_iter=2000, early_stopping=False, random_state=seed)


@dataclass(frozen=True)
class ClassifierSpec:
    """One zoo member: ``build(seed, n_jobs)`` makes it unfitted; grids' keys are relative to that estimator."""

    name: str
    build: Callable[[int, int], Any]
    grids: Mapping[GridPreset, ParamGrid]


_FOREST_FULL: dict[str, list[Any]] = {
    "n_estimators": [100, 300, 500], "max_depth": [None, 3, 5, 10], "min_samples_leaf": [1, 3, 5],
}
_FOREST_FAST: dict[str, list[Any]] = {"n_estimators": [100], "max_depth": [None, 4]}
_SVM_C = [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]

CLASSIFIERS: dict[str, ClassifierSpec] = {
    spec.name: spec
    for spec in [
        ClassifierSpec(
            "LR",
            lambda seed, n_jobs: LogisticRegression(max_iter=5000, random_state=seed),
            {"full": {"C": [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1000.0]},
             "fast": {"C": [0.1, 1.0, 10.0]}},
        ),
        ClassifierSpec(
            "NaiveBayes",
            lambda seed, n_jobs: GaussianNB(),
            {"full": {"var_smoothing": [float(v) for v in np.logspace(-12, 0, 13)]},
             "fast": {"var_smoothing": [1e-9, 1e-5]}},
        ),
        ClassifierSpec(
            "SVM",
            lambda seed, n_jobs: PlattScaledSVC(random_state=seed),
            {"full": [{"kernel": ["linear"], "C": _SVM_C},
                      {"kernel": ["rbf"], "C": _SVM_C, "gamma": ["scale", 0.001, 0.01, 0.1, 1.0]}],
             "fast": {"kernel": ["linear", "rbf"], "C": [0.1, 1.0]}},
        ),
        ClassifierSpec(
            "KNN",
            lambda seed, n_jobs: KNeighborsClassifier(n_jobs=n_jobs),
            {"full": {"n_neighbors": [3, 5, 7, 9, 11, 15, 21], "weights": ["uniform", "distance"], "p": [1, 2]},
             "fast": {"n_neighbors": [5, 9], "weights": ["uniform", "distance"]}},
        ),
        ClassifierSpec(
            "RandomForest",
            lambda seed, n_jobs: RandomForestClassifier(random_state=seed, n_jobs=n_jobs),
            {"full": _FOREST_FULL, "fast": _FOREST_FAST},
        ),
        ClassifierSpec(
            "ExtraTrees",
            lambda seed, n_jobs: ExtraTreesClassifier(random_state=seed, n_jobs=n_jobs),
            {"full": _FOREST_FULL, "fast": _FOREST_FAST},
        ),
        ClassifierSpec(
            "XGBoost",
            _xgboost,
            {"full": {"estimator__learning_rate": [0.01, 0.05, 0.1, 0.3],
                      "estimator__n_estimators": [100, 300, 500],
                      "estimator__max_depth": [2, 3, 4, 6]},
             "fast": {"estimator__learning_rate": [0.1], "estimator__n_estimators": [100],
                      "estimator__max_depth": [2, 4]}},
        ),
        ClassifierSpec(
            "LightGBM",
            _lightgbm,
            {"full": {"learning_rate": [0.01, 0.05, 0.1], "n_estimators": [100, 300],
                      "num_leaves": [7, 15, 31], "min_child_samples": [5, 10, 20]},
             "fast": {"learning_rate": [0.1], "n_estimators": [100], "num_leaves": [7, 15],
                      "min_child_samples": [10]}},
        ),
        ClassifierSpec(
            "GradientBoosting",
            lambda seed, n_jobs: GradientBoostingClassifier(random_state=seed),
            {"full": {"n_estimators": [50, 100, 200, 300], "learning_rate": [0.01, 0.05, 0.1, 0.2],
                      "max_depth": [2, 3, 4]},
             "fast": {"n_estimators": [100], "learning_rate": [0.1], "max_depth": [2, 3]}},
        ),
        ClassifierSpec(
            "AdaBoost",
            lambda seed, n_jobs: AdaBoostClassifier(random_state=seed),
            {"full": {"n_estimators": [50, 100, 200, 500], "learning_rate": [0.01, 0.1, 0.5, 1.0]},
             "fast": {"n_estimators": [50, 100], "learning_rate": [0.5, 1.0]}},
        ),
        ClassifierSpec(
            "MLP",
            _mlp,
            {"full": {"hidden_layer_sizes": [(16,), (32,), (64,), (32, 16), (64, 32)],
                      "alpha": [1e-5, 1e-4, 1e-3, 1e-2, 1e-1]},
             "fast": {"hidden_layer_sizes": [(32,)], "alpha": [1e-4, 1e-2]}},
        ),
    ]
}
if tuple(CLASSIFIERS) != CLASSIFIER_NAMES:  # the config's names (lib/modeling/settings) are the ones built here
    raise ImportError(f"lib/classifiers builds {tuple(CLASSIFIERS)}, the study config names {CLASSIFIER_NAMES}: "
                      "make lib/modeling/settings.CLASSIFIER_NAMES list the same classifiers in the same order")


def classifier_spec(name: str) -> ClassifierSpec:
    if name not in CLASSIFIERS:
        raise ValueError(f"unknown classifier {name!r}; choose from {', '.join(CLASSIFIER_NAMES)}")
    return CLASSIFIERS[name]


def make_estimator(name: str, seed: int = 0, n_jobs: int = 1) -> Any:
    """An unfitted zoo member; ``seed`` goes to every random_state, ``n_jobs`` to every thread count."""
    return classifier_spec(name).build(seed, n_jobs)


def grid_for(name: str, preset: GridPreset = "fast", step: str | None = "clf") -> ParamGrid:
    """The grid of `name` for `preset`, keys prefixed ``<step>__`` (no prefix when `step` is None or "")."""
    grids = classifier_spec(name).grids
    if preset not in grids:
        raise ValueError(f"unknown grid preset {preset!r}; choose from {', '.join(grids)}")
    grid = copy.deepcopy(grids[preset])
    prefix = f"{step}__" if step else ""
    prefixed = [{prefix + key: values for key, values in part.items()} for part in _grid_parts(grid)]
    return prefixed if isinstance(grid, list) else prefixed[0]


ROWS_PER_LEAF_SHARE = 4  # a leaf may need at most a quarter of the training rows (LightGBM's min_child_samples)


def grid_for_rows(name: str, preset: GridPreset, n_rows: int, step: str | None = None) -> tuple[ParamGrid, list[str]]:
    """The grid of `name` adapted to `n_rows` training rows, and the decisions taken. LightGBM's min_child_samples
    (fast grid 10, full up to 20) is capped at n_rows / 4: with fewer rows than two leaves need it grows no tree and
    predicts a constant (AUC 0.5 everywhere)."""
    grid = grid_for(name, preset, step)
    if name != "LightGBM":
        return grid, []
    cap = max(2, n_rows // ROWS_PER_LEAF_SHARE)
    key = f"{step}__min_child_samples" if step else "min_child_samples"
    notes = []
    for part in _grid_parts(grid):
        wanted = part.get(key, [])
        if any(value > cap for value in wanted):
            part[key] = sorted({min(value, cap) for value in wanted})
            notes.append(f"LightGBM min_child_samples {wanted} capped at {cap} (= {n_rows} training rows / "
                         f"{ROWS_PER_LEAF_SHARE}): larger leaves leave no split and a constant predictor")
    return grid, notes


def n_combinations(name: str, preset: GridPreset) -> int:
    return len(ParameterGrid(grid_for(name, preset, step=None)))


def _grid_parts(grid: ParamGrid) -> list[dict[str, list[Any]]]:
    return grid if isinstance(grid, list) else [grid]


def class_counts(y: Any) -> dict[Any, int]:
    """Rows per class, in sorted class order."""
    counts = Counter(np.asarray(y).tolist())
    return {label: counts[label] for label in sorted(counts)}


def stratified_folds(y: Any, cv_folds: int, seed: int) -> StratifiedKFold:
    """Seeded stratified k-fold with k = min(cv_folds, smallest class count); every fold holds every class."""
    counts = class_counts(y)
    if len(counts) < 2:
        raise ValueError(f"cross-validation needs at least 2 classes in the training rows; class counts: {counts}")
    smallest = min(counts.values())
    if smallest < 2:
        raise ValueError(
            f"cannot make stratified CV folds: every class needs at least 2 training patients; "
            f"class counts: {counts}"
        )
    return StratifiedKFold(n_splits=min(cv_folds, smallest), shuffle=True, random_state=seed)


def positive_scores(model: Any, X: Any, class_order: Sequence[Any]) -> np.ndarray:
    """P(class_order[1]) for a binary model (class_order = (negative, positive)); else the (n, k) probability
    matrix with columns in `class_order`. `class_order` must name exactly the model's classes."""
    return align_probabilities(model.predict_proba(X), model.classes_, class_order)


def align_probabilities(probabilities: np.ndarray, classes: Sequence[Any], class_order: Sequence[Any]) -> np.ndarray:
    """Reorder probability columns (in `classes` order) to `class_order`; binary gives the positive column."""
    have, want = np.asarray(classes).tolist(), np.asarray(class_order).tolist()
    if len(want) != len(set(want)) or set(want) != set(have):
        raise ValueError(f"class order {want} does not name exactly the model's classes {have}")
    aligned = np.asarray(probabilities)[:, [have.index(label) for label in want]]
    return aligned[:, 1] if len(want) == 2 else aligned
