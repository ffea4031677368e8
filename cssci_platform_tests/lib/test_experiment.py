"""Experiments: leakage canary, planted-signal recovery, signatures, modes, multiclass, fold-shared tuning."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pytest
from sklearn.model_selection import GridSearchCV

from cssci_platform.lib.classifiers import grid_for, make_estimator, stratified_folds
from cssci_platform.lib.harmonization.settings import HarmonizationSettings
from cssci_platform.lib.modeling.chains import ChainSettings, build_pipeline
from cssci_platform.lib.modeling.signatures import Signature, parse_signature, result_name
from cssci_platform.lib.modeling.training import train_signature
from cssci_platform.lib.modeling.tuning import fit_chain_folds, tune_on_folds
from cssci_platform.lib.selection.settings import SelectionSettings
from cssci_platform.lib.splits import PRESETS, assign_splits

CANARY_SEEDS = range(20)


def cohort_matrix(
    seed: int,
    n: int = 120,
    p: int = 2000,
    signal: float = 0.0,
    centers: int = 1,
    classes: tuple[str, ...] = ("0", "1"),
    center_shift: float = 0.0,
) -> pd.DataFrame:
    """Noise features (the first 5 carry `signal` x class index), balanced labels, optional additive center shifts."""
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.resize(np.array(classes), n))
    codes = np.searchsorted(np.array(classes), labels)
    values = rng.normal(size=(n, p))
    values[:, :5] += signal * codes[:, None]
    center = np.array([f"C{i % centers}" for i in range(n)])
    values += center_shift * np.array([int(c[1:]) for c in center])[:, None] * rng.normal(1, 0.2, size=p)
    matrix = pd.DataFrame(
        values,
        columns=[f"rad__T2__lesion__original__f{i:04d}" for i in range(p)],
        index=pd.Index([f"P{i:03d}" for i in range(n)], name="patient_key"),
    )
    matrix.insert(0, "label", labels)
    matrix.insert(0, "cohort", "development")
    matrix.insert(0, "center", center)
    return matrix


def holdout_roles(matrix: pd.DataFrame, seed: int, preset: str = "holdout_7_3") -> pd.Series:
    patients = pl.DataFrame(
        {
            "patient_key": list(matrix.index),
            "center": list(matrix["center"]),
            "cohort": list(matrix["cohort"]),
            "label": list(matrix["label"]),
        }
    )
    spec = PRESETS[preset]
    splits = assign_splits(patients, type(spec)(spec.strategy, spec.test_fraction, seed))
    return pd.Series(dict(splits.select("patient_key", "role").iter_rows()))


def test_leakage_canary_pure_noise_is_chance_when_leakage_safe_and_optimistic_when_paper_faithful() -> None:
    auc = {"leakage_safe": [], "paper_faithful": []}
    for seed in CANARY_SEEDS:
        matrix = cohort_matrix(seed)
        roles = holdout_roles(matrix, seed)
        settings = ChainSettings(
            harmonization=HarmonizationSettings(enabled=False),
            selection=SelectionSettings(mrmr_k=10),
            lasso_cv=5,
            seed=seed,
        )
        for mode in auc:
            [trained] = train_signature(matrix, roles, Signature("rad"), ["LR"], mode, ["0", "1"], settings, cv_folds=5)
            auc[mode].append(trained.metrics["test"]["auc"])
    safe, faithful = np.mean(auc["leakage_safe"]), np.mean(auc["paper_faithful"])
    print(
        f"canary mean test AUC over {len(CANARY_SEEDS)} seeds: leakage_safe {safe:.3f}, paper_faithful {faithful:.3f}"
    )
    assert abs(safe - 0.5) <= 0.05, auc["leakage_safe"]
    assert faithful - safe >= 0.08, (safe, faithful)


def test_planted_signal_is_recovered_across_harmonized_centers() -> None:
    matrix = cohort_matrix(3, n=150, p=300, signal=1.0, centers=3, center_shift=1.5)
    roles = holdout_roles(matrix, 3, "holdout_8_2")
    settings = ChainSettings(selection=SelectionSettings(mrmr_k=10), lasso_cv=5, seed=3)
    trained = train_signature(
        matrix, roles, Signature("rad"), ["LR", "RandomForest"], "leakage_safe", ["0", "1"], settings, cv_folds=5
    )
    for model in trained:
        assert model.metrics["test"]["auc"] > 0.8, (model.spec.name, model.metrics["test"])
        assert model.cv_score_mean > 0.8
        kept = next(r for r in model.selection if r["step"] == "lasso")["kept"]
        assert sum(name.endswith(("f0000", "f0001", "f0002", "f0003", "f0004")) for name in kept) >= 3
    combat = trained[0].pipeline.named_steps["combat"]
    assert list(combat.batches_) == ["C0", "C1", "C2"]


def test_every_patient_gets_probabilities_and_prospective_rows_are_scored_without_labels() -> None:
    matrix = cohort_matrix(4, n=90, p=50, signal=1.0)
    matrix.loc[matrix.index[:6], "cohort"] = "prospective"
    matrix.loc[matrix.index[:3], "label"] = None
    patients = pl.DataFrame(
        {
            "patient_key": list(matrix.index),
            "center": list(matrix["center"]),
            "cohort": list(matrix["cohort"]),
            "label": list(matrix["label"]),
        }
    )
    roles = pd.Series(dict(assign_splits(patients, PRESETS["holdout_8_2"]).select("patient_key", "role").iter_rows()))
    [model] = train_signature(
        matrix,
        roles,
        Signature("rad"),
        ["LR"],
        "leakage_safe",
        ["0", "1"],
        ChainSettings(
            harmonization=HarmonizationSettings(enabled=False), selection=SelectionSettings(mrmr_k=5), lasso_cv=5
        ),
        cv_folds=5,
    )
    predictions = model.predictions
    assert set(predictions["role"]) == {"train", "test", "validation"}
    assert predictions["patient_key"].nunique() == 90
    sums = predictions.groupby("patient_key")["probability"].sum()
    assert np.allclose(sums, 1)
    assert model.metrics["validation"]["n"] == 3  # only prospective patients with a known outcome are evaluated
    assert 0 < model.threshold < 1


def test_fold_shared_tuning_equals_grid_search_over_the_whole_pipeline() -> None:
    matrix = cohort_matrix(5, n=80, p=40, signal=0.8)
    X, y = matrix, matrix["label"].astype(str)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False),
        selection=SelectionSettings(mrmr_k=8, lasso=False, spearman_threshold=0.9),
    )
    pipeline = build_pipeline(Signature("rad"), Signature("rad").columns(matrix), make_estimator("KNN"), settings)
    reference = GridSearchCV(pipeline, grid_for("KNN", "fast"), scoring="roc_auc", cv=stratified_folds(y, 5, 0)).fit(
        X, y
    )
    from sklearn.pipeline import Pipeline

    ours = tune_on_folds(fit_chain_folds(Pipeline(pipeline.steps[:-1]), X, y, 5, 0), make_estimator("KNN"), "KNN")
    assert {f"clf__{k}": v for k, v in ours.best_params.items()} == reference.best_params_
    assert ours.cv_score_mean == pytest.approx(reference.best_score_, abs=1e-12)


def test_multiclass_runs_through_the_same_chain() -> None:
    classes = ("breast", "kidney", "lung", "prostate")
    matrix = cohort_matrix(6, n=160, p=60, signal=1.2, classes=classes)
    roles = holdout_roles(matrix, 6)
    [model] = train_signature(
        matrix,
        roles,
        Signature("rad"),
        ["RandomForest"],
        "leakage_safe",
        list(classes),
        ChainSettings(
            harmonization=HarmonizationSettings(enabled=False), selection=SelectionSettings(mrmr_k=10), lasso_cv=5
        ),
        cv_folds=5,
    )
    test = model.metrics["test"]
    assert test["top1_accuracy"] <= test["top2_accuracy"] <= test["top3_accuracy"]
    assert test["auc_macro_ovr"] > 0.6
    assert set(model.predictions["class_label"]) == set(classes)


def test_signature_names_follow_the_studies_tables() -> None:
    assert result_name(Signature("rad+dl", "resnet34"), "RandomForest") == "Rad + ResNet34_RandomForest"
    assert result_name(Signature("dl", "resnet152"), "LightGBM") == "ResNet152_LightGBM"
    for name in ("Rad", "DL_resnet18", "Rad+DL_resnet50", "Clinical", "Combined"):
        assert parse_signature(name).name == name
    with pytest.raises(ValueError, match="unknown signature"):
        parse_signature("Deep")


def test_clinical_and_combined_are_logistic_regressions_and_impute_missing_values() -> None:
    matrix = cohort_matrix(7, n=100, p=30, signal=1.0)
    rng = np.random.default_rng(7)
    codes = (matrix["label"] == "1").astype(float)
    matrix["clin__age"] = 60 + 8 * codes + rng.normal(0, 5, len(matrix))
    matrix["clin__diabetes"] = (rng.random(len(matrix)) < 0.3 + 0.3 * codes).astype(float)
    matrix.loc[matrix.index[:4], "clin__age"] = np.nan
    roles = holdout_roles(matrix, 7, "holdout_8_2")
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False), selection=SelectionSettings(mrmr_k=5), lasso_cv=5
    )
    for signature in (Signature("clinical"), Signature("combined")):
        [model] = train_signature(
            matrix, roles, signature, ["RandomForest", "SVM"], "leakage_safe", ["0", "1"], settings, cv_folds=5
        )
        assert model.spec.classifier == "LR"
        assert model.metrics["test"]["auc"] > 0.7, (signature.name, model.metrics["test"])
    assert model.pipeline.named_steps["clf"].rad_score(
        matrix.drop(columns=["center", "cohort", "label"]).assign(center="C0")
    ).shape == (100,)


def test_without_rank_test_and_spearman_the_two_modes_fit_the_same_model() -> None:
    """What `config_notes` tells IANR-style configs (ICC -> z-score -> LASSO): paper_faithful has nothing to leak."""
    matrix = cohort_matrix(5, n=80, p=60, signal=0.8)
    roles = holdout_roles(matrix, 5)
    settings = ChainSettings(
        harmonization=HarmonizationSettings(enabled=False),
        selection=SelectionSettings(rank_test=False, spearman_threshold=None, mrmr_k=None),
        lasso_cv=5,
        seed=5,
    )
    safe, faithful = (
        train_signature(matrix, roles, Signature("rad"), ["LR"], mode, ["0", "1"], settings, cv_folds=5)[0]
        for mode in ("leakage_safe", "paper_faithful")
    )
    assert faithful.input_columns == safe.input_columns
    assert (
        faithful.metrics["test"]["auc"] == safe.metrics["test"]["auc"] and faithful.cv_score_mean == safe.cv_score_mean
    )
    probabilities = [
        m.predictions.sort_values(["patient_key", "class_label"])["probability"].to_numpy() for m in (safe, faithful)
    ]
    np.testing.assert_array_equal(*probabilities)
