"""ResNet backbones, offline weights and average-pool embeddings (CPU, 32 x 32 inputs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from cssci_platform.lib.deep import (
    FEATURE_DIMS,
    BackboneWeightsError,
    InferenceSettings,
    embed_images,
    imagenet_checkpoint_path,
    load_backbone,
    pooled_features,
)

CPU = InferenceSettings(device="cpu", batch_size=4)


@pytest.fixture(autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def empty_torch_home(tmp_path, monkeypatch) -> Path:
    home = tmp_path / "torch_home"
    home.mkdir()
    monkeypatch.setenv("TORCH_HOME", str(home))
    return home


def images(n: int = 5, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name", list(FEATURE_DIMS))
def test_embedding_shape_per_backbone(name):
    backbone = load_backbone(name, "none")
    embeddings = embed_images(backbone, images(), CPU)
    assert embeddings.features.shape == (5, FEATURE_DIMS[name]) and embeddings.features.dtype == np.float32
    assert np.isfinite(embeddings.features).all()
    assert embeddings.metadata() == {"backbone": name, "weights_id": "none", "feature_dim": FEATURE_DIMS[name],
                                     "n_images": 5, "device": "cpu", "precision": "float32", "batch_size": 4, "seed": 0}


def test_embeddings_are_the_penultimate_average_pool_output():
    backbone = load_backbone("resnet18", "none")
    reference = torchvision.models.resnet18()
    reference.load_state_dict(backbone.model.state_dict())
    reference.fc = torch.nn.Identity()
    with torch.no_grad():
        expected = reference.eval()(images()).numpy()
    np.testing.assert_allclose(embed_images(backbone, images(), CPU).features, expected, rtol=1e-5, atol=1e-5)
    assert backbone.model.training, "embedding must restore the model's training flag"


def test_seeded_initialisation_and_embeddings_are_deterministic():
    first, second, other = (load_backbone("resnet18", "none", seed=s) for s in (7, 7, 8))
    a, b = embed_images(first, images(), CPU).features, embed_images(second, images(), CPU).features
    assert np.array_equal(a, b)
    assert not np.array_equal(a, embed_images(other, images(), CPU).features)
    assert np.array_equal(a, embed_images(first, images(), CPU).features)


def test_empty_input_gives_an_empty_matrix():
    assert embed_images(load_backbone("resnet34", "none"), images(0), CPU).features.shape == (0, 512)


def test_missing_imagenet_weights_name_the_file_and_the_fix(empty_torch_home):
    with pytest.raises(BackboneWeightsError) as caught:
        load_backbone("resnet18", "imagenet")
    error = caught.value
    expected = empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert error.code == "weights_missing"
    assert str(expected) in error.message
    assert "resnet18-f37072fd.pth" in error.fix and "TORCH_HOME" in error.fix
    assert "local checkpoint" in error.fix and "'none'" in error.fix
    assert not expected.exists(), "nothing may be downloaded"


def test_imagenet_weights_load_from_the_torch_cache(empty_torch_home):
    source = load_backbone("resnet18", "none", seed=3)
    cached = imagenet_checkpoint_path("resnet18")
    assert cached == empty_torch_home / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    torch.save(source.model.state_dict(), cached)
    loaded = load_backbone("resnet18", "imagenet")
    assert (loaded.weights_id, loaded.weights_path) == ("IMAGENET1K_V1", str(cached))
    assert np.array_equal(embed_images(loaded, images(), CPU).features, embed_images(source, images(), CPU).features)


def test_unknown_or_unavailable_torchvision_weights(empty_torch_home):
    with pytest.raises(BackboneWeightsError, match="resnet50-11ad3fa6.pth"):
        load_backbone("resnet50", "IMAGENET1K_V2")
    with pytest.raises(BackboneWeightsError) as caught:
        imagenet_checkpoint_path("resnet18", "IMAGENET1K_V2")
    assert caught.value.code == "weights_unknown"
    with pytest.raises(ValueError, match="unknown backbone"):
        load_backbone("vgg16", "none")


@pytest.mark.parametrize("layout", ["full", "without_head", "wrapped"])
def test_local_checkpoint_gives_the_source_models_outputs(tmp_path, layout):
    source = load_backbone("resnet18", "none", seed=11)
    state = source.model.state_dict()
    if layout == "without_head":
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    if layout == "wrapped":  # a training checkpoint of a DataParallel model
        state = {"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 3}
    path = tmp_path / "weights.pt"
    torch.save(state, path)
    loaded = load_backbone("resnet18", path)
    assert loaded.weights_id.startswith("file:") and len(loaded.weights_id) == len("file:") + 16
    assert np.array_equal(embed_images(loaded, images(), CPU).features, embed_images(source, images(), CPU).features)
    if layout == "full":
        with torch.no_grad():
            assert torch.equal(loaded.model.eval()(images()), source.model.eval()(images()))


def test_checkpoint_with_a_task_head_keeps_its_classes(tmp_path):
    source = torchvision.models.resnet18(num_classes=3)
    torch.save(source.state_dict(), tmp_path / "three_classes.pt")
    assert load_backbone("resnet18", tmp_path / "three_classes.pt").num_outputs == 3


def test_bad_checkpoints_are_explained(tmp_path):
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet18.pt")
    with pytest.raises(BackboneWeightsError) as caught:
        load_backbone("resnet34", tmp_path / "resnet18.pt")
    assert caught.value.code == "weights_mismatch" and "missing: layer1.2" in caught.value.message
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(BackboneWeightsError) as caught:
        load_backbone("resnet18", tmp_path / "garbage.pt")
    assert caught.value.code == "weights_unreadable"
    with pytest.raises(BackboneWeightsError) as caught:
        load_backbone("resnet18", tmp_path / "absent.pt")
    assert caught.value.code == "weights_missing" and "'none'" in caught.value.fix


def test_pooled_features_match_the_feature_dimension():
    backbone = load_backbone("resnet50", "none")
    with torch.no_grad():
        assert pooled_features(backbone.model.eval(), images(2)).shape == (2, backbone.feature_dim) == (2, 2048)


def test_seeded_restores_the_callers_determinism_settings():
    import torch

    from cssci_platform.lib.deep.runtime import seeded

    before = (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory)
    with seeded(0):
        assert torch.are_deterministic_algorithms_enabled()
        assert torch.utils.deterministic.fill_uninitialized_memory is False
    assert (torch.are_deterministic_algorithms_enabled(), torch.utils.deterministic.fill_uninitialized_memory) == before
