"""Selection chain: each step against an independent reference (pingouin, scipy, mrmr-selection, published
values, designed data with a known answer), the chain inside a Pipeline, leakage and bad input."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.base import clone
from sklearn.datasets import load_breast_cancer
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score, cross_validate
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.selection import (
    ChannelPCA,
    EmptySelectionWarning,
    ICCFilter,
    LassoSelector,
    MRMRSelector,
    RankTestFilter,
    SpearmanRedundancyFilter,
    ZScoreScaler,
    greedy_redundancy_drop,
    icc,
    kruskal_pvalues,
    mann_whitney_pvalues,
    pipeline_reports,
    ratings_from_long,
)

ICC_ROWS = {"ICC3": "ICC(C,1)", "ICC2": "ICC(A,1)"}  # pingouin's McGraw & Wong names of ICC(3,1), ICC(2,1)


def frame(X: np.ndarray, prefix: str = "f") -> pd.DataFrame:
    return pd.DataFrame(X, columns=[f"{prefix}{i}" for i in range(X.shape[1])])


def planted(n: int = 200, p: int = 30, informative: tuple[float, ...] = (1.5, -1.5, 1.0), seed: int = 0):
    """Standard-normal features; a binary outcome driven by the first len(informative) columns."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    logit = X[:, : len(informative)] @ np.asarray(informative)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame(X), pd.Series(y, name="outcome")


# ---------------------------------------------------------------- ICC


def rating_cube(k: int, n: int, p: int, seed: int) -> np.ndarray:
    """Subject effect + rater bias + noise, feature scales spread over orders of magnitude."""
    rng = np.random.default_rng(seed)
    subject = rng.normal(0, 1, (1, n, p))
    bias = rng.normal(0, rng.uniform(0, 1, p), (k, 1, p))
    noise = rng.normal(0, rng.uniform(0.1, 1.5, p), (k, n, p))
    return (subject + bias + noise) * np.logspace(-3, 3, p) + 10.0


def pingouin_icc(cube_feature: np.ndarray, kind: str) -> pd.Series:
    pingouin = pytest.importorskip("pingouin")
    k, n = cube_feature.shape
    long = pd.DataFrame(
        {"target": np.tile(np.arange(n), k), "rater": np.repeat(np.arange(k), n), "score": cube_feature.ravel()}
    )
    saved = dict(pingouin.options)
    pingouin.options["round.column.CI95"] = None  # pingouin rounds the CI to 2 decimals by default
    try:
        table = pingouin.intraclass_corr(long, targets="target", raters="rater", ratings="score").set_index("Type")
    finally:
        pingouin.options.clear()
        pingouin.options.update(saved)
    row = table.loc[ICC_ROWS[kind]]
    return pd.Series(
        {"icc": row["ICC"], "ci_low": row["CI95"][0], "ci_high": row["CI95"][1], "F": row["F"], "pval": row["pval"]}
    )


@pytest.mark.parametrize("kind", ["ICC3", "ICC2"])
@pytest.mark.parametrize(("k", "n", "seed"), [(2, 12, 0), (3, 9, 1)])
def test_icc_matches_pingouin_on_random_data(kind, k, n, seed):
    cube = rating_cube(k, n, 25, seed)
    ours = icc(cube, kind=kind)
    for j in range(cube.shape[2]):
        reference = pingouin_icc(cube[:, :, j], kind)
        for column in ["icc", "ci_low", "ci_high"]:
            assert ours[column].iloc[j] == pytest.approx(reference[column], abs=1e-10), (j, column)
        assert ours["F"].iloc[j] == pytest.approx(reference["F"], rel=1e-10)
        assert ours["pval"].iloc[j] == pytest.approx(reference["pval"], rel=1e-8, abs=1e-300)
    assert (ours["df1"] == n - 1).all() and (ours["df2"] == (n - 1) * (k - 1)).all()


@pytest.mark.parametrize("kind", ["ICC3", "ICC2"])
def test_icc_matches_pingouin_on_real_wine_ratings(kind):
    pingouin = pytest.importorskip("pingouin")
    wine = pingouin.read_dataset("icc")  # 8 wines scored by 4 judges, shipped with pingouin
    wide = wine.pivot(index="Wine", columns="Judge", values="Scores")
    ours = icc([wide[[judge]].set_axis(["score"], axis=1) for judge in wide.columns], kind=kind).loc["score"]
    reference = pingouin_icc(wide.to_numpy().T, kind)
    for column in ["icc", "ci_low", "ci_high", "F", "pval"]:
        assert ours[column] == pytest.approx(reference[column], abs=1e-10)


