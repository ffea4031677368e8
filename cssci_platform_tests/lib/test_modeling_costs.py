"""The avoidable modeling costs of issue 18, removed with results identical to the straightforward code they replace:
each test keeps that straightforward version (the code before the change) as the reference."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import StratifiedKFold
from sklearn.svm import l1_min_c

from cssci_platform.lib.harmonization import ComBat
from cssci_platform.lib.harmonization.frame import non_numeric_columns
from cssci_platform.lib.harmonization.study_table import varying_feature_columns
from cssci_platform.lib.modeling import chains
from cssci_platform.lib.modeling.chains import ChainSettings, ConstantFeatureDropper, RadScoreCombinedClassifier
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.modeling.training import SCORED_ROLES, TrainedModel, fit_signature
from cssci_platform.lib.selection import ChannelPCA, LassoSelector, ZScoreScaler, single_valued_columns
from cssci_platform.lib.selection.channel_pca import pca_solver
from cssci_platform.lib.selection.lasso import negative_log_loss
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform_tests.lib.test_experiment import cohort_matrix, holdout_roles


def awkward_frame() -> pd.DataFrame:
    """Columns that are constant, all NaN, NaN plus one value, +-0, +-inf, or vary; 9 rows."""
    rng = np.random.default_rng(3)
    n = 9
    nan_and_one = np.full(n, 2.5)
    nan_and_one[[1, 4]] = np.nan
    one_nan = np.full(n, np.nan)
    one_nan[0] = 1.0
    columns = {
        "varies": rng.normal(size=n),
        "constant": np.full(n, 7.0),
        "all_nan": np.full(n, np.nan),
        "nan_and_one_value": nan_and_one,
        "one_value_else_nan": one_nan,
        "signed_zeros": np.resize([0.0, -0.0], n),
        "plus_inf": np.full(n, np.inf),
        "both_infs": np.resize([np.inf, -np.inf], n),
        "varies_with_nan": np.where(np.arange(n) == 2, np.nan, rng.normal(size=n)),
        "float32_constant": np.full(n, 1.5, dtype=np.float32),
    }
    return pd.DataFrame(columns)


@pytest.mark.parametrize("dropna", [False, True])
def test_single_valued_columns_equal_pandas_nunique(dropna: bool) -> None:
    frame = awkward_frame()
    expected = (frame.nunique(dropna=dropna) <= 1).to_numpy()  # the per-column pandas count it replaces
    assert single_valued_columns(frame, dropna=dropna).tolist() == expected.tolist()
    assert single_valued_columns(frame.iloc[:0], dropna=dropna).tolist() == [True] * frame.shape[1]
    mixed = frame.assign(text=["a"] * len(frame), flag=[True, False] * 4 + [True])  # not all float: pandas decides
    assert single_valued_columns(mixed, dropna=dropna).tolist() == (mixed.nunique(dropna=dropna) <= 1).tolist()


def test_constant_feature_dropper_drops_what_nunique_drops() -> None:
    frame = awkward_frame().assign(center=["A", "B", "C"] * 3)
    dropper = ConstantFeatureDropper().fit(frame)
    features = frame.drop(columns=["center"])
    reference = list(features.columns[features.nunique(dropna=False) <= 1])
    assert dropper.dropped_ == reference
    assert dropper.kept_ == [c for c in frame.columns if c not in reference]


def test_varying_feature_columns_equal_the_per_column_count() -> None:
    matrix = cohort_matrix(seed=4, n=12, p=6)
    matrix["rad__T2__lesion__original__f0001"] = 3.0
    matrix.loc[matrix.index[:5], "rad__T2__lesion__original__f0002"] = np.nan
    matrix["dl__resnet18__original__0000"] = np.where(np.arange(12) < 6, np.nan, 1.0)
    matrix["dl__resnet18__original__0001"] = np.arange(12.0)
    train = pd.Series(np.arange(12) % 3 != 0, index=matrix.index)
    columns = [c for c in matrix.columns if c.startswith(("rad__", "dl__"))]
    reference = [c for c in columns if matrix.loc[train, c].nunique() > 1]
    assert varying_feature_columns(matrix, train) == reference
    assert "rad__T2__lesion__original__f0001" not in reference and "dl__resnet18__original__0000" not in reference


def test_non_numeric_feature_columns_found_by_dtype() -> None:
    frame = awkward_frame().assign(text=["a"] * 9, when=pd.Timestamp("2026-01-01"), count=np.arange(9))
    expected = [c for c in frame.columns if not pd.api.types.is_numeric_dtype(frame[c])]
    assert non_numeric_columns(frame, list(frame.columns)) == expected == ["text", "when"]
    with pytest.raises(ValueError, match="not numeric"):
        ComBat("center").fit(frame.assign(center=["A", "B", "C"] * 3))


def test_combat_report_and_transform_unchanged_with_unharmonized_classes() -> None:
    rng = np.random.default_rng(5)
    names = [f"rad__T2__lesion__original__original_{kind}_F{i}" for kind in ("shape", "firstorder") for i in range(4)]
    frame = pd.DataFrame(rng.normal(size=(18, 8)), columns=names).assign(center=["A", "B", "C"] * 6)
    frame.loc[frame["center"] == "B", names] += 2.0
    combat = ComBat("center", unharmonized_classes=("shape",)).fit(frame)
    out = combat.transform(frame)
    shape = [c for c in names if "_shape_" in c]
    assert combat.report_.statistic == {c: float(c not in shape) for c in names}
    np.testing.assert_array_equal(out[:, :4], frame[shape].to_numpy())  # left out: passed through
    assert abs(out[:, 4:][frame["center"] == "B"].mean() - out[:, 4:][frame["center"] == "A"].mean()) < 0.5


# -- LASSO: the same CV scores as sklearn's "neg_log_loss" scorer ---------------------------------------------------
def _lasso_data(n: int, p: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    signal = X[:, 0] + 0.5 * X[:, 1] + rng.normal(size=n)
    y = np.digitize(signal, np.quantile(signal, np.linspace(0, 1, classes + 1)[1:-1]))
    return X, y


@pytest.mark.parametrize(
    ("n", "p", "classes", "solver"), [(26, 20, 2, "liblinear"), (300, 12, 2, "liblinear"), (60, 8, 3, "saga")]
)
def test_negative_log_loss_scores_the_l1_path_exactly_as_sklearns_scorer(
    n: int, p: int, classes: int, solver: str
) -> None:
    X, y = _lasso_data(n, p, classes, seed=n)
    Cs = l1_min_c(X, y, loss="log") * np.logspace(0, 3, 8)

    def search(scoring: Any) -> np.ndarray:
        return (
            LogisticRegressionCV(
                Cs=Cs,
                l1_ratios=(1.0,),
                cv=StratifiedKFold(5, shuffle=True, random_state=0),
                scoring=scoring,
                refit=False,
                use_legacy_attributes=False,
                solver=solver,
                intercept_scaling=10.0,
                random_state=0,
                tol=1e-4,
                max_iter=10_000,
            )
            .fit(X, y)
            .scores_
        )

    np.testing.assert_array_equal(search(negative_log_loss), search("neg_log_loss"))


def test_lasso_selector_keeps_the_features_and_coefficients_of_the_sklearn_scorer(monkeypatch: Any) -> None:
    X, y = _lasso_data(40, 30, 2, seed=9)
    frame = pd.DataFrame(X, columns=[f"f{i}" for i in range(30)])
    new = LassoSelector(cv=5, random_state=3).fit(frame, y)
    original = LogisticRegressionCV.__init__

    def with_sklearn_scorer(self: Any, **kwargs: Any) -> None:  # the code before: scoring="neg_log_loss"
        original(self, **{**kwargs, "scoring": "neg_log_loss"})

    monkeypatch.setattr(LogisticRegressionCV, "__init__", with_sklearn_scorer)
    old = LassoSelector(cv=5, random_state=3).fit(frame, y)
    assert new.report_ == old.report_  # kept features, |coefficients|, chosen C, every mean CV score
    assert new.support_.tolist() == old.support_.tolist()


# -- PCA: covariance_eigh for n >> p, the components of the full SVD ------------------------------------------------
def test_pca_solver_by_shape() -> None:
    assert pca_solver(32, 512) == "full"
    assert pca_solver(1023, 512) == "full"
    assert pca_solver(1024, 512) == "covariance_eigh"


@pytest.mark.parametrize("n", [30, 400])
def test_channel_pca_equals_the_full_svd_within_1e_10(n: int) -> None:
    rng = np.random.default_rng(n)
    latent = rng.normal(size=(n, 6))
    values = np.logaddexp(0, latent @ rng.normal(size=(6, 64)) + 0.3 * rng.normal(size=(n, 64)))  # pooled-ReLU-like
    frame = pd.DataFrame(values, columns=[f"dl__resnet18__original__{i:04d}" for i in range(64)])
    pca = ChannelPCA(16).fit(frame)
    fitted = pca.pcas_["dl__resnet18__original"][1]
    assert fitted.svd_solver == ("covariance_eigh" if n >= 128 else "full")
    reference = PCA(n_components=16, svd_solver="full").fit(values)  # the code before, signs fixed by sklearn
    np.testing.assert_allclose(pca.transform(frame), reference.transform(values), rtol=0, atol=1e-10)
    np.testing.assert_allclose(fitted.explained_variance_ratio_, reference.explained_variance_ratio_, rtol=1e-10)


# -- training: the scored rows pass the signature's chain once; Combined reuses its Rad fits across C ---------------
def small_study() -> tuple[pd.DataFrame, pd.Series]:
    matrix = cohort_matrix(seed=2, n=72, p=40, signal=1.2, centers=3, center_shift=0.5)
    rng = np.random.default_rng(2)
    codes = (matrix["label"] == "1").to_numpy()
    matrix["clin__age"] = 50 + 10 * rng.normal(size=len(matrix)) + 5 * codes
    matrix["clin__sex__M"] = (rng.random(len(matrix)) < 0.5).astype(float)
    for i in range(12):
        matrix[f"dl__resnet18__original__{i:04d}"] = np.logaddexp(0, rng.normal(size=len(matrix)) + 0.8 * codes)
    return matrix, holdout_roles(matrix, seed=2)


SETTINGS = ChainSettings(selection=SelectionSettings(mrmr_k=8, pca_components=4), lasso_cv=3, seed=7)


@pytest.mark.parametrize(
    ("signature", "classifiers"), [(Signature("rad+dl"), ["LR", "NaiveBayes", "KNN"]), (Signature("combined"), ["LR"])]
)
def test_every_model_scores_as_its_whole_pipeline_and_the_chain_runs_once(
    signature: Signature, classifiers: list[str], monkeypatch: Any
) -> None:
    matrix, roles = small_study()
    scored = matrix[roles.isin(SCORED_ROLES)]
    transformed_sizes: list[int] = []
    original = ZScoreScaler.transform

    def counted(self: ZScoreScaler, X: Any) -> Any:
        transformed_sizes.append(len(X))
        return original(self, X)

    monkeypatch.setattr(ZScoreScaler, "transform", counted)
    fits = fit_signature(matrix, roles, signature, classifiers, "leakage_safe", ["0", "1"], SETTINGS, cv_folds=3)
    assert all(isinstance(fit, TrainedModel) for fit in fits) and len(fits) == len(classifiers)
    if signature.kind != "combined":  # the scored rows went through the chain's z-score once, not once per model
        assert transformed_sizes.count(len(scored)) == 1
    monkeypatch.setattr(ZScoreScaler, "transform", original)
    for fit in fits:
        assert isinstance(fit, TrainedModel)
        whole = pd.DataFrame(fit.pipeline.predict_proba(scored), index=scored.index, columns=["0", "1"])  # as before
        stored = fit.predictions.pivot(index="patient_key", columns="class_label", values="probability")
        np.testing.assert_array_equal(stored.loc[scored.index, ["0", "1"]].to_numpy(), whole.to_numpy())


def test_combined_grid_candidates_share_the_rad_fits_of_a_fold_and_match_a_fresh_fit() -> None:
    matrix, roles = small_study()
    train = matrix[roles == "train"]
    columns = [c for c in matrix.columns if c.startswith(("clin__", "rad__"))] + ["center"]
    X, y = train[columns], train["label"].astype(str)
    model = chains.build_pipeline(Signature("combined"), columns[:-1], None, SETTINGS).steps[-1][1]
    chains._RAD_PARTS.clear()
    low = RadScoreCombinedClassifier(**{**model.get_params(deep=False), "C": 0.1}).fit(X, y)
    high = RadScoreCombinedClassifier(**{**model.get_params(deep=False), "C": 10.0}).fit(X, y)
    assert high.rad_model_ is low.rad_model_  # one Rad fit (and one set of out-of-fold scores) for both candidates
    np.testing.assert_array_equal(high.head_scores_, low.head_scores_)
    chains._RAD_PARTS.clear()
    fresh = RadScoreCombinedClassifier(**{**model.get_params(deep=False), "C": 10.0}).fit(X, y)
    assert fresh.rad_model_ is not high.rad_model_
    np.testing.assert_array_equal(fresh.predict_proba(X), high.predict_proba(X))
