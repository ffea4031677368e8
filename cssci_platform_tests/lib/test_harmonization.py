"""ComBat (`cssci_platform.lib.harmonization`): equal to `neuroCombat.neuroCombat()` on the fit data for every
option, stored estimates applied to new patients, planted center effects removed, unseen-center policies,
and precise errors for inputs it cannot harmonize.

Agreement with neuroCombat is asserted as an absolute difference <= 1e-8 on features of scale ~1-30
(measured: at most 1.1e-12 absolute, 7.6e-11 relative). neuroCombat casts continuous covariates to
float32, so the continuous covariate here is a whole number of years (exact in float32); its `ref_batch`
path calls the removed `np.int`, restored for the duration of a test only.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from cssci_platform.lib.harmonization import (
    ComBat,
    as_pipeline_input,
    forget_unseen_center_warnings,
    undersized_batches,
)
from cssci_platform_tests.refdata import refdata_root

TOLERANCE = 1e-8  # absolute
CENTERS = ("A", "B", "C")
COMBAT_LOGGER = "cssci_platform.lib.harmonization.combat"


def planted_cohort(
    seed: int = 0,
    sizes: Sequence[int] = (14, 20, 26),
    n_features: int = 30,
    shift_sd: float = 1.0,
    scale_range: tuple[float, float] = (0.7, 1.5),
    centers: Sequence[str] = CENTERS,
) -> pd.DataFrame:
    """Features with a planted additive and multiplicative effect per center, plus age and sex effects."""
    rng = np.random.default_rng(seed)
    center = np.repeat(np.asarray(centers), sizes)
    age = rng.integers(30, 80, center.size).astype(np.float64)
    sex = rng.choice(["F", "M"], center.size)
    biology = rng.normal(0, 1, (center.size, n_features)) * rng.uniform(0.5, 3, n_features)
    shift = {name: rng.normal(0, shift_sd, n_features) for name in centers}
    scale = {name: rng.uniform(*scale_range, n_features) for name in centers}
    site = np.vstack([biology[row] * scale[name] + shift[name] for row, name in enumerate(center)])
    features = site + rng.uniform(-5, 20, n_features) + 0.03 * age[:, None] + 0.7 * (sex == "M")[:, None]
    frame = pd.DataFrame(features, columns=[f"feature_{index}" for index in range(n_features)])
    frame.index = [f"patient_{index:03d}" for index in range(center.size)]
    return frame.assign(center=center, age=age, sex=sex, grade=rng.choice(["g1", "g2", "g3"], center.size))


def feature_names(frame: pd.DataFrame) -> list[str]:
    return [column for column in frame.columns if column.startswith("feature_")]


def harmonizer(**parameters: Any) -> ComBat:
    """ComBat on `planted_cohort`'s default features (its sex and grade columns are covariates or ignored)."""
    return ComBat(feature_cols=[f"feature_{index}" for index in range(30)], **parameters)


def reference_testdata() -> pd.DataFrame:
    """ComBatHarmonization's test input (200 features x 10 scans) as patients x features with its design."""
    raw = pd.read_csv(refdata_root() / "combat" / "testdata.csv")
    frame = raw.T.reset_index(drop=True)
    frame.columns = [f"feature_{index}" for index in range(raw.shape[0])]
    return frame.assign(center=[1] * 5 + [2] * 5, bio=[1, 0] * 5)


def run_neurocombat(frame: pd.DataFrame, combat: ComBat) -> dict[str, Any]:
    """neuroCombat on the same data and options (it takes features x samples and prints progress)."""
    neurocombat = pytest.importorskip("neuroCombat", reason="neuroCombat (the reference implementation) is missing")
    covariates = frame[[combat.batch_col, *combat.categorical_cols, *combat.continuous_cols]].reset_index(drop=True)
    with contextlib.redirect_stdout(io.StringIO()), np.errstate(divide="ignore", invalid="ignore"):
        return neurocombat.neuroCombat(
            frame[feature_names(frame)].to_numpy(dtype=np.float64).T.copy(),
            covariates,
            combat.batch_col,
            categorical_cols=list(combat.categorical_cols),
            continuous_cols=list(combat.continuous_cols),
            eb=combat.eb,
            parametric=combat.parametric,
            mean_only=combat.mean_only,
            ref_batch=combat.ref_batch,
        )


