"""Pipelines per signature: harmonization -> selection chain -> classifier, all fitted on training rows only.

Input rows carry the signature's feature columns plus ``center`` (ComBat's batch). Every fitted parameter
(ComBat estimates, scaler, filters, mRMR, LASSO, PCA, classifier) lives inside the returned `Pipeline`, so a
fit on the training split (or a CV training fold) cannot see any other patient (DESIGN.md section 2).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin, clone
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import PredefinedSplit
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted

from cssci_platform.lib.classifiers import stratified_folds
from cssci_platform.lib.compact_state import CompactNames
from cssci_platform.lib.harmonization import undersized_batches
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.matrix import CLIN, DL, RAD
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.selection import (
    ChannelPCA,
    ICCFilter,
    LassoSelector,
    MRMRSelector,
    RankTestFilter,
    SpearmanRedundancyFilter,
    ZScoreScaler,
    single_valued_columns,
)
from cssci_platform.lib.selection.settings import SelectionSettings

BATCH = "center"


@dataclass(frozen=True)
class ChainSettings:
    """What one fit's pipeline is built from: the study's harmonization and selection settings, plus the values of
    this fit (the ICC table of `feature_reliability`, LASSO's CV folds = `models.cv_folds`, the seed)."""

    harmonization: HarmonizationSettings = field(default_factory=HarmonizationSettings)
    selection: SelectionSettings = field(default_factory=SelectionSettings)
    icc_table: pd.DataFrame | None = None  # feature -> icc; the ICC filter runs when given and icc_threshold is set
    lasso_cv: int = 10
    seed: int = 0


class ColumnSubset(CompactNames, BaseEstimator, TransformerMixin):
    """Keep the named columns (all but the batch column when None; plus the batch column when `keep_batch`)."""

    def __init__(self, columns: list[str] | None = None, keep_batch: bool = True) -> None:
        self.columns = columns
        self.keep_batch = keep_batch

    def fit(self, X: pd.DataFrame, y: Any = None) -> ColumnSubset:
        chosen = list(self.columns) if self.columns is not None else [c for c in X.columns if c != BATCH]
        self.columns_ = chosen + ([BATCH] if self.keep_batch and BATCH in X.columns else [])
        missing = [c for c in self.columns_ if c not in X.columns]
        if missing:
            raise ValueError(f"input lacks {len(missing)} column(s), e.g. {missing[:3]}")
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "columns_")
        return X.loc[:, self.columns_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.columns_, dtype=object)


class ConstantFeatureDropper(CompactNames, BaseEstimator, TransformerMixin):
    """Drop features constant on the training rows (ComBat and the rank tests cannot use them)."""

    def fit(self, X: pd.DataFrame, y: Any = None) -> ConstantFeatureDropper:
        features = X.drop(columns=[BATCH], errors="ignore")
        constant = features.columns[single_valued_columns(features)]
        if len(constant) == features.shape[1]:
            raise ValueError(
                f"all {features.shape[1]} features are constant on the {len(X)} training rows: no feature is "
                "left to model"
            )
        self.dropped_ = list(constant)
        dropped = set(constant)
        self.kept_ = [c for c in X.columns if c not in dropped]
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "kept_")
        return X.loc[:, self.kept_]

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(self.kept_, dtype=object)


