"""The experiment config as Dagster run config: one `ops.<asset>.config` block per configurable asset.

The keys mirror the `dg.Config` classes of the assets (defs/*); `tests` materialize with these blocks, so a
renamed field fails there rather than silently falling back to a default.
"""

from __future__ import annotations

from cssci_platform.lib.splits import PRESETS, SplitSpec
from cssci_platform.lib.study_config.model import StudyConfig


def split_name(config: StudyConfig) -> str:
    preset = PRESETS[config.split.preset]
    return SplitSpec(preset.strategy, preset.test_fraction, config.split.seed, preset.n_splits, preset.n_repeats).name


def first_fold(config: StudyConfig) -> str:
    return "holdout" if config.split.folds == ["all"] else config.split.folds[0]


def asset_configs(config: StudyConfig, study_run: str | None = None) -> dict[str, dict]:
    """Asset (op) name -> its config values."""
    deep, selection, models = config.deep, config.selection, config.models
    configs: dict[str, dict] = {
        "preprocessed_channels": {"spacing_mm": list(config.preprocessing.spacing_mm),
                                  "interpolator": config.preprocessing.interpolator,
                                  "channels": list(config.preprocessing.channels)},
        "radiomics_features": {"params": config.radiomics.params, "channels": list(config.preprocessing.channels),
                               "sequences": config.imaging.sequences, "rois": list(config.imaging.radiomics_rois)},
        "roi_slices": deep.slice.model_dump(),
        "center_embeddings": {"backbones": list(deep.backbones), "weights": deep.weights, "network": "pretrained",
                              "channels": list(deep.channels), "batch_size": deep.batch_size, "device": deep.device,
                              "seed": deep.seed},
        "study_outcome": {"name": config.outcome.name, "source": config.outcome.source_outcome, "rule": config.outcome.rule,
                          "threshold": config.outcome.threshold, "baseline": config.outcome.baseline},
        "patient_splits": {"preset": config.split.preset, "seed": config.split.seed, "outcome": config.outcome.name},
        "feature_matrix": {"outcome": config.outcome.name, "backbones": list(deep.backbones), "network": "pretrained",
                           "clinical_predictors": models.clinical_predictors},
        "harmonized_features": {"split": split_name(config), "fold": first_fold(config),
                                "enabled": config.harmonization.enabled, **_small_center_settings(config)},
        "trained_models": {
            "experiment": config.name, "signatures": models.signatures, "classifiers": list(models.classifiers),
            "modes": list(config.modes), "grid": models.grid, "cv_folds": models.cv_folds, "split": split_name(config),
            "folds": list(config.split.folds), "harmonize": config.harmonization.enabled,
            "unseen_center_policy": config.harmonization.unseen_center_policy, **_small_center_settings(config),
            "icc_threshold": selection.icc_threshold,
            "rank_test": selection.rank_test, "rank_alpha": selection.rank_alpha,
            "spearman_threshold": selection.spearman_threshold, "mrmr_k": selection.mrmr_k, "lasso": selection.lasso,
            "lasso_rule": selection.lasso_rule, "pca_components": selection.pca_components, "seed": models.seed,
            "label_rule": "above_training_mean" if config.outcome.rule == "change_above_mean" else "fixed",
            "study_run": study_run},
        "evaluation_report": {"experiment": config.name, "outcome": config.outcome.name,
                              "clinical_predictors": models.clinical_predictors},
        "prospective_predictions": {"experiment": config.name},
        "validation_metrics": {"experiment": config.name},
    }
    if deep.fine_tuning is not None:
        tuning = deep.fine_tuning
        configs["fine_tuned_backbones"] = {
            "backbones": list(tuning.backbones), "weights": deep.weights, "channels": list(tuning.channels),
            "split": split_name(config), "fold": first_fold(config), "epochs": tuning.epochs, "batch_size": tuning.batch_size,
            "lr": tuning.lr, "backbone_mode": tuning.backbone_mode, "backbone_lr": tuning.backbone_lr,
            "augment": tuning.augment, "seed": deep.seed, "device": deep.device, "gradcam": tuning.gradcam}
    return configs


def _small_center_settings(config: StudyConfig) -> dict:
    harmonization = config.harmonization
    return {"small_center": harmonization.small_center, "min_center_size": harmonization.min_center_size,
            "unharmonized_classes": list(harmonization.unharmonized_feature_classes)}


def run_config(config: StudyConfig, assets: list[str], study_run: str | None = None) -> dict:
    """`{"ops": {...}}` for the configurable assets among `assets` (a job's selection)."""
    configs = asset_configs(config, study_run)
    return {"ops": {name: {"config": configs[name]} for name in assets if name in configs}}
