"""The evaluation and bookkeeping of fine-tuned networks, without Dagster: held-out AUC, classes, saved recipes."""

from __future__ import annotations

import math

import polars as pl
import pytest
import torch

from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep import load_backbone, load_fine_tuned, save_fine_tuned
from cssci_platform.lib.deep.cohort_networks import TrainedChannel, held_out_auc, outcome_classes
from cssci_platform.lib.deep.finetune import fine_tune
from cssci_platform.lib.deep.settings import FineTuneConfig, FineTuningSettings

CLASSES = ["0", "1"]


def _slices(roles: list[str], labels: list[str | None]) -> pl.DataFrame:
    return pl.DataFrame({"patient_key": [f"p{i}" for i in range(len(roles))], "role": roles, "label": labels})


def _probabilities(positive: list[float]) -> pl.DataFrame:
    keys = [f"p{i}" for i in range(len(positive))]
    return pl.DataFrame({"patient_key": [k for k in keys for _ in CLASSES], "class_label": CLASSES * len(keys),
                         "probability": [p for q in positive for p in (1 - q, q)]})


def test_held_out_auc_uses_the_labelled_test_patients_only():
    # p0-p3 test (one mis-ranked pair of four), p4-p5 train ranked backwards, p6 test without a label
    slices = _slices(["test"] * 4 + ["train"] * 2 + ["test"], ["0", "1", "0", "1", "0", "1", None])
    probabilities = _probabilities([0.2, 0.9, 0.6, 0.5, 0.99, 0.01, 0.7])
    assert held_out_auc(probabilities, slices, CLASSES) == pytest.approx(0.75)


def test_held_out_auc_is_undefined_with_one_test_class_or_more_than_two_classes():
    one_class = _slices(["test", "test", "train"], ["1", "1", "0"])
    assert held_out_auc(_probabilities([0.3, 0.8, 0.1]), one_class, CLASSES) is None
    two = _slices(["test", "test"], ["0", "1"])
    assert held_out_auc(_probabilities([0.3, 0.8]), two, ["a", "b", "c"]) is None


def test_outcome_classes_follow_the_manifest_levels():
    spec = CohortSpec(manifest_version=1, name="c", table="t.csv", centers=["A"], sequences=["sag_T2"], rois=["lesion"],
                      outcomes={"site": {"type": "multiclass", "levels": ["lung", "breast", "prostate"]},
                                "good": {"type": "binary"}})
    assert outcome_classes(spec, "site") == ["lung", "breast", "prostate"]
    assert outcome_classes(spec, "good") == ["0", "1"]


def test_a_network_trained_with_the_study_section_saves_the_recipe_alone(tmp_path):
    settings = FineTuningSettings(backbones=["resnet18"], channels=["original"], epochs=1, batch_size=2, device="cpu",
                                  augment=False)
    backbone = load_backbone("resnet18", "none", seed=0)
    images = torch.zeros((4, 3, 16, 16))
    network = fine_tune(backbone, images, torch.tensor([0, 1, 0, 1]), settings, num_classes=2)
    assert type(network.config) is FineTuneConfig and network.config.epochs == 1
    restored = load_fine_tuned(tmp_path / "n.pt") if save_fine_tuned(network, tmp_path / "n.pt") else None
    assert restored is not None and restored.config == network.config
    assert not math.isnan(TrainedChannel(network, CLASSES, 4).network.loss_history[-1])