def test_icc_reproduces_shrout_fleiss_published_values():
    # Shrout & Fleiss (1979), Psychol Bull 86:420, Table 2: 6 targets x 4 judges; Table 4 gives
    # ICC(2,1) = .29 and ICC(3,1) = .71. F(5, 15) = 11.03 and the 95 % bounds as printed by R psych::ICC.
    ratings = np.array([[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], float)
    cube = ratings.T[:, :, None]
    icc3, icc2 = icc(cube, kind="ICC3").iloc[0], icc(cube, kind="ICC2").iloc[0]
    assert round(icc3["icc"], 2) == 0.71 and round(icc2["icc"], 2) == 0.29
    assert round(icc3["F"], 2) == 11.03 and (icc3["df1"], icc3["df2"]) == (5, 15)
    assert (round(icc2["ci_low"], 3), round(icc2["ci_high"], 2)) == (0.019, 0.76)
    assert (round(icc3["ci_low"], 3), round(icc3["ci_high"], 2)) == (0.342, 0.95)


def test_icc_aligns_frames_by_label_and_reads_long_tables():
    cube = rating_cube(3, 10, 4, seed=2)
    frames = [frame(cube[r]).set_index(pd.Index([f"p{i}" for i in range(10)])) for r in range(3)]
    shuffled = [frames[0], frames[1].iloc[::-1, ::-1], frames[2].sample(frac=1.0, random_state=0)]
    pd.testing.assert_frame_equal(icc(shuffled), icc(cube, feature_names=frames[0].columns), check_names=False)
    long = pd.concat(
        [
            f.rename_axis("patient").reset_index().melt("patient", var_name="feature").assign(rater=r)
            for r, f in enumerate(frames)
        ]
    )
    pd.testing.assert_frame_equal(icc(ratings_from_long(long, "patient", "rater", "feature", "value")), icc(frames))
    with pytest.raises(ValueError, match=r"2 rows repeat a \['patient', 'rater', 'feature'\] key"):
        ratings_from_long(pd.concat([long, long.iloc[:1]]), "patient", "rater", "feature", "value")


def test_icc_rejects_incomplete_or_misaligned_ratings():
    cube = rating_cube(2, 6, 3, seed=3)
    holey = cube.copy()
    holey[1, 2, 1] = np.nan
    with pytest.raises(ValueError, match=r"1 feature\(s\) have missing or non-finite ratings: x1"):
        icc(holey)
    with pytest.raises(ValueError, match="at least 2 raters"):
        icc(cube[:1])
    a, b = frame(cube[0]), frame(cube[1]).drop(index=[5])
    with pytest.raises(ValueError, match="differ in subjects: only in rater 1: ; only in rater 0: 5"):
        icc([a, b])
    with pytest.raises(ValueError, match="kind must be"):
        icc(cube, kind="ICC1")


def test_icc_of_a_constant_feature_is_undefined_and_fails_the_filter():
    cube = rating_cube(2, 8, 3, seed=4)
    cube[:, :, 2] = 5.0
    table = icc(cube)
    assert np.isnan(table["icc"].iloc[2])
    X = frame(cube[0], prefix="x")
    selector = ICCFilter(table, threshold=-1.0).fit(X)
    assert list(selector.get_feature_names_out()) == ["x0", "x1"]
    assert "undefined ICC fail: x2" in selector.report_.notes[0]


def test_icc_filter_keeps_features_at_or_above_threshold():
    values = pd.Series({"a": 0.9, "b": 0.75, "c": 0.7499, "d": 0.1})
    X = pd.DataFrame(np.random.default_rng(0).standard_normal((5, 4)), columns=list("abcd"))
    selector = ICCFilter(values).fit(X)
    assert list(selector.get_feature_names_out()) == ["a", "b"]
    assert selector.report_.statistic == values.to_dict() and selector.report_.n_out == 2
    lower_bound = pd.DataFrame({"icc": [0.9, 0.9], "ci_low": [0.8, 0.6]}, index=["a", "b"])
    assert list(ICCFilter(lower_bound, statistic="ci_low").fit(X[["a", "b"]]).get_feature_names_out()) == ["a"]


def test_icc_filter_policies_for_features_without_icc():
    X = pd.DataFrame(np.ones((4, 3)) + np.arange(12).reshape(4, 3), columns=["rad_a", "rad_b", "dl__r18__orig__0"])
    values = pd.Series({"rad_a": 0.8, "rad_b": 0.2})
    with pytest.raises(ValueError, match=r"1 training feature\(s\) have no ICC: dl__r18__orig__0"):
        ICCFilter(values).fit(X)
    assert list(ICCFilter(values, missing="keep").fit(X).get_feature_names_out()) == ["rad_a", "dl__r18__orig__0"]
    assert list(ICCFilter(values, missing="drop").fit(X).get_feature_names_out()) == ["rad_a"]
    with pytest.raises(ValueError, match="needs named features"):
        ICCFilter(values).fit(X.to_numpy())
    with pytest.warns(EmptySelectionWarning, match="kept the single best feature 'rad_a'"):
        kept = ICCFilter(values, threshold=0.95, missing="drop").fit(X).get_feature_names_out()
    assert list(kept) == ["rad_a"]
    with pytest.raises(ValueError, match=r"no feature survived \(no ICC >= 0.95\)"):
        ICCFilter(values, threshold=0.95, missing="drop", on_empty="raise").fit(X)


# ---------------------------------------------------------------- Mann-Whitney U / Kruskal-Wallis


def tied_features(n: int, seed: int) -> np.ndarray:
    """Continuous, heavily tied (integer), skewed and partly-tied columns."""
    rng = np.random.default_rng(seed)
    return np.column_stack(
        [
            rng.standard_normal(n),
            rng.integers(0, 4, n),
            rng.lognormal(0, 1, n),
            np.round(rng.standard_normal(n), 1),
            rng.integers(0, 2, n),
            rng.standard_normal(n) + np.arange(n) / n,
        ]
    )


@pytest.mark.parametrize(("n", "seed"), [(23, 0), (60, 1), (9, 2)])
def test_mann_whitney_matches_scipy_per_feature(n, seed):
    X = tied_features(n, seed)
    group = np.random.default_rng(seed + 10).permutation(np.arange(n) % 3 == 0).astype(int)
    u, p = mann_whitney_pvalues(X, group)
    for j in range(X.shape[1]):
        reference = stats.mannwhitneyu(X[group == 0, j], X[group == 1, j], method="asymptotic")
        assert u[j] == pytest.approx(reference.statistic, abs=1e-9)
        assert p[j] == pytest.approx(reference.pvalue, rel=1e-10, abs=1e-15)


@pytest.mark.parametrize("n_classes", [3, 5])
def test_kruskal_wallis_matches_scipy_per_feature(n_classes):
    X = tied_features(50, seed=n_classes)
    codes = np.arange(50) % n_classes
    h, p = kruskal_pvalues(X, codes)
    for j in range(X.shape[1]):
        reference = stats.kruskal(*[X[codes == c, j] for c in range(n_classes)])
        assert h[j] == pytest.approx(reference.statistic, rel=1e-10)
        assert p[j] == pytest.approx(reference.pvalue, rel=1e-10, abs=1e-15)


def test_rank_test_filter_on_real_breast_cancer_data_matches_scipy():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    labels = y.map({0: "malignant", 1: "benign"})
    selector = RankTestFilter(alpha=1e-20).fit(X, labels)
    p_scipy = {c: stats.mannwhitneyu(X.loc[y == 0, c], X.loc[y == 1, c], method="asymptotic").pvalue for c in X}
    for name, p in selector.report_.statistic.items():
        assert p == pytest.approx(p_scipy[name], rel=1e-8, abs=1e-300)
    assert set(selector.get_feature_names_out()) == {c for c, p in p_scipy.items() if p < 1e-20}
    assert 0 < selector.report_.n_out < X.shape[1]
    assert selector.report_.details["test"] == "mann_whitney_u"


def test_rank_test_filter_keeps_p_strictly_below_alpha():
    X, y = planted(n=80, p=4, seed=3)
    p_f0 = stats.mannwhitneyu(X.loc[y == 0, "f0"], X.loc[y == 1, "f0"], method="asymptotic").pvalue
    assert "f0" not in RankTestFilter(alpha=p_f0 * (1 - 1e-9)).fit(X, y).get_feature_names_out()
    assert "f0" in RankTestFilter(alpha=p_f0 * (1 + 1e-9)).fit(X, y).get_feature_names_out()
    own_p = RankTestFilter().fit(X, y).report_.statistic["f0"]
    assert "f0" not in RankTestFilter(alpha=own_p).fit(X, y).get_feature_names_out()


def test_rank_test_filter_multiclass_uses_kruskal_and_pandas_output():
    X, _ = planted(n=90, p=6, seed=5)
    y = pd.Series(np.repeat(["lung", "kidney", "breast"], 30))
    X["f4"] += 2.0 * (y == "kidney")
    selector = RankTestFilter().set_output(transform="pandas")
    out = selector.fit_transform(X, y)
    assert selector.report_.details["test"] == "kruskal_wallis"
    p_f4 = stats.kruskal(*[X.loc[y == c, "f4"] for c in ["breast", "kidney", "lung"]]).pvalue
    assert selector.report_.statistic["f4"] == pytest.approx(p_f4, rel=1e-10)
    assert isinstance(out, pd.DataFrame) and "f4" in out.columns
    assert list(out.columns) == [c for c, p in selector.report_.statistic.items() if p < 0.05]


# ---------------------------------------------------------------- Spearman redundancy


def spearman_abs(X: np.ndarray) -> np.ndarray:
    return np.abs(stats.spearmanr(X).statistic)


def test_spearman_removal_drops_the_hub_not_its_neighbours():
    # hub = z; leaf_i = z + 0.36 e_i: rho(hub, leaf) ~ 0.93 > 0.9 but rho(leaf_i, leaf_j) ~ 0.87 < 0.9.
    # The hub is in 3 redundant pairs, each leaf in 1: dropping the hub alone resolves everything.
    rng = np.random.default_rng(0)
    z = rng.standard_normal(3000)
    leaves = [z + 0.36 * rng.standard_normal(3000) for _ in range(3)]
    X = pd.DataFrame(
        {"hub": z, "leaf_a": leaves[0], "leaf_b": leaves[1], "leaf_c": leaves[2], "free": rng.standard_normal(3000)}
    )
    rho = spearman_abs(X.to_numpy())
    assert (rho[0, 1:4] > 0.92).all() and (rho[1:4, 1:4][~np.eye(3, dtype=bool)] < 0.88).all()  # the design
    selector = SpearmanRedundancyFilter(threshold=0.9).fit(X)
    assert list(selector.get_feature_names_out()) == ["leaf_a", "leaf_b", "leaf_c", "free"]
    assert selector.report_.details["drop_order"] == ["hub"]


def test_spearman_removal_breaks_count_ties_by_mean_rho_then_by_column_order():
    # s-t is the only redundant pair; t is more correlated with u than s is, so t goes.
    target = np.array([[1.0, 0.97, 0.45], [0.97, 1.0, 0.65], [0.45, 0.65, 1.0]])
    rng = np.random.default_rng(1)
    X = pd.DataFrame(rng.standard_normal((4000, 3)) @ np.linalg.cholesky(target).T, columns=["s", "t", "u"])
    X = X[["t", "s", "u"]]  # t first, so column order alone would drop s
    rho = spearman_abs(X.to_numpy())
    assert rho[0, 1] > 0.9 and rho[0, 2] - rho[1, 2] > 0.15  # the design
    assert list(SpearmanRedundancyFilter().fit(X).get_feature_names_out()) == ["s", "u"]
    # exact ties everywhere (a monotone copy: Spearman 1, Pearson < 1): the later column goes
    twins = pd.DataFrame({"x": X["u"], "exp_x": np.exp(3 * X["u"]), "other": X["s"]})
    assert list(SpearmanRedundancyFilter().fit(twins).get_feature_names_out()) == ["x", "other"]


def test_spearman_removal_leaves_no_pair_above_threshold_on_clustered_data():
    rng = np.random.default_rng(2)
    base = rng.standard_normal((150, 8))
    X = frame(np.repeat(base, 5, axis=1) + rng.uniform(0.05, 0.6, 40) * rng.standard_normal((150, 40)))
    selector = SpearmanRedundancyFilter(threshold=0.9).fit(X)
    kept = selector.get_feature_names_out()
    rho = spearman_abs(X[kept].to_numpy())
    assert (rho[~np.eye(len(kept), dtype=bool)] <= 0.9).all()
    dropped = set(X.columns) - set(kept)
    full = spearman_abs(X.to_numpy())
    assert all((full[X.columns.get_loc(d)][np.isin(X.columns, kept)] > 0.9).any() for d in dropped)
    assert 8 <= len(kept) < 40


def test_greedy_redundancy_drop_on_a_hand_made_matrix():
    # chain a-b-c-d: b and c have 2 pairs each; b's mean |rho| (.95+.95+.5)/3 = .80 beats c's .67, so b goes
    # (column order alone would drop c); then only c-d remains, 1 pair each with equal means (.1+.95)/2:
    # the later column, d, goes. Survivors a, c.
    m = np.array([[1, 0.95, 0.1, 0.1], [0.95, 1, 0.95, 0.5], [0.1, 0.95, 1, 0.95], [0.1, 0.5, 0.95, 1]])
    assert greedy_redundancy_drop(m, 0.9) == [1, 3]
    assert greedy_redundancy_drop(m, 0.96) == []


# ---------------------------------------------------------------- mRMR


def mrmr_library(X: pd.DataFrame, y: pd.Series, k: int) -> list[str]:
    pytest.importorskip("mrmr")
    with warnings.catch_warnings():  # mrmr silences every warning at import time; keep that local
        from mrmr import mrmr_classif

        return mrmr_classif(X, y, K=k, n_jobs=1, show_progress=False)


@pytest.mark.parametrize(("seed", "n_classes"), [(0, 2), (1, 2), (2, 3), (3, 5)])
def test_mrmr_matches_mrmr_selection_library(seed, n_classes):
    rng = np.random.default_rng(seed)
    y = pd.Series(rng.integers(0, n_classes, 120))
    latent = rng.standard_normal((120, 6))
    X = frame(
        np.hstack(
            [
                latent + 0.8 * y.to_numpy()[:, None] * rng.uniform(0, 1, 6),
                latent @ rng.standard_normal((6, 14)) + rng.standard_normal((120, 14)),
                rng.standard_normal((120, 20)),
            ]
        )
    )
    selector = MRMRSelector(k=12).fit(X, y)
    assert selector.report_.details["selection_order"] == mrmr_library(X, y, 12)
    assert selector.report_.n_out == 12


def test_mrmr_matches_library_on_real_breast_cancer_data():
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    selector = MRMRSelector(k=8).fit(X, y)
    assert selector.report_.details["selection_order"] == mrmr_library(X, y, 8)


def test_mrmr_hand_checked_example_skips_the_redundant_copy():
    # a is the most relevant; its noisy copy a2 is more relevant than b, but mRMR divides relevance by the
    # redundancy with a: F(b)/|r(a,b)| > F(a2)/|r(a,a2)|, so it takes a, then b (a relevance ranking: a, a2).
    rng = np.random.default_rng(4)
    y = np.repeat([0, 1], 100)
    a = y + 0.5 * rng.standard_normal(200)
    X = pd.DataFrame({"a": a, "a2": a + 0.2 * rng.standard_normal(200), "b": y + 0.7 * rng.standard_normal(200)})
    f = {c: stats.f_oneway(X.loc[y == 0, c], X.loc[y == 1, c]).statistic for c in X}
    r = X.corr().abs()["a"]
    assert f["a"] > f["a2"] > f["b"] and f["b"] / r["b"] > f["a2"] / r["a2"]  # the design, by hand
    selector = MRMRSelector(k=3).fit(X, y)
    assert selector.report_.details["selection_order"] == ["a", "b", "a2"]
    third = f["a2"] / np.mean([r["a2"], X.corr().abs().loc["a2", "b"]])
    assert selector.report_.details["mrmr_score_at_pick"] == pytest.approx([f["a"], f["b"] / r["b"], third], rel=1e-10)
    assert selector.report_.statistic == pytest.approx(f, rel=1e-10)


def test_mrmr_floors_zero_redundancy_like_the_library():
    # Hadamard columns: c is exactly uncorrelated with a, b almost (|r| = 0.00047); both redundancies are
    # floored at 0.001, so the more relevant b wins (without the floor c's 0 would win).
    h1, h2, h3 = np.array(
        [[1, 1, 1, 1, -1, -1, -1, -1], [1, 1, -1, -1, 1, 1, -1, -1], [1, -1, 1, -1, 1, -1, 1, -1]], float
    )
    X = pd.DataFrame({"a": 2 * h1 + h2 + h3, "c": h1 - 2 * h2, "b": 1.001 * h1 - h2 - h3})
    y = pd.Series((h1 > 0).astype(int))
    assert X.corr().loc["a", "c"] == 0 and 0 < X.corr().loc["a", "b"] < 0.001  # the design
    order = MRMRSelector(k=2).fit(X, y).report_.details["selection_order"]
    assert order == ["a", "b"] == mrmr_library(X, y, 2)


def test_mrmr_keeps_all_it_can_when_k_exceeds_the_features():
    X, y = planted(n=60, p=5, seed=6)
    selector = MRMRSelector(k=50).fit(X, y)
    assert selector.report_.n_out == 5 and "kept 5 < k=50" in selector.report_.notes[0]


# ---------------------------------------------------------------- LASSO


@pytest.mark.parametrize("model", ["logistic", "linear_on_labels"])
def test_lasso_keeps_the_planted_signal_and_drops_most_noise(model):
    X, y = planted(n=300, p=40, seed=0)
    selector = LassoSelector(model=model, random_state=0).fit(X, y)
    kept = set(selector.get_feature_names_out())
    assert {"f0", "f1", "f2"} <= kept
    assert len(kept - {"f0", "f1", "f2"}) <= 8  # of 37 noise features
    assert selector.report_.statistic["f0"] > 0 and set(selector.report_.statistic) == set(X.columns)


def test_lasso_multinomial_keeps_the_class_specific_features():
    rng = np.random.default_rng(7)
    y = np.repeat([0, 1, 2], 60)
    X = frame(rng.standard_normal((180, 15)))
    X["f0"] += 1.5 * (y == 1)
    X["f1"] += 1.5 * (y == 2)
    selector = LassoSelector(random_state=0, tol=1e-3).fit(X, np.array(["lung", "kidney", "breast"])[y])
    kept = set(selector.get_feature_names_out())
    assert {"f0", "f1"} <= kept and len(kept) <= 6
    assert selector.report_.details["classes"] == ["breast", "kidney", "lung"]


def test_lasso_never_returns_an_empty_selection_silently():
    rng = np.random.default_rng(8)
    X, y = frame(rng.standard_normal((60, 10))), np.repeat([0, 1], 30)  # pure noise
    with pytest.warns(EmptySelectionWarning, match="all coefficients are 0"):
        selector = LassoSelector(random_state=0).fit(X, y)
    assert selector.report_.n_out == 1 and "kept the single best feature" in selector.report_.notes[0]
    with pytest.raises(ValueError, match=r"lasso: no feature survived \(all coefficients are 0"):
        LassoSelector(random_state=0, on_empty="raise").fit(X, y)


def test_lasso_refuses_folds_it_cannot_stratify():
    X, _ = planted(n=40, p=4)
    y = np.r_[np.zeros(33, int), np.ones(7, int)]
    with pytest.raises(ValueError, match="needs at least 10 training patients per class; got 1: 7$"):
        LassoSelector().fit(X, y)
    with pytest.raises(ValueError, match="'linear_on_labels' is for two classes"):
        LassoSelector(model="linear_on_labels", cv=3).fit(X, np.arange(40) % 3)


# ---------------------------------------------------------------- per-channel PCA


def deep_frame(n: int, channels=("original", "gaussian"), width: int = 40, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    columns = {f"rad_{i}": rng.standard_normal(n) for i in range(3)}
    for channel in channels:
        latent = rng.standard_normal((n, 4))
        block = latent @ rng.standard_normal((4, width)) + 0.1 * rng.standard_normal((n, width))
        columns |= {f"dl__resnet34__{channel}__{i}": block[:, i] for i in range(width)}
    return pd.DataFrame(columns)


def test_channel_pca_fits_one_pca_per_channel_on_training_rows_only():
    X = deep_frame(60)
    train, test = X.iloc[:45], X.iloc[45:]
    pca = ChannelPCA(n_components=5).set_output(transform="pandas").fit(train)
    out = pca.transform(test)
    assert list(out.columns[:3]) == ["rad_0", "rad_1", "rad_2"] and out.shape == (15, 3 + 2 * 5)
    assert list(out.columns[3:5]) == ["dl__resnet34__original__pc0", "dl__resnet34__original__pc1"]
    gaussian = [c for c in X if c.startswith("dl__resnet34__gaussian__")]
    reference = PCA(n_components=5, svd_solver="full").fit(train[gaussian])  # fitted on the training rows alone
    np.testing.assert_allclose(
        out.filter(like="gaussian__pc").to_numpy(), reference.transform(test[gaussian]), atol=1e-10
    )
    components = {g: p.components_.copy() for g, (_, p) in pca.pcas_.items()}
    pca.transform(test * 100.0)
    assert all(np.array_equal(components[g], p.components_) for g, (_, p) in pca.pcas_.items())
    assert pca.report_.n_in == X.shape[1] and pca.report_.n_out == 13


def test_channel_pca_caps_components_with_a_note_and_takes_a_grouping_function():
    X = deep_frame(20, width=10)
    pca = ChannelPCA(n_components=32).fit(X)
    assert [p.n_components_ for _, p in pca.pcas_.values()] == [10, 10]
    assert (
        "dl__resnet34__original: 10 components instead of 32 (20 training rows: rank at most 19; 10 columns)"
        in pca.report_.notes
    )
    few_rows = ChannelPCA(n_components=32).fit(X.iloc[:6])
    assert [p.n_components_ for _, p in few_rows.pcas_.values()] == [5, 5]  # centred 6 rows: rank 5 (issue 19)
    assert (
        "dl__resnet34__gaussian: 5 components instead of 32 (6 training rows: rank at most 5; 10 columns)"
        in few_rows.report_.notes
    )
    by_prefix = ChannelPCA(n_components=2, channel_of=lambda c: c.split("_")[0], remainder="error").fit(X)
    assert list(by_prefix.get_feature_names_out()) == ["rad__pc0", "rad__pc1", "dl__pc0", "dl__pc1"]
    with pytest.raises(ValueError, match="no column belongs to a channel group"):
        ChannelPCA().fit(X[["rad_0", "rad_1"]])
    with pytest.raises(ValueError, match=r"3 column\(s\) belong to no channel group: rad_0, rad_1, rad_2"):
        ChannelPCA(remainder="error").fit(X)


# ---------------------------------------------------------------- the chain


def chain_data(n: int = 150, seed: int = 0) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Radiomics (with two planted, correlated informative features) + deep channels; ICC for radiomics."""
    rng = np.random.default_rng(seed)
    X = deep_frame(n, width=20, seed=seed)
    radiomics = frame(rng.standard_normal((n, 40)) * 50 + 200, prefix="rad__")
    y = pd.Series((rng.random(n) < 1 / (1 + np.exp(-1.8 * radiomics["rad__0"].sub(200).div(50)))).astype(int))
    radiomics["rad__1"] = radiomics["rad__0"] * 1.01 + rng.normal(0, 2, n)  # redundant copy
    X = pd.concat([X.drop(columns=["rad_0", "rad_1", "rad_2"]), radiomics], axis=1)
    reliability = pd.Series(np.r_[0.95, 0.95, rng.uniform(0.5, 1.0, 38)], index=radiomics.columns)
    return X, y, reliability


def chain(reliability: pd.Series) -> Pipeline:
    return Pipeline(
        [
            ("channel_pca", ChannelPCA(n_components=4)),
            ("icc", ICCFilter(reliability, missing="keep")),
            ("zscore", ZScoreScaler()),
            ("rank_test", RankTestFilter(alpha=0.2)),
            ("spearman", SpearmanRedundancyFilter(threshold=0.9)),
            ("mrmr", MRMRSelector(k=8)),
            ("lasso", LassoSelector(cv=5, n_penalties=10, random_state=0)),
            ("model", LogisticRegression()),
        ]
    ).set_output(transform="pandas")


def test_the_whole_chain_runs_in_cross_validation_and_reports_each_step():
    X, y, reliability = chain_data()
    scores = cross_val_score(
        chain(reliability), X, y, cv=StratifiedKFold(3, shuffle=True, random_state=0), scoring="roc_auc"
    )
    assert scores.mean() > 0.7  # the planted signal survives every step
    fitted = chain(reliability).fit(X, y)
    reports = pipeline_reports(fitted)
    assert [r.step for r in reports] == [
        "channel_pca",
        "icc_filter",
        "zscore",
        "rank_test_filter",
        "spearman_redundancy",
        "mrmr",
        "lasso",
    ]
    assert all(later.n_in == earlier.n_out for earlier, later in zip(reports, reports[1:]))
    twin = {"rad__0", "rad__1"} & set(reports[4].kept)  # Spearman keeps one of the planted near-copies
    assert len(twin) == 1 and twin <= set(reports[-1].kept)
    assert reports[-1].to_frame().shape[0] == reports[-1].n_in


@pytest.mark.filterwarnings("ignore::cssci_platform.lib.selection.EmptySelectionWarning")
def test_fitted_selection_ignores_test_labels():
    X, y, reliability = chain_data(seed=1)
    train, test = np.arange(100), np.arange(100, 150)
    scrambled = y.copy()
    scrambled.iloc[test] = np.random.default_rng(0).permutation(y.iloc[test].to_numpy())
    assert (scrambled != y).any()

    def fitted_reports(labels: pd.Series, rows: np.ndarray) -> list:
        result = cross_validate(chain(reliability), X, labels, cv=[(rows, test)], return_estimator=True)
        return [r.to_dict() for r in pipeline_reports(result["estimator"][0])]

    assert fitted_reports(scrambled, train) == fitted_reports(y, train)
    everyone = np.arange(150)  # paper-faithful style selection on all rows does see the scrambled labels
    assert fitted_reports(scrambled, everyone) != fitted_reports(y, everyone)


def test_estimators_clone_and_zscore_matches_standard_scaler():
    X, y = planted(n=50, p=4)
    for estimator in [
        ICCFilter(pd.Series(dtype=float)),
        RankTestFilter(),
        SpearmanRedundancyFilter(),
        MRMRSelector(k=3),
        LassoSelector(),
        ChannelPCA(),
        ZScoreScaler(),
    ]:
        cloned = clone(estimator)
        assert type(cloned) is type(estimator) and repr(cloned) == repr(estimator)
    scaler = ZScoreScaler().fit(X)
    np.testing.assert_array_equal(scaler.transform(X), StandardScaler().fit(X).transform(X))
    assert scaler.report_.statistic["f0"] == pytest.approx(X["f0"].std(ddof=0))


# ---------------------------------------------------------------- bad input

SUPERVISED: dict[str, Callable] = {
    "rank_test_filter": lambda: RankTestFilter(),
    "mrmr": lambda: MRMRSelector(k=2),
    "lasso": lambda: LassoSelector(cv=3),
}
ALL_STEPS: dict[str, Callable] = SUPERVISED | {"spearman_redundancy": lambda: SpearmanRedundancyFilter()}


@pytest.mark.parametrize("step", ALL_STEPS)
def test_nan_features_are_named_in_the_error(step):
    X, y = planted(n=40, p=5)
    X.loc[3, "f2"] = np.nan
    X.loc[7, "f4"] = np.inf
    with pytest.raises(ValueError, match=rf"^{step}: 2 feature\(s\) hold NaN or infinite values: f2, f4; "):
        ALL_STEPS[step]().fit(X, y)


@pytest.mark.parametrize("step", ALL_STEPS)
def test_constant_features_raise_or_are_dropped_with_a_note(step):
    X, y = planted(n=40, p=5)
    X["f3"] = 7.0
    with pytest.raises(ValueError, match=rf"^{step}: 1 feature\(s\) are constant on the training rows: f3;"):
        ALL_STEPS[step]().fit(X, y)
    selector = ALL_STEPS[step]().set_params(on_constant="drop").fit(X, y)
    assert "f3" not in selector.get_feature_names_out()
    assert "dropped 1 constant feature(s): f3" in selector.report_.notes


@pytest.mark.parametrize("step", SUPERVISED)
def test_a_single_class_or_missing_outcome_is_refused(step):
    X, _ = planted(n=40, p=5)
    single = rf"^{step}: y has a single class \('good'\); selection needs at least two outcome classes$"
    with pytest.raises(ValueError, match=single):
        SUPERVISED[step]().fit(X, np.full(40, "good"))
    with pytest.raises(ValueError, match=rf"^{step}: this step is supervised"):
        SUPERVISED[step]().fit(X)
    with pytest.raises(ValueError, match=rf"^{step}: y must hold class labels .* continuous target"):
        SUPERVISED[step]().fit(X, np.linspace(0, 1, 40))
    with pytest.raises(ValueError, match=rf"^{step}: y has 1 missing value"):
        SUPERVISED[step]().fit(X, pd.Series([0, 1] * 19 + [1, None]))


def test_icc_filter_from_a_plain_dict_matches_the_table_and_serializes_with_skops():
    import skops.io

    rng = np.random.default_rng(0)
    X = pd.DataFrame(rng.normal(size=(20, 3)), columns=["a", "b", "c"])
    table = pd.DataFrame({"icc": [0.9, 0.5, 0.8]}, index=["a", "b", "c"])
    from_table = ICCFilter(table, 0.75).fit(X)
    from_dict = ICCFilter(table["icc"].to_dict(), 0.75).fit(X)
    assert list(from_dict.get_feature_names_out()) == list(from_table.get_feature_names_out()) == ["a", "c"]
    restored = skops.io.loads(
        skops.io.dumps(from_dict), trusted=skops.io.get_untrusted_types(data=skops.io.dumps(from_dict))
    )
    assert list(restored.get_feature_names_out()) == ["a", "c"] and restored.transform(X).shape == (20, 2)
