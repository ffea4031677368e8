"""Penultimate (average-pool) features of a ResNet: the deep features stored per patient and channel.

The frozen-backbone mode of the studies is `embed_images` on a pretrained `Backbone`; the fine-tuned mode
is the same call on `FineTunedNetwork.backbone`. No label is involved either way.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torchvision

from cssci_platform.lib.deep.backbones import Backbone
from cssci_platform.lib.deep.runtime import precision_label, resolve_device, run_batched
from cssci_platform.lib.deep.settings import InferenceSettings


@dataclass(frozen=True, eq=False)
class Embeddings:
    """``features`` (n, feature_dim) float32, one row per input image, and how they were made."""

    features: np.ndarray
    backbone: str
    weights_id: str
    device: str
    precision: str
    batch_size: int
    seed: int

    @property
    def feature_dim(self) -> int:
        return self.features.shape[1]

    def metadata(self) -> dict:
        return {"backbone": self.backbone, "weights_id": self.weights_id, "feature_dim": self.feature_dim,
                "n_images": len(self.features), "device": self.device, "precision": self.precision,
                "batch_size": self.batch_size, "seed": self.seed}


def pooled_features(model: torchvision.models.ResNet, images: torch.Tensor) -> torch.Tensor:
    """The ResNet forward pass up to and including global average pooling: (n, fc.in_features)."""
    x = model.maxpool(model.relu(model.bn1(model.conv1(images))))
    x = model.layer4(model.layer3(model.layer2(model.layer1(x))))
    return torch.flatten(model.avgpool(x), 1)


def embed_images(backbone: Backbone, images: torch.Tensor,
                 settings: InferenceSettings = InferenceSettings()) -> Embeddings:
    """Average-pool embeddings of ``images`` (n, 3, H, W), e.g. from `network_batch`, in eval mode.

    The model is moved to the chosen device (in place) and left there.
    """
    device = resolve_device(settings.device)
    if len(images) == 0:
        features = np.zeros((0, backbone.feature_dim), np.float32)
    else:
        features = run_batched(backbone.model, images, pooled_features, settings).numpy()
    return Embeddings(features, backbone.name, backbone.weights_id, str(device),
                      precision_label(device, settings.amp), settings.batch_size, settings.seed)