@pytest.fixture
def legacy_numpy_int(monkeypatch: pytest.MonkeyPatch) -> None:
    """neuroCombat 0.2.12's ref_batch path calls `np.int`, removed in numpy 2; restored after the test."""
    monkeypatch.setattr(np, "int", int, raising=False)


OPTIONS = list(itertools.product([True, False], [True, False], [False, True], [False, True], [False, True]))


def _option_id(options: tuple[bool, ...]) -> str:
    eb, parametric, mean_only, with_reference, with_covariates = options
    parts = ["eb" if eb else "no_eb", "parametric" if parametric else "nonparametric"]
    parts += ["mean_only" if mean_only else "mean_scale", "ref" if with_reference else "no_ref"]
    return "-".join([*parts, "covariates" if with_covariates else "no_covariates"])


@pytest.mark.parametrize("dataset", ["synthetic", pytest.param("refdata", marks=pytest.mark.refdata)])
@pytest.mark.parametrize("options", OPTIONS, ids=_option_id)
def test_fit_transform_equals_neurocombat(dataset: str, options: tuple[bool, ...], legacy_numpy_int: None) -> None:
    eb, parametric, mean_only, with_reference, with_covariates = options
    if dataset == "synthetic":
        frame, reference, categorical, continuous = planted_cohort(), "B", ("sex", "grade"), ("age",)
    else:
        frame, reference, categorical, continuous = reference_testdata(), 2, ("bio",), ()
    combat = ComBat(
        "center",
        categorical_cols=categorical if with_covariates else (),
        continuous_cols=continuous if with_covariates else (),
        feature_cols=feature_names(frame),
        eb=eb,
        parametric=parametric,
        mean_only=mean_only,
        ref_batch=reference if with_reference else None,
    )
    expected = run_neurocombat(frame, combat)
    assert np.isfinite(expected["data"]).all(), "precondition: neuroCombat's result is finite on this data"

    harmonized = combat.fit_transform(frame)

    np.testing.assert_allclose(harmonized, expected["data"].T, rtol=0, atol=TOLERANCE)
    estimates = expected["estimates"]
    np.testing.assert_allclose(combat.gamma_star_, estimates["gamma.star"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(combat.delta_star_, estimates["delta.star"], rtol=0, atol=TOLERANCE)
    np.testing.assert_allclose(combat.pooled_variance_, estimates["var.pooled"][:, 0], rtol=1e-8, atol=0)
    np.testing.assert_allclose(combat.grand_mean_, estimates["stand.mean"][:, 0], rtol=0, atol=TOLERANCE)
    if with_reference:
        reference_rows = (frame["center"] == reference).to_numpy()
        np.testing.assert_array_equal(harmonized[reference_rows], frame[feature_names(frame)][reference_rows])


def test_transform_of_the_fit_data_equals_fit_transform_in_any_row_order() -> None:
    frame = planted_cohort()
    combat = harmonizer(categorical_cols=("sex",), continuous_cols=("age",))
    harmonized = combat.fit_transform(frame)
    shuffled = frame.sample(frac=1.0, random_state=3)

    np.testing.assert_array_equal(combat.transform(frame), harmonized)
    reordered = pd.DataFrame(combat.transform(shuffled), index=shuffled.index).loc[frame.index]
    np.testing.assert_allclose(reordered.to_numpy(), harmonized, rtol=0, atol=1e-12)


def test_some_patients_of_a_known_center_get_what_the_fit_data_got() -> None:
    frame = planted_cohort()
    combat = harmonizer(categorical_cols=("sex",), continuous_cols=("age",), parametric=False)
    harmonized = pd.DataFrame(combat.fit_transform(frame), index=frame.index)
    subset = frame[frame["center"] == "B"].iloc[[7, 2, 11]]

    np.testing.assert_allclose(combat.transform(subset), harmonized.loc[subset.index], rtol=0, atol=1e-12)


def test_new_patients_are_transformed_with_the_stored_estimates_without_refitting() -> None:
    cohort = planted_cohort(sizes=(24, 24, 24))
    training = cohort.groupby("center").head(16)
    new_patients = cohort.drop(training.index)
    combat = harmonizer(categorical_cols=("sex",), continuous_cols=("age",)).fit(training)
    estimates = (combat.gamma_star_.copy(), combat.delta_star_.copy(), combat.grand_mean_.copy())

    alone = combat.transform(new_patients.iloc[[5]])
    among_others = combat.transform(pd.concat([training, new_patients]))

    np.testing.assert_allclose(alone[0], among_others[len(training) + 5], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(combat.gamma_star_, estimates[0])
    np.testing.assert_array_equal(combat.delta_star_, estimates[1])
    np.testing.assert_array_equal(combat.grand_mean_, estimates[2])
    refit = harmonizer(categorical_cols=("sex",), continuous_cols=("age",)).fit(cohort)
    assert not np.allclose(refit.gamma_star_, combat.gamma_star_), "a refit on more patients differs"


def center_mean_spread(features: np.ndarray, centers: np.ndarray) -> float:
    """Mean over features of the standard deviation of the per-center means."""
    means = pd.DataFrame(features).groupby(centers).mean()
    return float(means.std(axis=0).mean())


def center_sd_ratio(features: np.ndarray, centers: np.ndarray) -> float:
    """Mean over features of the largest / smallest per-center standard deviation."""
    sds = pd.DataFrame(features).groupby(centers).std()
    return float((sds.max(axis=0) / sds.min(axis=0)).mean())


# The non-parametric prior borrows gamma* from the other features (leave-one-out), so it needs many of them.
@pytest.mark.parametrize(("parametric", "n_features", "left_over"), [(True, 30, 0.05), (False, 300, 0.1)])
def test_planted_center_effects_are_removed_and_covariate_effects_kept(
    parametric: bool, n_features: int, left_over: float
) -> None:
    frame = planted_cohort(sizes=(60, 80, 100), n_features=n_features, shift_sd=3.0, scale_range=(0.4, 2.5))
    raw = frame[feature_names(frame)].to_numpy()
    centers = frame["center"].to_numpy()
    combat = ComBat(
        feature_cols=feature_names(frame), categorical_cols=("sex",), continuous_cols=("age",), parametric=parametric
    )

    harmonized = combat.fit_transform(frame)

    assert center_mean_spread(harmonized, centers) < left_over * center_mean_spread(raw, centers)
    assert center_sd_ratio(raw, centers) > 2.0
    assert center_sd_ratio(harmonized, centers) < 1.3
    age_slope = np.polyfit(frame["age"], harmonized - harmonized.mean(axis=0), 1)[0]
    assert abs(age_slope.mean() - 0.03) < 0.005, "the planted age effect (0.03 per year) survives"


def test_nonparametric_weights_stay_finite_for_large_batches() -> None:
    """neuroCombat multiplies raw densities, which underflow to 0/0 = NaN from ~800 patients per batch."""
    frame = planted_cohort(sizes=(900, 1000), n_features=200, centers=("A", "B"))
    centers = frame["center"].to_numpy()

    harmonized = ComBat(feature_cols=feature_names(frame), parametric=False).fit_transform(frame)

    assert np.isfinite(harmonized).all()
    assert center_mean_spread(harmonized, centers) < 0.1 * center_mean_spread(
        frame[feature_names(frame)].to_numpy(), centers
    )


# -- centers unseen at fit -------------------------------------------------------------------------------


def fit_without_center_c(**parameters: Any) -> tuple[ComBat, pd.DataFrame]:
    cohort = planted_cohort(sizes=(20, 20, 20))
    return harmonizer(**parameters).fit(cohort[cohort["center"] != "C"]), cohort[cohort["center"] == "C"]


def test_unseen_center_default_policy_none_returns_features_unchanged_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    combat, center_c = fit_without_center_c()
    forget_unseen_center_warnings()  # the summary is logged at warning level once per process (issue 19)
    with caplog.at_level(logging.WARNING, logger=COMBAT_LOGGER):
        harmonized = combat.transform(center_c)

    np.testing.assert_array_equal(harmonized, center_c[combat.feature_cols_].to_numpy())
    assert "'C' (20 rows) unseen at fit; policy 'none'" in caplog.text
    [event] = combat.unseen_center_log_
    assert (event.center, event.n_rows, event.policy, event.batch_effect) == ("C", 20, "none", None)


def test_unseen_center_policy_error_raises_naming_the_center() -> None:
    combat, center_c = fit_without_center_c(unseen_center_policy="error")
    with pytest.raises(ValueError, match=r"center 'C' \(20 rows\) was not seen at fit"):
        combat.transform(center_c)


def test_unseen_center_policy_reference_uses_the_chosen_centers_estimates(caplog: pytest.LogCaptureFixture) -> None:
    combat, center_c = fit_without_center_c(unseen_center_policy="reference", unseen_center_reference="A")
    forget_unseen_center_warnings()
    with caplog.at_level(logging.WARNING, logger=COMBAT_LOGGER):
        harmonized = combat.transform(center_c)

    np.testing.assert_array_equal(harmonized, combat.transform(center_c.assign(center="A")))
    assert not np.allclose(harmonized, center_c[combat.feature_cols_].to_numpy())
    assert "known center 'A'" in caplog.text
    assert combat.unseen_center_log_[0].batch_effect is combat.batch_effects_["A"]


@pytest.mark.parametrize("parametric", [True, False])
def test_unseen_center_refit_site_equals_fitting_with_that_center(parametric: bool) -> None:
    """With a reference batch (and no covariates) alpha and sigma^2 come from the reference batch alone, and the
    EB priors of a batch use only that batch's features: a fit without center C followed by refit_site on C
    must give C's rows exactly what a fit including C gives them."""
    cohort = planted_cohort(sizes=(20, 20, 20))
    options: dict[str, Any] = {"ref_batch": "A", "parametric": parametric}
    with_c = pd.DataFrame(harmonizer(**options).fit_transform(cohort), index=cohort.index)
    combat, center_c = fit_without_center_c(unseen_center_policy="refit_site", **options)

    harmonized = combat.transform(center_c)

    np.testing.assert_allclose(harmonized, with_c.loc[center_c.index], rtol=0, atol=1e-10)
    [event] = combat.unseen_center_log_
    assert event.policy == "refit_site" and event.batch_effect is not None


def test_unseen_center_refit_site_removes_its_planted_shift() -> None:
    cohort = planted_cohort(sizes=(30, 30, 30), shift_sd=3.0)
    known = cohort[cohort["center"] != "C"]
    combat = harmonizer(continuous_cols=("age",), unseen_center_policy="refit_site").fit(known)
    harmonized_c = combat.transform(cohort[cohort["center"] == "C"])
    harmonized_known = combat.transform(known)
    raw_c = cohort.loc[cohort["center"] == "C", combat.feature_cols_].to_numpy()

    gap_before = np.abs(raw_c.mean(axis=0) - harmonized_known.mean(axis=0)).mean()
    gap_after = np.abs(harmonized_c.mean(axis=0) - harmonized_known.mean(axis=0)).mean()
    assert gap_after < 0.1 * gap_before


def test_unseen_center_refit_site_needs_the_minimum_number_of_rows() -> None:
    combat, center_c = fit_without_center_c(unseen_center_policy="refit_site", refit_site_min_samples=8)
    assert combat.transform(center_c.iloc[:8]).shape == (8, len(combat.feature_cols_))
    with pytest.raises(ValueError, match=r"'C' has 7 rows .* refit_site_min_samples=8"):
        combat.transform(center_c.iloc[:7])


@pytest.mark.parametrize(
    ("parameters", "message"),
    [
        ({"unseen_center_policy": "guess"}, "unseen_center_policy must be one of"),
        ({"unseen_center_policy": "reference"}, "needs unseen_center_reference"),
        ({"unseen_center_policy": "reference", "unseen_center_reference": "Z"}, "'Z' is not among the batches"),
        ({"unseen_center_policy": "refit_site", "refit_site_min_samples": 1}, "must be at least 2"),
        ({"ref_batch": "Z"}, "ref_batch 'Z' is not among the batches"),
    ],
)
def test_invalid_parameters_are_refused_at_fit(parameters: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        harmonizer(**parameters).fit(planted_cohort())


# -- inputs ComBat cannot harmonize ----------------------------------------------------------------------


def test_a_batch_too_small_to_estimate_is_a_clear_error() -> None:
    cohort = planted_cohort(sizes=(20, 20, 1))
    with pytest.raises(ValueError, match=r"batch too small in 'center': 'C' has 1 sample\(s\).*Fix:"):
        harmonizer().fit(cohort)
    assert undersized_batches(cohort["center"]) == {"C": 1}


def test_non_finite_features_are_refused_naming_column_and_row() -> None:
    cohort = planted_cohort()
    cohort.loc["patient_004", "feature_3"] = np.nan
    with pytest.raises(ValueError, match=r"1 NaN or infinite feature values in columns \['feature_3'\].*patient_004"):
        harmonizer().fit(cohort)
    combat = harmonizer().fit(planted_cohort())
    cohort.loc["patient_004", "feature_3"] = np.inf
    with pytest.raises(ValueError, match="feature_3"):
        combat.transform(cohort)


def test_a_constant_feature_is_refused_by_name() -> None:
    cohort = planted_cohort().assign(feature_7=4.2)
    with pytest.raises(ValueError, match=r"\['feature_7'\] \(1\) have zero residual variance in the fit data"):
        harmonizer().fit(cohort)
    constant_in_b = cohort.assign(feature_7=np.where(cohort["center"] == "B", 4.2, cohort["feature_0"]))
    with pytest.raises(ValueError, match=r"\['feature_7'\] \(1\) have zero residual variance in the reference batch"):
        harmonizer(ref_batch="B").fit(constant_in_b)


def test_missing_batch_or_covariate_values_are_refused() -> None:
    cohort = planted_cohort()
    with pytest.raises(ValueError, match="batch column 'center' is missing in rows"):
        harmonizer().fit(cohort.assign(center=cohort["center"].where(cohort.index != "patient_001")))
    with pytest.raises(ValueError, match="continuous covariate 'age' is NaN"):
        harmonizer(continuous_cols=("age",)).fit(cohort.assign(age=cohort["age"].where(cohort.index != "patient_001")))


def test_a_categorical_level_unseen_at_fit_is_refused_at_transform() -> None:
    cohort = planted_cohort()
    combat = harmonizer(categorical_cols=("grade",)).fit(cohort)
    with pytest.raises(ValueError, match=r"'grade' has levels \['g4'\] not seen at fit"):
        combat.transform(cohort.assign(grade="g4"))


def test_a_covariate_confounded_with_center_is_refused() -> None:
    cohort = planted_cohort()
    site_a = np.where(cohort["center"] == "A", "yes", "no")
    with pytest.raises(ValueError, match="collinear with the batch indicators"):
        harmonizer(categorical_cols=("site_a",)).fit(cohort.assign(site_a=site_a))


def test_input_must_be_a_dataframe_with_numeric_features() -> None:
    cohort = planted_cohort()
    with pytest.raises(ValueError, match="needs a pandas DataFrame"):
        ComBat().fit(cohort[feature_names(cohort)].to_numpy())
    with pytest.raises(ValueError, match=r"feature columns \['sex', 'grade'\] are not numeric"):
        ComBat().fit(cohort)  # sex and grade are neither features nor declared covariates
    with pytest.raises(ValueError, match="needs at least 2; use eb=False"):
        ComBat(feature_cols=["feature_0"], single_feature_eb="error").fit(cohort)
    assert ComBat(feature_cols=["feature_0"], eb=False).fit_transform(cohort).shape == (len(cohort), 1)


# -- scikit-learn integration ----------------------------------------------------------------------------


def test_combat_inside_a_pipeline_with_pandas_output() -> None:
    cohort = planted_cohort(sizes=(30, 30, 30)).sample(frac=1.0, random_state=0)  # centers spread over folds
    labels = (cohort["feature_0"] > cohort["feature_0"].median()).to_numpy()
    features = cohort[feature_names(cohort)]
    model_input = as_pipeline_input(features, cohort[["center", "age", "sex"]])
    pipeline = make_pipeline(
        ComBat(categorical_cols=("sex",), continuous_cols=("age",)), StandardScaler(), LogisticRegression()
    )

    scores = cross_val_score(clone(pipeline), model_input, labels, cv=3)
    harmonized = pipeline[:1].fit(model_input).set_output(transform="pandas").transform(model_input)

    assert np.isfinite(scores).all()
    assert list(harmonized.columns) == feature_names(cohort)
    assert harmonized.index.equals(cohort.index)
    with pytest.raises(ValueError, match="share one index"):
        as_pipeline_input(features, cohort[["center"]].iloc[::-1])
