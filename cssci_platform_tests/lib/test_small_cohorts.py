"""Issue 19: the modeling chain on what real cohorts contain (one feature left, small centers, shape features,
tiny folds). Each test failed on the code before the fix."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.harmonization import ComBat, forget_unseen_center_warnings

SHAPE = "rad__T1__lesion__original__original_shape_VoxelVolume"
TEXTURE = "rad__T1__lesion__original__original_glcm_Contrast"


def centers_frame(sizes: dict[str, int], seed: int = 0, columns: tuple[str, ...] = (SHAPE, TEXTURE)) -> pd.DataFrame:
    """Rows per center with a center shift of 3 units in every column."""
    rng = np.random.default_rng(seed)
    frames = []
    for shift, (center, n) in enumerate(sizes.items()):
        values = rng.normal(10 + 3 * shift, 1.0, size=(n, len(columns)))
        frames.append(pd.DataFrame(values, columns=list(columns)).assign(center=center))
    frame = pd.concat(frames, ignore_index=True)
    frame.index = [f"p{i:02d}" for i in range(len(frame))]
    return frame


def test_combat_on_one_feature_with_eb_falls_back_to_eb_false_and_says_so() -> None:
    frame = centers_frame({"A": 10, "B": 10}, columns=(TEXTURE,))
    combat = ComBat().set_output(transform="pandas").fit(frame)
    expected = ComBat(eb=False).set_output(transform="pandas").fit_transform(frame)
    pd.testing.assert_frame_equal(combat.transform(frame), expected)
    assert any("empirical Bayes needs at least 2" in note for note in combat.report_.notes)
    assert combat.report_.details["empirical_bayes"] is False


@pytest.mark.parametrize("policy", ["pool", "unseen"])
def test_a_center_with_one_training_patient_completes_under_each_small_center_policy(policy: str) -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 1})
    combat = ComBat(small_center=policy, unharmonized_classes=()).set_output(transform="pandas")
    harmonized = combat.fit_transform(frame)
    assert np.isfinite(harmonized.to_numpy()).all()
    # one small center cannot be a batch even pooled (1 row): under both policies it is left out of the fit
    assert combat.report_.details["centers_left_out"] == ["C"]
    assert any("small centers {'C': 1}" in note for note in combat.report_.notes)
    assert harmonized.loc[frame["center"] == "C"].equals(frame.loc[frame["center"] == "C", [SHAPE, TEXTURE]])


def test_pooled_small_centers_are_one_batch_when_they_have_two_rows_together() -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 1, "D": 1})
    combat = ComBat(small_center="pool").fit(frame)
    assert sorted(map(str, combat.batches_)) == ["A", "B", "pooled_small_centers"]


def test_small_center_error_names_the_config_keys_that_fix_it() -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 1})
    with pytest.raises(ValueError, match=r"'C' has 1 sample.*harmonization\.small_center.*harmonization\.enabled"):
        ComBat().fit(frame)


def test_min_center_size_makes_larger_centers_small() -> None:
    frame = centers_frame({"A": 12, "B": 12, "C": 4})
    assert ComBat(small_center="unseen", min_center_size=5).fit(frame).report_.details["centers_left_out"] == ["C"]


def test_shape_features_pass_through_combat_unchanged_when_excluded() -> None:
    frame = centers_frame({"A": 12, "B": 12})
    harmonized = ComBat(unharmonized_classes=("shape",)).set_output(transform="pandas").fit_transform(frame)
    pd.testing.assert_series_equal(harmonized[SHAPE], frame[SHAPE])
    assert not np.allclose(harmonized[TEXTURE], frame[TEXTURE])


def test_unseen_center_warning_is_logged_once_with_a_count(caplog: pytest.LogCaptureFixture) -> None:
    frame = centers_frame({"A": 12, "B": 12, "Z9": 5})
    combat = ComBat().fit(frame[frame["center"] != "Z9"])
    forget_unseen_center_warnings()
    with caplog.at_level(logging.WARNING, logger="cssci_platform.lib.harmonization.combat"):
        for _ in range(5):
            for patient in frame.index[frame["center"] == "Z9"]:
                combat.transform(frame.loc[[patient]])
    warnings = [r for r in caplog.records if "unseen at fit" in r.getMessage()]
    assert len(warnings) == 1 and "1 center(s) 'Z9' (1 rows)" in warnings[0].getMessage()


# -- the modeling chain: failures recorded, tiny folds ---------------------------------------------------------

from cssci_platform.lib.harmonization.settings import HarmonizationSettings  # noqa: E402
from cssci_platform.lib.modeling import training  # noqa: E402
from cssci_platform.lib.modeling.chains import ChainSettings  # noqa: E402
from cssci_platform.lib.modeling.signatures import Signature  # noqa: E402
from cssci_platform.lib.selection.settings import SelectionSettings  # noqa: E402


def small_matrix(
    n: int,
    p: int = 6,
    signal: float = 2.0,
    seed: int = 0,
    centers: tuple[str, ...] = ("A", "B"),
    constant: bool = False,
) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.resize(np.array(["0", "1"]), n))
    values = rng.normal(size=(n, p)) + signal * (labels == "1")[:, None]
    if constant:
        values[:] = 1.0
    matrix = pd.DataFrame(
        values,
        columns=[f"rad__T1__lesion__original__original_glcm_F{i}" for i in range(p)],
        index=pd.Index([f"P{i:02d}" for i in range(n)], name="patient_key"),
    )
    matrix.insert(0, "label", labels)
    matrix.insert(0, "cohort", "development")
    matrix.insert(0, "center", [centers[i % len(centers)] for i in range(n)])
    return matrix


def first_rows_train(matrix: pd.DataFrame, n_train: int) -> pd.Series:
    return pd.Series(["train"] * n_train + ["test"] * (len(matrix) - n_train), index=matrix.index)


def test_a_failing_signature_is_recorded_and_does_not_stop_the_others() -> None:
    settings = ChainSettings(selection=SelectionSettings(mrmr_k=None, lasso=False, rank_test=False), lasso_cv=3)
    constant = small_matrix(40, constant=True)
    roles = first_rows_train(constant, 32)
    fits = training.fit_signature(
        constant, roles, Signature("rad"), ["LR", "KNN"], "leakage_safe", ["0", "1"], settings, cv_folds=3
    )
    assert [type(f).__name__ for f in fits] == ["FailedFit", "FailedFit"]
    assert {f.spec.classifier for f in fits} == {"LR", "KNN"}
    assert "CV fold 1 of 3" in fits[0].reason and fits[0].stage == "selection chain"
    healthy = small_matrix(40)
    [model] = training.fit_signature(
        healthy, roles, Signature("rad"), ["LR"], "leakage_safe", ["0", "1"], settings, cv_folds=3
    )
    assert isinstance(model, training.TrainedModel)


def test_a_small_center_inside_a_cv_fold_says_it_is_a_fold_and_names_the_key() -> None:
    matrix = small_matrix(40, centers=("A", "B", "B", "B", "A", "B", "B", "B", "A", "B"))
    matrix.loc[matrix.index[:30], "center"] = matrix["center"].iloc[:30].replace({"A": "B"})
    matrix.loc[matrix.index[0], "center"] = "C"
    matrix.loc[matrix.index[1], "center"] = "C"
    matrix.loc[matrix.index[2], "center"] = "A"
    matrix.loc[matrix.index[3], "center"] = "A"
    roles = first_rows_train(matrix, 32)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(small_center="error"),
        selection=SelectionSettings(mrmr_k=None, lasso=False, rank_test=False),
    )
    [failed] = training.fit_signature(
        matrix, roles, Signature("rad"), ["LR"], "leakage_safe", ["0", "1"], settings, cv_folds=5
    )
    assert "CV fold" in failed.reason and "harmonization.small_center" in failed.reason, failed.reason


def test_lightgbm_on_16_training_rows_is_not_a_constant_predictor() -> None:
    matrix = small_matrix(20, p=4, signal=1.5, seed=1)
    roles = first_rows_train(matrix, 16)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False),
        selection=SelectionSettings(rank_test=False, spearman_threshold=None, mrmr_k=None, lasso=False),
    )
    [model] = training.train_signature(
        matrix, roles, Signature("rad"), ["LightGBM"], "leakage_safe", ["0", "1"], settings, cv_folds=5
    )
    assert model.predictions["probability"].nunique() > 2
    assert model.best_params["min_child_samples"] <= 16 // 4
    assert any("min_child_samples" in note for note in model.decisions)


def test_tiny_folds_are_flagged_and_a_zero_sd_cv_auc_is_marked_degenerate() -> None:
    matrix = small_matrix(24, p=3, signal=6.0, seed=2)
    roles = first_rows_train(matrix, 20)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False),
        selection=SelectionSettings(rank_test=False, spearman_threshold=None, mrmr_k=None, lasso=False),
    )
    [model] = training.train_signature(
        matrix, roles, Signature("rad"), ["LR"], "leakage_safe", ["0", "1"], settings, cv_folds=5
    )
    assert model.small_sample and "small sample" in model.small_sample[0]
    assert model.cv_score_sd == 0 and model.degenerate_cv


# -- per-channel PCA and z-score on 19 training rows ------------------------------------------------------------

from cssci_platform.lib.selection import ChannelPCA, ZScoreScaler  # noqa: E402


def test_channel_pca_on_19_rows_keeps_at_most_18_components_and_no_null_one() -> None:
    rng = np.random.default_rng(3)
    columns = [f"dl__resnet18__original__{i:04d}" for i in range(512)]
    train = pd.DataFrame(rng.normal(size=(19, 512)), columns=columns)
    test = pd.DataFrame(rng.normal(size=(5, 512)), columns=columns)
    pca = ChannelPCA(32).set_output(transform="pandas").fit(train)
    [(_, fitted)] = pca.pcas_.values()
    assert fitted.n_components_ == 18
    assert fitted.explained_variance_.min() > 1e-6 * fitted.explained_variance_.max()
    scaler = ZScoreScaler().set_output(transform="pandas").fit(pca.transform(train))
    assert np.abs(scaler.transform(pca.transform(test)).to_numpy()).max() < 100


def test_zscore_does_not_scale_numerical_noise_to_unit_variance() -> None:
    rng = np.random.default_rng(4)
    train = pd.DataFrame({"real": rng.normal(size=19), "noise": rng.normal(size=19) * 5e-16})
    scaler = ZScoreScaler().set_output(transform="pandas").fit(train)
    scaled = scaler.transform(pd.DataFrame({"real": [0.5], "noise": [3e-15]}))
    assert abs(scaled["noise"].iloc[0]) < 1e-10 and any("near-constant" in n for n in scaler.report_.notes)


# -- the split keeps each center's share ------------------------------------------------------------------------

import polars as pl  # noqa: E402

from cssci_platform.lib.splits import SplitSpec, assign_splits  # noqa: E402


def test_holdout_split_stratifies_by_center_as_well_as_outcome() -> None:
    worst = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        centers = ["A"] * 30 + ["B"] * 30 + ["C"] * 10
        patients = pl.DataFrame(
            {
                "patient_key": [f"P{i:02d}" for i in range(70)],
                "center": centers,
                "cohort": ["development"] * 70,
                "label": [str(v) for v in rng.integers(0, 2, 70)],
            }
        )
        roles = assign_splits(patients, SplitSpec("holdout", 0.2, seed)).join(patients, on="patient_key")
        train = roles.filter(pl.col("role") == "train")["center"].value_counts()
        share = {c: n for c, n in train.iter_rows()}
        worst = max(worst, max(abs(share[c] - 0.8 * size) for c, size in (("A", 30), ("B", 30), ("C", 10))))
    assert worst <= 1.5, worst


# -- early check: center sizes from the manifest and the seeds ---------------------------------------------------

from cssci_platform.lib.modeling.center_checks import center_size_problems  # noqa: E402


def test_center_sizes_after_the_split_and_inside_cv_folds_are_found_before_any_image() -> None:
    rng = np.random.default_rng(0)
    centers = ["A"] * 20 + ["B"] * 20 + ["C"] * 3
    patients = pl.DataFrame(
        {
            "patient_key": [f"P{i:02d}" for i in range(43)],
            "center": centers,
            "cohort": ["development"] * 43,
            "label": [str(v) for v in rng.integers(0, 2, 43)],
        }
    )
    split = SplitSpec("holdout", 0.2, 42)
    problems = center_size_problems(patients, split, 10, 42, HarmonizationSettings(small_center="error"))
    assert problems and {p.center for p in problems} == {"C"}
    assert all(p.stops_the_run and "harmonization.small_center" in p.fix for p in problems)
    in_folds = [p for p in problems if p.cv_fold is not None]
    assert in_folds and "CV fold" in in_folds[0].message()
    handled = center_size_problems(patients, split, 10, 42, HarmonizationSettings(small_center="pool"))
    assert len(handled) == len(problems) and not any(p.stops_the_run for p in handled)
    assert center_size_problems(patients, split, 10, 42, HarmonizationSettings(enabled=False)) == []
    every_center = center_size_problems(patients, split, 10, 42, HarmonizationSettings(min_center_size=25))
    assert {p.center for p in every_center} == {"A", "B", "C"}  # 20 patients each at most: all under 25


def test_the_early_check_predicts_the_cv_fold_where_training_fails() -> None:
    rng = np.random.default_rng(0)
    patients = pl.DataFrame(
        {
            "patient_key": [f"P{i:02d}" for i in range(43)],
            "center": ["A"] * 20 + ["B"] * 20 + ["C"] * 3,
            "cohort": ["development"] * 43,
            "label": [str(v) for v in rng.integers(0, 2, 43)],
        }
    )
    split = SplitSpec("holdout", 0.2, 42)
    [first, *_] = [
        p
        for p in center_size_problems(patients, split, 5, 7, HarmonizationSettings(small_center="error"))
        if p.cv_fold is not None
    ]
    matrix = small_matrix(43).assign(center=patients["center"].to_list(), label=patients["label"].to_list())
    matrix.index = pd.Index(patients["patient_key"].to_list(), name="patient_key")
    roles = pd.Series(dict(assign_splits(patients, split).select("patient_key", "role").iter_rows()))
    settings = ChainSettings(
        harmonization=HarmonizationSettings(small_center="error"),
        selection=SelectionSettings(mrmr_k=None, lasso=False, rank_test=False),
        seed=7,
    )
    [failed] = training.fit_signature(
        matrix, roles, Signature("rad"), ["LR"], "leakage_safe", ["0", "1"], settings, cv_folds=5
    )
    assert f"CV fold {first.cv_fold} of 5" in failed.reason and "'C' has" in failed.reason


def test_paper_faithful_prefilter_leaving_one_feature_completes_without_empirical_bayes() -> None:
    rng = np.random.default_rng(5)
    base = rng.normal(size=24)
    matrix = small_matrix(24, p=3, signal=0.0, seed=5)
    for i, column in enumerate(c for c in matrix.columns if c.startswith("rad__")):  # three copies of one noise feature
        matrix[column] = base * (1 + 0.001 * i) + (matrix["center"] == "B") * 2.0
    roles = first_rows_train(matrix, 19)
    settings = ChainSettings(selection=SelectionSettings(rank_alpha=1.0, mrmr_k=None, lasso=False))
    [model] = training.train_signature(
        matrix, roles, Signature("rad"), ["LR"], "paper_faithful", ["0", "1"], settings, cv_folds=3
    )
    assert len(model.input_columns) == 1
    assert any("empirical Bayes needs at least 2" in note for note in model.decisions)


def test_shape_features_are_not_harmonized_by_default_in_the_modeling_chain() -> None:
    matrix = small_matrix(40, p=4)
    matrix = matrix.rename(columns={"rad__T1__lesion__original__original_glcm_F0": SHAPE})
    matrix[SHAPE] = np.abs(matrix[SHAPE]) + 30 * (matrix["center"] == "B")  # lesion size differs by center by chance
    roles = first_rows_train(matrix, 32)
    settings = ChainSettings(
        selection=SelectionSettings(rank_test=False, spearman_threshold=None, mrmr_k=None, lasso=False)
    )
    [model] = training.train_signature(
        matrix, roles, Signature("rad"), ["LR"], "leakage_safe", ["0", "1"], settings, cv_folds=3
    )
    combat = model.pipeline.named_steps["combat"]
    assert combat.unharmonized_cols_ == [SHAPE] and SHAPE not in combat.harmonized_cols_
    train = matrix[roles == "train"]
    harmonized = combat.transform(train.drop(columns=["cohort", "label"]))  # the fitted pipeline's step: pandas out
    assert (harmonized[SHAPE] == train[SHAPE]).all()


def test_a_combat_fitted_before_these_attributes_existed_still_transforms() -> None:
    frame = centers_frame({"A": 12, "B": 12})
    combat = ComBat().fit(frame)
    expected = combat.transform(frame)
    for attribute in (
        "harmonized_cols_",
        "unharmonized_cols_",
        "pooled_centers_",
        "excluded_centers_",
        "eb_used_",
        "decisions_",
        "report_",
    ):
        delattr(combat, attribute)
    np.testing.assert_array_equal(combat.transform(frame), expected)


def test_a_zero_sd_cv_auc_on_tiny_folds_does_not_silently_win_the_champion() -> None:
    matrix = small_matrix(24, p=3, signal=6.0, seed=2)
    roles = first_rows_train(matrix, 20)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False),
        selection=SelectionSettings(rank_test=False, spearman_threshold=None, mrmr_k=None, lasso=False),
    )
    degenerate, other = training.train_signature(
        matrix, roles, Signature("rad"), ["LR", "NaiveBayes"], "leakage_safe", ["0", "1"], settings, cv_folds=5
    )
    assert degenerate.degenerate_cv and degenerate.cv_score_mean == 1.0
    other.small_sample = [note for note in other.small_sample if not note.startswith("degenerate")]
    assert training.champion_candidates([degenerate, other]) == [other]
    assert training.champion_candidates([degenerate]) == [degenerate]  # nothing else: kept, flagged


def test_lasso_inside_a_small_cv_fold_uses_fewer_folds_with_a_note() -> None:
    from cssci_platform.lib.selection import LassoSelector

    rng = np.random.default_rng(6)
    y = pd.Series(["0"] * 8 + ["1"] * 8)
    X = pd.DataFrame(
        rng.normal(size=(16, 5)) + 2.0 * (y == "1").to_numpy()[:, None], columns=[f"f{i}" for i in range(5)]
    )
    with pytest.raises(ValueError, match="needs at least 10 training patients per class"):
        LassoSelector(cv=10).fit(X, y)
    lasso = LassoSelector(cv=10, on_small_class="fewer_folds").fit(X, y)
    assert lasso.n_folds_ == 8 and "8-fold CV instead of 10" in lasso.report_.notes[0]


@pytest.mark.parametrize("policy", ["pool", "unseen", "error"])
def test_a_center_with_one_training_patient_through_the_modeling_chain(policy: str) -> None:
    matrix = small_matrix(40, p=4)
    matrix.loc[[matrix.index[0], matrix.index[-1]], "center"] = "C"  # one training patient, one test patient
    roles = first_rows_train(matrix, 32)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(small_center=policy),
        selection=SelectionSettings(rank_test=False, mrmr_k=None, lasso=False),
    )
    [fit] = training.fit_signature(
        matrix, roles, Signature("rad"), ["LR"], "leakage_safe", ["0", "1"], settings, cv_folds=3
    )
    if policy == "error":
        assert isinstance(fit, training.FailedFit) and "harmonization.small_center" in fit.reason
    else:
        assert isinstance(fit, training.TrainedModel) and fit.metrics["test"]["auc"] > 0.7
        assert any("small centers {'C': 1}" in note for note in fit.decisions)
        # the CV folds whose training part holds the one C patient decided too, and say which fold they are
        assert sum(note.startswith("CV fold") and "small centers {'C': 1}" in note for note in fit.decisions) == 2


def test_the_small_center_policy_is_an_experiment_config_key_that_reaches_the_fits() -> None:
    from pydantic import ValidationError

    from cssci_platform.lib.modeling.chains import feature_chain
    from cssci_platform.lib.study_config.model import StudyConfig

    config = StudyConfig.model_validate(
        {
            "name": "small",
            "cohort": {"synthetic": {"protocol": "demo"}},
            "outcome": {"name": "good_outcome"},
            "harmonization": {
                "small_center": "unseen",
                "min_center_size": 3,
                "unharmonized_feature_classes": ["shape", "glcm"],
            },
        }
    )
    in_models = dict(feature_chain(["rad__a"], ChainSettings(harmonization=config.harmonization)))["combat"]
    in_table = config.harmonization.combat("center")  # harmonized_features
    for combat in (in_models, in_table):
        assert (combat.small_center, combat.min_center_size, combat.unharmonized_classes) == (
            "unseen",
            3,
            ("shape", "glcm"),
        )
    assert (
        StudyConfig.model_validate(
            {"name": "d", "cohort": {"synthetic": {"protocol": "demo"}}, "outcome": {"name": "o"}}
        ).harmonization.small_center
        == "pool"
    )
    with pytest.raises(ValidationError, match="small_center"):
        StudyConfig.model_validate(
            {
                "name": "d",
                "cohort": {"synthetic": {"protocol": "demo"}},
                "outcome": {"name": "o"},
                "harmonization": {"small_center": "merge"},
            }
        )
