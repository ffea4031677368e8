"""Grad-CAM of a fine-tuned ResNet on its last convolutional block (``layer4``), and heatmap overlay PNGs.

Uses the maintained ``grad-cam`` package (``pytorch_grad_cam``); it is imported when first needed because it
pulls in OpenCV. PNGs are written through matplotlib's image module, which needs no GUI backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import torch
import torchvision

from cssci_platform.lib.deep.finetune import FineTunedNetwork


@dataclass(frozen=True, eq=False)
class GradCamResult:
    """``heatmap`` (H, W) float32 in [0, 1] at input resolution, for class ``target_class``."""

    heatmap: np.ndarray
    target_class: int
    probability: float  # the network's softmax probability of target_class for this image


def grad_cam(network: FineTunedNetwork | torchvision.models.ResNet, image: torch.Tensor,
             target_class: int | None = None) -> GradCamResult:
    """Grad-CAM of one network input (3, H, W) for ``target_class`` (default: the predicted class).

    Runs on the device the model is on; the model's training flag is restored and its gradients cleared.
    """
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    model = network.backbone.model if isinstance(network, FineTunedNetwork) else network
    if image.ndim != 3 or image.shape[0] != 3:
        raise ValueError(f"expected one network input shaped (3, H, W), got {tuple(image.shape)}")
    device = next(model.parameters()).device
    batch = image[None].to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            probabilities = torch.softmax(model(batch).float(), dim=1)[0]
        target = int(probabilities.argmax()) if target_class is None else int(target_class)
        if not 0 <= target < len(probabilities):
            raise ValueError(f"target_class {target} is not one of the network's {len(probabilities)} classes")
        # Not `with GradCAM(...)`: its __exit__ swallows IndexError. An input that requires grad lets
        # gradients reach layer4 even when the backbone's parameters do not require grad.
        cam = GradCAM(model=model, target_layers=[model.layer4[-1]])
        try:
            heatmap = cam(input_tensor=batch.clone().requires_grad_(True), targets=[ClassifierOutputTarget(target)])
        finally:
            cam.activations_and_grads.release()
    finally:
        model.zero_grad(set_to_none=True)
        model.train(was_training)
    return GradCamResult(np.asarray(heatmap[0], dtype=np.float32), target, float(probabilities[target]))


def cam_overlay(grey: np.ndarray, heatmap: np.ndarray, alpha: float = 0.4, colormap: str = "jet") -> np.ndarray:
    """(H, W, 3) RGB in [0, 1]: the grey slice (windowed to its own range) blended with the coloured heatmap."""
    if grey.shape != heatmap.shape:
        raise ValueError(f"slice {grey.shape} and heatmap {heatmap.shape} differ in shape")
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must lie in [0, 1], got {alpha}")
    low, high = float(np.min(grey)), float(np.max(grey))
    background = (grey - low) / (high - low) if high > low else np.zeros_like(grey, dtype=np.float64)
    colours = matplotlib.colormaps[colormap](np.clip(heatmap, 0.0, 1.0))[..., :3]
    return (1.0 - alpha) * np.repeat(background[..., None], 3, axis=2) + alpha * colours


def write_cam_overlay_png(grey: np.ndarray, heatmap: np.ndarray, path: Path, alpha: float = 0.4,
                          colormap: str = "jet", flip_vertical: bool = False) -> Path:
    """Write the overlay as an RGB PNG, one pixel per slice pixel.

    ``flip_vertical`` puts row 0 at the bottom (e.g. superior up on a sagittal slice whose z grows upward).
    """
    rgb = cam_overlay(grey, heatmap, alpha, colormap)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    matplotlib.image.imsave(path, np.clip(rgb[::-1] if flip_vertical else rgb, 0.0, 1.0), format="png")
    return path
