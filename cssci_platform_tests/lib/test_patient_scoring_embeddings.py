"""Which embeddings score a patient (lib/patient_scoring, no Dagster): the stored rows when the study's networks made
them, else the patient's slices embedded exactly as `center_embeddings` embeds them (backbone, weights, seed)."""

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cssci_platform.lib.deep import load_backbone
from cssci_platform.lib.deep.cohort_networks import embedding_frame
from cssci_platform.lib.deep.settings import DeepSettings
from cssci_platform.lib.patient_scoring import ScoringError, study_embeddings, weights_match

DEEP = DeepSettings(backbones=["resnet18"], weights="none", channels=["original"], seed=3, device="cpu", batch_size=2)


@pytest.fixture
def slices(tmp_path: Path) -> pl.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for channel in ("original", "log"):
        path = tmp_path / f"P1_{channel}.npy"
        np.save(path, rng.random((32, 32), dtype=np.float32))
        rows.append(
            {"patient_key": "P1", "center": "A", "sequence": "sag_T2", "channel": channel, "slice_path": str(path)}
        )
    return pl.DataFrame(rows)


def _stored(weights_id: str, value: float = 7.0) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "patient_key": ["P1"],
            "center": ["A"],
            "sequence": ["sag_T2"],
            "channel": ["original"],
            "backbone": ["resnet18"],
            "weights_id": [weights_id],
            "network": ["pretrained"],
            "embedding": [[value] * 512],
        },
        schema_overrides={"embedding": pl.List(pl.Float32)},
    )


def test_without_stored_rows_the_slices_are_embedded_with_the_study_weights_and_seed(slices: pl.DataFrame) -> None:
    embeddings, new = study_embeddings(slices, pl.DataFrame(), DEEP, pl.DataFrame())
    assert new.height == 1 and set(new["channel"]) == {"original"}  # only the study's deep channels
    expected = embedding_frame(
        slices.filter(pl.col("channel") == "original"),
        load_backbone("resnet18", "none", seed=3),
        "pretrained",
        DEEP.inference(),
    )
    assert embeddings["embedding"].to_list() == expected["embedding"].to_list()
    other_seed = embedding_frame(
        slices.filter(pl.col("channel") == "original"),
        load_backbone("resnet18", "none"),
        "pretrained",
        DEEP.inference(),
    )
    assert embeddings["embedding"].to_list() != other_seed["embedding"].to_list()  # the seed is the study's


def test_stored_rows_made_with_the_study_weights_are_used_as_they_are(slices: pl.DataFrame) -> None:
    embeddings, new = study_embeddings(slices, _stored("none"), DEEP, pl.DataFrame())
    assert new.is_empty() and embeddings["embedding"].to_list() == [[7.0] * 512]


def test_stored_rows_made_with_other_weights_are_not_used(slices: pl.DataFrame) -> None:
    embeddings, new = study_embeddings(slices, _stored("IMAGENET1K_V1"), DEEP, pl.DataFrame())
    assert new.height == 1 and embeddings["weights_id"].to_list() == ["none"]


def test_weights_ids_match_the_setting_that_loads_them(tmp_path: Path) -> None:
    assert weights_match("none", "none") and weights_match("IMAGENET1K_V1", "imagenet")
    assert not weights_match("IMAGENET1K_V1", "none") and not weights_match("none", "imagenet")
    assert not weights_match("IMAGENET1K_V2", "imagenet") and weights_match("IMAGENET1K_V2", "imagenet1k_v2")
    checkpoint = tmp_path / "weights.pt"
    checkpoint.write_bytes(b"not really a checkpoint")
    import hashlib

    digest = hashlib.sha256(checkpoint.read_bytes()).hexdigest()[:16]
    assert weights_match(f"file:{digest}", str(checkpoint)) and not weights_match("file:0000", str(checkpoint))


def test_a_study_embedding_with_fine_tuned_networks_needs_them_stored(slices: pl.DataFrame) -> None:
    deep = DeepSettings(
        backbones=["resnet18"],
        weights="none",
        channels=["original"],
        embedding_network="fine_tuned",
        fine_tuning={"backbones": ["resnet18"], "channels": ["original"]},
    )
    networks = pl.DataFrame(
        schema={
            "network_id": pl.String,
            "backbone": pl.String,
            "channel": pl.String,
            "weights_id": pl.String,
            "checkpoint_path": pl.String,
        }
    )
    with pytest.raises(
        ScoringError, match="no fine-tuned resnet18 for channels \\['original'\\].*fine_tuned_backbones"
    ):
        study_embeddings(slices, _stored("none"), deep, networks)
