"""Cohort-level deep learning on stored ROI slices: embeddings, per-channel fine-tuning, CNN probabilities.

Inputs are `roi_slices` rows (patient_key, channel, slice_path, ...). Label use is explicit: only
`train_channel_network` sees labels, and only those of the rows its caller selected as training.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep.patient_slices import load_network_inputs
from cssci_platform.lib.deep.settings import EMBEDDING_STAGE, InferenceSettings
from cssci_platform.lib.quality import QcIssue

if TYPE_CHECKING:  # the network modules (torch, torchvision, matplotlib) load when a function here runs one
    from cssci_platform.lib.deep.backbones import Backbone
    from cssci_platform.lib.deep.finetune import FineTuneConfig, FineTunedNetwork


def readable_slices(slices: pl.DataFrame) -> tuple[pl.DataFrame, list[QcIssue]]:
    """Keep the patients whose every slice file loads; the others get one issue each (their data untouched)."""
    bad: dict[str, tuple[str, str]] = {}
    for key, path in slices.select("patient_key", "slice_path").iter_rows():
        if key in bad:
            continue
        try:
            pixels = np.load(path)
            if pixels.ndim != 2 or not np.isfinite(pixels).all():
                bad[key] = (path, f"slice file {path} is not a finite 2-D array")
        except (OSError, ValueError) as error:
            bad[key] = (path, f"slice file {path} cannot be read ({error})")
    fix = "re-materialize roi_slices for this patient"
    issues = [QcIssue(key, EMBEDDING_STAGE, "slice_unreadable", message, fix, path)
              for key, (path, message) in bad.items()]
    return slices.filter(~pl.col("patient_key").is_in(list(bad))), issues


def embedding_frame(slices: pl.DataFrame, backbone: Backbone, network: str,
                    settings: InferenceSettings) -> pl.DataFrame:
    """One row per slice: its average-pool embedding from `backbone`, with provenance."""
    from cssci_platform.lib.deep.embeddings import embed_images

    slices = slices.sort("patient_key", "channel")
    features = embed_images(backbone, load_network_inputs(slices["slice_path"].to_list()), settings).features
    return slices.select("patient_key", "center", "sequence", "channel").with_columns(
        backbone=pl.lit(backbone.name), weights_id=pl.lit(backbone.weights_id), network=pl.lit(network),
        embedding=pl.Series(features.tolist(), dtype=pl.List(pl.Float32)),
    )


@dataclass(frozen=True)
class TrainedChannel:
    network: FineTunedNetwork
    classes: list[str]
    train_patients: int


def train_channel_network(train: pl.DataFrame, classes: list[str], backbone: Backbone,
                          config: FineTuneConfig) -> TrainedChannel:
    """Fine-tune on `train` (patient_key, slice_path, label): the training patients of one channel only."""
    from cssci_platform.lib.deep.finetune import fine_tune

    unknown = sorted(set(train["label"]) - set(classes))
    if unknown:
        raise ValueError(f"training labels {unknown} are not among the declared classes {classes}")
    if train["label"].n_unique() < 2:
        raise ValueError(f"fine-tuning needs at least two outcome classes among {train.height} training patients")
    train = train.sort("patient_key")
    labels = np.array([classes.index(label) for label in train["label"]])
    inputs = load_network_inputs(train["slice_path"].to_list())
    network = fine_tune(backbone, inputs, labels, config, num_classes=len(classes))
    return TrainedChannel(network, classes, train.height)


def probability_rows(trained: TrainedChannel, slices: pl.DataFrame, settings: InferenceSettings) -> pl.DataFrame:
    """Class probabilities for every slice row (patient_key, slice_path, ...): one row per patient x class."""
    from cssci_platform.lib.deep.finetune import predict_probabilities

    slices = slices.sort("patient_key")
    inputs = load_network_inputs(slices["slice_path"].to_list())
    probabilities = predict_probabilities(trained.network, inputs, settings)
    keys = slices["patient_key"].to_list()
    return pl.DataFrame({
        "patient_key": [k for k in keys for _ in trained.classes],
        "class_label": trained.classes * len(keys),
        "probability": probabilities.reshape(-1).astype(float),
    })


def write_grad_cams(trained: TrainedChannel, slices: pl.DataFrame, folder: Path) -> dict[str, Path]:
    """A Grad-CAM overlay PNG per patient for the predicted class, superior up; returns patient -> file."""
    from cssci_platform.lib.deep.gradcam import grad_cam, write_cam_overlay_png

    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for key, path in slices.sort("patient_key").select("patient_key", "slice_path").iter_rows():
        inputs = load_network_inputs([path])
        result = grad_cam(trained.network, inputs[0])
        written[key] = write_cam_overlay_png(np.load(path), result.heatmap, folder / f"{key}.png", flip_vertical=True)
    return written


def outcome_classes(spec: CohortSpec, outcome: str) -> list[str]:
    """The class labels a network for `outcome` predicts, in the manifest's order (binary without levels: 0, 1)."""
    variable = spec.outcomes[outcome]
    return list(variable.levels) if variable.levels else ["0", "1"]


def held_out_auc(probabilities: pl.DataFrame, slices: pl.DataFrame, classes: list[str]) -> float | None:
    """ROC AUC of the positive class (`classes[1]`) over the test patients of `slices` (role, label) from
    `probability_rows`; None when it is undefined (not binary, or the labelled test patients hold one class)."""
    from sklearn.metrics import roc_auc_score

    test = slices.filter((pl.col("role") == "test") & pl.col("label").is_not_null())
    if len(classes) != 2 or test["label"].n_unique() < 2:
        return None
    scores = probabilities.filter(pl.col("class_label") == classes[1]).join(test, on="patient_key")
    return float(roc_auc_score((scores["label"] == classes[1]).to_numpy(), scores["probability"].to_numpy()))


def network_name(backbone: str, sequence: str, channel: str, trained: TrainedChannel) -> str:
    """The stored network's id: backbone, sequence, channel and its fine-tuned weights' digest."""
    return f"{backbone}__{sequence}__{channel}__{trained.network.backbone.weights_id.split(':')[-1]}"


def cnn_prediction_rows(probabilities: pl.DataFrame, slices: pl.DataFrame, network_id: str, backbone: str, channel: str,
                        split: str, fold: str, trained: TrainedChannel, created_at: datetime) -> pl.DataFrame:
    """`predictions` rows (signature `CNN`, classifier e.g. `ResNet18_original`) of one network's probabilities."""
    return probabilities.join(slices.select("patient_key", "cohort", "role"), on="patient_key").with_columns(
        signature=pl.lit("CNN"), classifier=pl.lit(f"{backbone.replace('resnet', 'ResNet')}_{channel}"),
        mode=pl.lit("leakage_safe"), split=pl.lit(split), fold=pl.lit(fold), model_name=pl.lit(network_id),
        model_version=pl.lit(trained.network.backbone.weights_id), created_at=pl.lit(created_at))