class RadScoreCombinedClassifier(CompactNames, BaseEstimator, ClassifierMixin):
    """The studies' combined model: logistic regression on clinical factors + the radiomics signature's score.

    The Rad-score is the linear predictor (logit) of `rad_model`, a radiomics pipeline ending in logistic
    regression. The head is fitted by cross-fitting (stacking; Wolpert 1992, van der Laan et al. 2007's super
    learner): on the *out-of-fold* Rad-scores of the training rows (seeded stratified `stacking_folds`-fold CV, the
    Rad pipeline refitted on each fold's other rows), so a Rad model that only memorises its training rows earns
    no weight. New patients are scored with the Rad pipeline refitted on all training rows (`rad_model_`).
    `head_scores_` keeps the out-of-fold scores the head saw and `head_score_rows_` the training rows' index labels
    (plain array and list: the pipeline is saved with skops); clinical columns are median-imputed and standardised.
    """

    def __init__(
        self,
        rad_model: Pipeline | None = None,
        clinical_columns: list[str] | None = None,
        C: float = 1.0,
        stacking_folds: int = 5,
        seed: int = 0,
    ) -> None:
        self.rad_model = rad_model
        self.clinical_columns = clinical_columns
        self.C = C
        self.stacking_folds = stacking_folds
        self.seed = seed

    def fit(self, X: pd.DataFrame, y: Any) -> RadScoreCombinedClassifier:
        self.rad_model_, self.head_scores_ = _fitted_rad_parts(
            self.rad_model,
            X.drop(columns=self.clinical_columns),
            pd.Series(np.asarray(y), index=X.index),
            self.stacking_folds,
            self.seed,
        )
        self.head_score_rows_ = [str(key) for key in X.index]
        self.clinical_ = Pipeline([("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())])
        clinical = self.clinical_.fit_transform(X.loc[:, self.clinical_columns])
        self.head_ = LogisticRegression(C=self.C, max_iter=5000)
        self.head_.fit(np.column_stack([clinical, self.head_scores_]), y)
        self.classes_ = self.head_.classes_
        return self

    def rad_score(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "head_")
        return self.rad_model_.decision_function(X.drop(columns=self.clinical_columns))

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.head_.predict_proba(self._design(X))

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.head_.predict(self._design(X))

    def decision_function(self, X: pd.DataFrame) -> np.ndarray:
        return self.head_.decision_function(self._design(X))

    def _design(self, X: pd.DataFrame) -> np.ndarray:
        scaled = self.clinical_.transform(X.loc[:, self.clinical_columns])
        return np.column_stack([scaled, np.reshape(self.rad_score(X), (len(X), -1))])


_RAD_PARTS: dict[str, tuple[Pipeline, np.ndarray]] = {}
_RAD_PARTS_KEPT = 32  # more than the CV folds: tuning runs every candidate over every fold in turn


def _fitted_rad_parts(
    rad_model: Pipeline, X: pd.DataFrame, y: pd.Series, folds: int, seed: int
) -> tuple[Pipeline, np.ndarray]:
    """(Rad pipeline fitted on all rows, out-of-fold Rad-scores of the rows). Deterministic in its inputs, so recent
    results are kept: the head's grid candidates (they differ only in C) share the Rad fits of each CV fold."""
    key = joblib.hash((rad_model.get_params(deep=True), X, y, folds, seed))
    if key not in _RAD_PARTS:
        oof = _out_of_fold_scores(rad_model, X, y, folds, seed)
        while len(_RAD_PARTS) >= _RAD_PARTS_KEPT:
            _RAD_PARTS.pop(next(iter(_RAD_PARTS)))
        _RAD_PARTS[key] = (clone(rad_model).fit(X, y), np.asarray(oof, dtype=float))
    return _RAD_PARTS[key]


def _out_of_fold_scores(rad_model: Pipeline, X: pd.DataFrame, y: pd.Series, folds: int, seed: int) -> np.ndarray:
    """Decision values of each row from the Rad pipeline fitted on the other folds (`stacking_splits`). Inside a
    small CV fold a stacking fold's training part can be too small for two steps, handled as they are elsewhere:
    a center left with one patient is left out of that fold's fit (ComBat cannot estimate a one-patient batch; its
    held-out patients are then an unseen center, `unseen_center_policy`), and LASSO uses k = min(its CV folds,
    smallest class count), the convention of `stratified_folds`."""
    pieces = []
    for train, test in stacking_splits(X, y, folds, seed):
        model = clone(rad_model)
        if "combat" in model.named_steps and BATCH in X.columns:
            lone = undersized_batches(X[BATCH].iloc[train])
            train = train[~X[BATCH].iloc[train].isin(list(lone)).to_numpy()]
        if "lasso" in model.named_steps:
            smallest = int(y.iloc[train].value_counts().min())
            model.set_params(lasso__cv=min(model.get_params()["lasso__cv"], max(smallest, 2)))
        pieces.append((test, model.fit(X.iloc[train], y.iloc[train]).decision_function(X.iloc[test])))
    scores = np.empty((len(y), *pieces[0][1].shape[1:]))
    for test, values in pieces:
        scores[test] = values
    return scores


def stacking_splits(X: pd.DataFrame, y: pd.Series, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Seeded k-fold splits for cross-fitting, k = min(folds, smallest class count) as `stratified_folds`. Rows are
    ordered by center, then outcome, then at random, and dealt to the folds in turn: each center's (and within it each
    outcome's) patients are spread evenly over the folds, so a center with n >= 3 rows keeps at least 2 in every
    fold's training part (ComBat needs 2 per batch), which outcome-only stratification of a small CV fold does not
    guarantee."""
    k = stratified_folds(y, folds, seed).get_n_splits()
    centers = X[BATCH].astype(str).to_numpy() if BATCH in X.columns else np.zeros(len(X), dtype=str)
    order = np.lexsort((np.random.default_rng(seed).random(len(y)), y.astype(str).to_numpy(), centers))
    test_fold = np.empty(len(y), dtype=int)
    test_fold[order] = np.arange(len(y)) % k
    return list(PredefinedSplit(test_fold).split())


def feature_chain(columns: list[str], settings: ChainSettings) -> list[tuple[str, Any]]:
    """Harmonization and selection steps for radiomics and/or deep columns."""
    selection = settings.selection
    steps: list[tuple[str, Any]] = [("columns", ColumnSubset(columns)), ("drop_constant", ConstantFeatureDropper())]
    steps.append(
        ("combat", settings.harmonization.combat(BATCH))
        if settings.harmonization.enabled
        else ("drop_batch", ColumnSubset(None, keep_batch=False))
    )
    if any(c.startswith(DL) for c in columns):
        steps.append(("pca", ChannelPCA(selection.pca_components)))
    if settings.icc_table is not None and selection.icc_threshold is not None:
        icc_values = {str(k): float(v) for k, v in settings.icc_table["icc"].items()}  # plain dict: skops-serializable
        steps.append(("icc", ICCFilter(icc_values, selection.icc_threshold, missing="keep")))
    steps.append(("zscore", ZScoreScaler()))
    steps += _univariate_filters(selection)
    if selection.mrmr_k:
        steps.append(("mrmr", MRMRSelector(selection.mrmr_k, on_constant="drop")))
    if selection.lasso:
        steps.append(
            (
                "lasso",
                LassoSelector(
                    cv=settings.lasso_cv,
                    rule=selection.lasso_rule,
                    random_state=settings.seed,
                    on_small_class="fewer_folds",
                ),
            )
        )
    return steps


def _univariate_filters(selection: SelectionSettings) -> list[tuple[str, Any]]:
    """The rank test and Spearman redundancy filter, where the settings turn them on."""
    steps: list[tuple[str, Any]] = []
    if selection.rank_test:
        steps.append(("rank_test", RankTestFilter(selection.rank_alpha, on_constant="drop")))
    if selection.spearman_threshold is not None:
        steps.append(("spearman", SpearmanRedundancyFilter(selection.spearman_threshold, on_constant="drop")))
    return steps


def pipeline_input_columns(pipeline: Pipeline) -> list[str]:
    """The columns a fitted `build_pipeline` model reads (its first step, a `ColumnSubset`, with the batch column
    where the chain keeps it): what its MLflow signature and input example hold, not the whole feature matrix (a
    Clinical model reads 10 of the upper-limb protocol's 31,814 columns)."""
    first = pipeline.steps[0][1]
    if not isinstance(first, ColumnSubset):
        raise TypeError(f"the pipeline starts with {type(first).__name__}, not the ColumnSubset build_pipeline puts "
                        "first")
    check_is_fitted(first, "columns_")
    return list(first.columns_)


def build_pipeline(signature: Signature, columns: list[str], classifier: Any, settings: ChainSettings) -> Pipeline:
    """The whole model of one signature x classifier, classifier as the final step ``clf``."""
    if signature.kind == "clinical":
        steps = [
            ("columns", ColumnSubset(columns, keep_batch=False)),
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
            ("clf", classifier),
        ]
        return Pipeline(steps).set_output(transform="pandas")
    if signature.kind == "combined":
        clinical = [c for c in columns if c.startswith(CLIN)]
        radiomics = [c for c in columns if c.startswith(RAD)]
        rad_model = build_pipeline(Signature("rad"), radiomics, LogisticRegression(max_iter=5000), settings)
        steps = [
            ("columns", ColumnSubset(columns)),
            ("clf", RadScoreCombinedClassifier(rad_model, clinical, seed=settings.seed)),
        ]
        return Pipeline(steps).set_output(transform="pandas")
    return Pipeline([*feature_chain(columns, settings), ("clf", classifier)]).set_output(transform="pandas")


def paper_faithful_columns(rows: pd.DataFrame, y: Any, columns: list[str], settings: ChainSettings) -> list[str]:
    """The published order: z-score, rank test and correlation filter on the WHOLE development cohort, before
    the split. Leaks test labels into the feature set on purpose (mode `paper_faithful`, always tagged).
    Only radiomics columns are filtered: deep columns keep their PCA inside the training pipeline and clinical
    factors are chosen by the clinical model, as in the studies."""
    radiomics = [c for c in columns if c.startswith(RAD)]
    if not radiomics:
        return columns
    steps = [
        ("columns", ColumnSubset(radiomics, keep_batch=False)),
        ("drop_constant", ConstantFeatureDropper()),
        ("zscore", ZScoreScaler()),
        *_univariate_filters(settings.selection),
    ]
    prefilter = Pipeline(steps).set_output(transform="pandas").fit(rows, y)
    return list(prefilter.get_feature_names_out()) + [c for c in columns if not c.startswith(RAD)]


def after_paper_faithful_prefilter(settings: ChainSettings) -> ChainSettings:
    """The training pipeline of `paper_faithful`: the prefilter's steps are not repeated."""
    return replace(settings, selection=settings.selection.without_cohort_prefilter())
