"""The model zoo without Dagster: the fold x mode x signature loop, per-fold labels, champion choice, and the settings
types the study config composes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.chains import ChainSettings, feature_chain
from cssci_platform.lib.modeling.settings import ModelsSettings
from cssci_platform.lib.modeling.signatures import Signature, study_signatures
from cssci_platform.lib.modeling.training import ModelSpec, TrainedModel
from cssci_platform.lib.modeling.zoo import choose_champions, labels_for_mode, train_zoo
from cssci_platform.lib.outcome_rules import OutcomeRuleError, OutcomeSettings
from cssci_platform.lib.report.inputs import MethodSettings
from cssci_platform.lib.report.methods import chain_steps
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform.lib.splits import SplitSettings
from cssci_platform.lib.study_config import load_config
from cssci_platform_tests.lib.test_experiment import cohort_matrix, holdout_roles

QUICK = ChainSettings(
    harmonization=HarmonizationSettings(enabled=False), selection=SelectionSettings(mrmr_k=5, lasso=False), lasso_cv=3
)


def test_train_zoo_fits_every_fold_mode_signature_and_classifier_in_order() -> None:
    matrix = cohort_matrix(seed=1, n=60, p=30, signal=1.5)
    folds = {"r0": holdout_roles(matrix, seed=1), "r1": holdout_roles(matrix, seed=2)}
    models = ModelsSettings(signatures=["Rad"], classifiers=["LR", "RandomForest"], cv_folds=3)
    fits = list(train_zoo(matrix, folds, ["0", "1"], models, ["leakage_safe", "paper_faithful"], QUICK))
    assert [(f.fold, f.model.spec.mode, f.model.spec.classifier) for f in fits] == [
        (fold, mode, clf)
        for fold in ("r0", "r1")
        for mode in ("leakage_safe", "paper_faithful")
        for clf in ("LR", "RandomForest")
    ]
    assert not any(f.failed for f in fits) and all(f.outcome_threshold is None for f in fits)
    assert all(f.roles is folds[f.fold] for f in fits)
    assert fits[0].model.metrics["test"]["auc"] > 0.7  # the planted signal


def test_leakage_safe_labels_are_rethresholded_at_the_training_mean_only() -> None:
    keys = pd.Index(["a", "b", "c", "d"], name="patient_key")
    matrix = pd.DataFrame({"label": ["0", "1", "1", None]}, index=keys)
    roles = pd.Series({"a": "train", "b": "train", "c": "test", "d": "test"})
    scores = pd.Series({"a": 0.0, "b": 2.0, "c": 1.5, "d": 100.0})  # the test scores do not move the threshold
    safe, threshold = labels_for_mode(matrix, roles, scores, "leakage_safe")
    assert threshold == 1.0 and safe["label"].tolist() == ["0", "1", "1", None]  # unknown stays unknown
    faithful, none = labels_for_mode(matrix, roles, scores, "paper_faithful")
    assert none is None and faithful is matrix
    with pytest.raises(OutcomeRuleError, match="no training patient has a score"):
        labels_for_mode(matrix, pd.Series({"c": "test"}), scores, "leakage_safe")


def test_only_change_above_mean_relabels_per_fold() -> None:
    assert OutcomeSettings(name="y", source="s", rule="change_above_mean", baseline="b").relabelled_per_fold
    assert not OutcomeSettings(name="y", source="s", rule="at_least", threshold=3).relabelled_per_fold
    assert not OutcomeSettings(name="y").relabelled_per_fold


def _model(signature: str, mode: str, cv: float, degenerate: bool = False) -> TrainedModel:
    return TrainedModel(
        ModelSpec(Signature(signature), "LR", mode),
        None,
        ["0", "1"],
        {},
        cv,
        0.0,
        0.5,  # type: ignore[arg-type]
        pd.DataFrame(),
        {},
        small_sample=["degenerate CV: no spread"] if degenerate else [],
    )


def test_champions_are_the_best_leakage_safe_cv_auc_per_signature_ties_to_the_smallest_run_id() -> None:
    runs = [
        (_model("rad", "paper_faithful", 0.99), "r1"),
        (_model("rad", "leakage_safe", 0.80), "r3"),
        (_model("rad", "leakage_safe", 0.80), "r2"),
        (_model("rad", "leakage_safe", 0.95, degenerate=True), "r0"),
        (_model("clinical", "leakage_safe", 0.60), "r9"),
    ]
    champions = choose_champions(runs)
    assert {name: key for name, (_, key) in champions.items()} == {"Rad": "r2", "Clinical": "r9"}
    only_degenerate = choose_champions([(_model("rad", "leakage_safe", 0.9, degenerate=True), "r5")])
    assert only_degenerate["Rad"][1] == "r5"  # nothing else is left


def test_default_signatures_follow_the_matrix_columns() -> None:
    matrix = pd.DataFrame(columns=["rad__x", "dl__resnet18__c__0", "clin__age"])
    assert [s.name for s in study_signatures(None, matrix)] == [
        "Rad",
        "DL_resnet18",
        "Rad+DL_resnet18",
        "Clinical",
        "Combined",
    ]
    assert [s.name for s in study_signatures(None, matrix.drop(columns=["clin__age"]))] == [
        "Rad",
        "DL_resnet18",
        "Rad+DL_resnet18",
    ]
    assert [s.name for s in study_signatures(["Clinical"], matrix)] == ["Clinical"]


def test_split_settings_name_the_stored_split_and_the_folds_to_train() -> None:
    assert SplitSettings().stored_name == "holdout_8_2_seed42"
    assert SplitSettings(preset="holdout_7_3", seed=3).stored_name == "holdout_7_3_seed3"
    every = SplitSettings(preset="leave_one_center_out", folds=["all"])
    assert every.stored_name == "leave_one_center_out" and every.trained_folds(["B", "A"]) == ["A", "B"]
    assert SplitSettings().trained_folds(["holdout"]) == ["holdout"] and SplitSettings().first_fold == "holdout"


def test_the_study_config_sections_are_the_settings_the_code_reads() -> None:
    config = load_config("cervical_sci_ianr")
    assert type(config.selection) is SelectionSettings and type(config.harmonization) is HarmonizationSettings
    assert type(config.models) is ModelsSettings and type(config.split) is SplitSettings
    assert type(config.outcome) is OutcomeSettings
    chain = ChainSettings(config.harmonization, config.selection, pd.DataFrame({"icc": [0.9]}, index=["rad__a"]))
    steps = dict(feature_chain(["rad__a"], chain))
    assert steps["icc"].threshold == config.selection.icc_threshold == 0.75
    assert "kept when ICC(3,1) between repeat segmentations was &gt;= 0.75" in chain_steps(
        MethodSettings(config.harmonization, config.selection, config.models.cv_folds)
    )


def test_paper_faithful_training_chain_drops_the_cohort_prefilter_steps() -> None:
    settings = SelectionSettings(rank_test=True, spearman_threshold=0.8, mrmr_k=7)
    after = settings.without_cohort_prefilter()
    assert (after.rank_test, after.spearman_threshold, after.mrmr_k) == (False, None, 7)
    assert np.isclose(settings.spearman_threshold, 0.8)  # frozen: the study's settings are unchanged
