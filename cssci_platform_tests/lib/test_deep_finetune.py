"""Fine-tuning, CNN class probabilities, saving, and Grad-CAM on a bright-blob detection task (CPU).

One ResNet18 (random init, ``weights: none``) is fine-tuned once per module on 48 images of 128 x 128 pixels:
noise, and in half of them a bright disc at a random place. 128 pixels give a 4 x 4 layer4 grid, so
Grad-CAM can localise; test lesions sit at the centres of interior grid cells, away from the image centre.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cssci_platform.lib.deep import (
    FineTuneConfig,
    InferenceSettings,
    fine_tune,
    grad_cam,
    imagenet_normalize,
    load_backbone,
    load_fine_tuned,
    predict_probabilities,
    save_fine_tuned,
    state_dict_sha256,
    write_cam_overlay_png,
)

SIZE, RADIUS = 128, 12
CPU = InferenceSettings(device="cpu", batch_size=16)
BLOB_TASK = FineTuneConfig(epochs=6, batch_size=16, lr=0.01, backbone_lr=0.01, seed=0, device="cpu")


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def grey_image(rng: np.random.Generator, centre: tuple[int, int] | None, size: int = SIZE) -> np.ndarray:
    grey = rng.normal(0.3, 0.05, (size, size))
    if centre is not None:
        rows, cols = np.mgrid[:size, :size]
        grey[(rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= (RADIUS * size // SIZE) ** 2] = 0.9
    return np.clip(grey, 0.0, 1.0).astype(np.float32)


def blob_task(n: int, seed: int, size: int = SIZE) -> tuple[torch.Tensor, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    margin = RADIUS * size // SIZE + 2
    greys = [grey_image(rng, tuple(rng.integers(margin, size - margin, 2)) if label else None, size)
             for label in labels]
    return imagenet_normalize(torch.from_numpy(np.stack(greys))), labels


@pytest.fixture(scope="module")
def pretrained():
    return load_backbone("resnet18", "none", seed=0)


@pytest.fixture(scope="module")
def blob_detector(pretrained):
    images, labels = blob_task(48, seed=0)
    return fine_tune(pretrained, images, labels, BLOB_TASK)


def test_fine_tuning_reduces_the_training_loss(blob_detector):
    history = blob_detector.loss_history
    assert len(history) == BLOB_TASK.epochs and all(np.isfinite(history))
    assert history[-1] < 0.5 * history[0]
    assert min(history[-2:]) < 0.2


def test_fine_tuned_network_carries_its_provenance(blob_detector, pretrained):
    assert blob_detector.num_classes == 2 and blob_detector.backbone.num_outputs == 2
    assert blob_detector.parent_weights_id == "none"
    assert blob_detector.backbone.weights_id == f"finetuned:{state_dict_sha256(blob_detector.backbone.model)[:16]}"
    assert pretrained.num_outputs == 1000, "fine-tuning must train a copy, not the pretrained backbone"
    assert pretrained.model.fc.weight.requires_grad


def test_class_probabilities_separate_unseen_images(blob_detector):
    images, labels = blob_task(16, seed=123)
    probabilities = predict_probabilities(blob_detector, images, CPU)
    assert probabilities.shape == (16, 2) and probabilities.dtype == np.float32
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=1e-5)
    assert (probabilities.argmax(axis=1) == labels).mean() >= 0.9


def test_saved_network_predicts_the_same(blob_detector, tmp_path):
    digest = save_fine_tuned(blob_detector, tmp_path / "detector.pt")
    restored = load_fine_tuned(tmp_path / "detector.pt")
    assert len(digest) == 64 and restored.backbone.weights_id == blob_detector.backbone.weights_id
    assert restored.config == BLOB_TASK and restored.loss_history == blob_detector.loss_history
    images, _ = blob_task(6, seed=5)
    expected = predict_probabilities(blob_detector, images, CPU)
    assert np.array_equal(predict_probabilities(restored, images, CPU), expected)


@pytest.mark.parametrize("centre", [(48, 80), (80, 48)])
def test_grad_cam_peaks_inside_the_planted_lesion(blob_detector, centre):
    grey = grey_image(np.random.default_rng(99), centre)
    result = grad_cam(blob_detector, imagenet_normalize(torch.from_numpy(grey)))
    heatmap = result.heatmap
    assert result.target_class == 1 and result.probability > 0.9
    assert heatmap.shape == (SIZE, SIZE) and heatmap.min() >= 0.0 and heatmap.max() <= 1.0
    peak_row, peak_col = np.unravel_index(np.argmax(heatmap), heatmap.shape)
    slack = 4  # pixels around the lesion's bounding box
    assert abs(peak_row - centre[0]) <= RADIUS + slack and abs(peak_col - centre[1]) <= RADIUS + slack
    rows, cols = np.mgrid[:SIZE, :SIZE]
    inside = (rows - centre[0]) ** 2 + (cols - centre[1]) ** 2 <= RADIUS ** 2
    assert heatmap[inside].mean() > 1.5 * heatmap[~inside].mean()


def test_grad_cam_overlay_png_is_a_valid_image(blob_detector, tmp_path):
    import matplotlib.image

    grey = grey_image(np.random.default_rng(1), (48, 80))
    heatmap = grad_cam(blob_detector, imagenet_normalize(torch.from_numpy(grey)), target_class=1).heatmap
    path = write_cam_overlay_png(grey, heatmap, tmp_path / "cam" / "patient_channel.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (SIZE, SIZE) and pixels.shape[2] in (3, 4)
    assert pixels[..., :3].std() > 0.05, "the overlay must show the slice and the heatmap, not a flat image"
    with pytest.raises(ValueError, match="differ in shape"):
        write_cam_overlay_png(grey, heatmap[:10], tmp_path / "bad.png")


def test_fine_tuning_is_deterministic_for_a_seed(pretrained):
    images, labels = blob_task(10, seed=2, size=32)
    config = FineTuneConfig(epochs=2, batch_size=4, seed=5, device="cpu")
    first, second = (fine_tune(pretrained, images, labels, config) for _ in range(2))
    assert first.loss_history == second.loss_history
    assert state_dict_sha256(first.backbone.model) == state_dict_sha256(second.backbone.model)
    other = fine_tune(pretrained, images, labels, FineTuneConfig(epochs=2, batch_size=4, seed=6, device="cpu"))
    assert state_dict_sha256(other.backbone.model) != state_dict_sha256(first.backbone.model)


def test_frozen_backbone_trains_the_head_only(pretrained):
    images, labels = blob_task(10, seed=3, size=32)
    network = fine_tune(pretrained, images, labels, FineTuneConfig(epochs=2, batch_size=4, backbone_mode="frozen",
                                                                  device="cpu"))
    before, after = pretrained.model.state_dict(), network.backbone.model.state_dict()
    body = [key for key in before if not key.startswith("fc.")]
    assert all(torch.equal(before[key], after[key]) for key in body), "backbone weights and BN statistics stay"
    assert after["fc.weight"].shape == (2, 512)
    assert all(p.requires_grad for p in network.backbone.model.parameters())


def test_cosine_annealing_reaches_the_minimum_learning_rate(pretrained, monkeypatch):
    seen: list[float] = []
    original_step = torch.optim.SGD.step

    def recording_step(optimizer, *args, **kwargs):
        seen.append(optimizer.param_groups[0]["lr"])
        return original_step(optimizer, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    images, labels = blob_task(4, seed=4, size=32)
    fine_tune(pretrained, images, labels, FineTuneConfig(epochs=3, batch_size=4, lr=0.01, backbone_mode="frozen",
                                                         augment=False, device="cpu"))
    np.testing.assert_allclose(seen, [0.01, 0.0075, 0.0025])  # cosine over 3 epochs, one head step each


def test_bad_training_inputs_are_rejected(pretrained):
    images, _ = blob_task(4, seed=0, size=32)
    with pytest.raises(ValueError, match="single class"):
        fine_tune(pretrained, images, np.zeros(4), FineTuneConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="one label each"):
        fine_tune(pretrained, images, np.array([0, 1]), FineTuneConfig(epochs=1, device="cpu"))
    with pytest.raises(ValueError, match="class indices"):
        fine_tune(pretrained, images, np.array([0, 1, 2, 1]), FineTuneConfig(epochs=1, device="cpu"), num_classes=2)
    with pytest.raises(ValueError, match="backbone_mode"):
        FineTuneConfig(backbone_mode="partial")
