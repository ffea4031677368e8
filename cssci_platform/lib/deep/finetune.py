"""Fine-tuning one ResNet per channel as published, and the end-to-end CNN classifier's probabilities.

Leakage rule: `fine_tune` takes training images and labels only. Callers must pass the training split (or a
training fold) and never a test, validation or prospective patient's label; nothing here can tell.

Published recipe (defaults of `FineTuneConfig`): pretrained backbone + randomly initialised task head (a new
``fc`` with ``num_classes`` outputs), SGD, learning rate 0.01, batch 64, 50 epochs, cosine annealing
(``CosineAnnealingLR``) of the task head's learning rate, augmentation by random shift, small rotation and
horizontal flip. The papers anneal the head and say nothing more of the backbone, so the backbone is a
choice: ``backbone_mode="finetune"`` (default) trains it with its own, constant ``backbone_lr`` (annealed
too with ``anneal_backbone``); ``"frozen"`` keeps it fixed (BatchNorm statistics included) and trains the
head only.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.transforms import v2

from cssci_platform.lib.deep.backbones import Backbone, file_sha256
from cssci_platform.lib.deep.roi_slices import IMAGENET_MEAN, IMAGENET_STD
from cssci_platform.lib.deep.runtime import autocast, resolve_device, run_batched, seeded
from cssci_platform.lib.deep.settings import FineTuneConfig, InferenceSettings, training_recipe

FINE_TUNED_FORMAT = "cssci_platform.fine_tuned_resnet/1"
# Pixels shifted or rotated in from outside the crop are black (intensity 0 after ImageNet normalisation).
BLACK = [-mean / std for mean, std in zip(IMAGENET_MEAN, IMAGENET_STD)]


@dataclass
class FineTunedNetwork:
    """A fine-tuned ResNet (``backbone.model``, with the trained head) and how it was trained.

    ``backbone.weights_id`` is ``"finetuned:<16 hex of the weights' sha256>"``; ``parent_weights_id`` is the
    id of the pretrained weights it started from.
    """

    backbone: Backbone
    num_classes: int
    parent_weights_id: str
    config: FineTuneConfig
    loss_history: list[float] = field(default_factory=list)


def fine_tune(backbone: Backbone, train_images: torch.Tensor, train_labels: np.ndarray | torch.Tensor,
              config: FineTuneConfig = FineTuneConfig(), num_classes: int | None = None) -> FineTunedNetwork:
    """Train a copy of ``backbone`` with a new ``num_classes`` head on training slices (n, 3, H, W) and labels.

    ``num_classes`` defaults to ``max(label) + 1``. The source backbone is not modified. On CPU the result
    is bitwise reproducible for a given ``config.seed``.
    """
    labels = _checked_labels(train_images, train_labels, num_classes)
    num_classes = num_classes or int(labels.max()) + 1
    device = resolve_device(config.device)
    with seeded(config.seed, device):
        model = copy.deepcopy(backbone.model)
        model.fc = nn.Linear(model.fc.in_features, num_classes)
        model.to(device)
        history = _train(model, train_images, labels, config, device)
    weights_id = f"finetuned:{state_dict_sha256(model)[:16]}"
    trained = Backbone(backbone.name, model, weights_id, "")
    return FineTunedNetwork(trained, num_classes, backbone.weights_id, training_recipe(config), history)


def predict_probabilities(network: FineTunedNetwork, images: torch.Tensor,
                          settings: InferenceSettings = InferenceSettings()) -> np.ndarray:
    """Per-slice class probabilities (softmax of the logits): (n, num_classes) float32."""
    if len(images) == 0:
        return np.zeros((0, network.num_classes), np.float32)
    softmax = lambda model, batch: torch.softmax(model(batch).float(), dim=1)  # noqa: E731
    return run_batched(network.backbone.model, images, softmax, settings).numpy()


def save_fine_tuned(network: FineTunedNetwork, path: Path) -> str:
    """Write the network (state dict + provenance) with ``torch.save``; returns the file's sha256."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": FINE_TUNED_FORMAT, "backbone": network.backbone.name, "num_classes": network.num_classes,
                "weights_id": network.backbone.weights_id, "parent_weights_id": network.parent_weights_id,
                "config": network.config.model_dump(), "loss_history": list(network.loss_history),
                "state_dict": {k: v.detach().cpu() for k, v in network.backbone.model.state_dict().items()}}, path)
    return file_sha256(path)


def load_fine_tuned(path: Path) -> FineTunedNetwork:
    """Read a file written by `save_fine_tuned` (safe ``weights_only`` unpickling) onto the CPU."""
    saved = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(saved, dict) or saved.get("format") != FINE_TUNED_FORMAT:
        raise ValueError(f"{path} is not a fine-tuned network written by save_fine_tuned ({FINE_TUNED_FORMAT})")
    model = torchvision.models.get_model(saved["backbone"], weights=None, num_classes=saved["num_classes"])
    model.load_state_dict(saved["state_dict"])
    backbone = Backbone(saved["backbone"], model, saved["weights_id"], str(path))
    return FineTunedNetwork(backbone, saved["num_classes"], saved["parent_weights_id"],
                            FineTuneConfig(**saved["config"]), list(saved["loss_history"]))


def state_dict_sha256(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for key, tensor in model.state_dict().items():
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _checked_labels(images: torch.Tensor, labels: np.ndarray | torch.Tensor, num_classes: int | None) -> torch.Tensor:
    labels = torch.as_tensor(np.asarray(labels)).long().reshape(-1)
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected training images shaped (n, 3, H, W), got {tuple(images.shape)}")
    if len(labels) != len(images) or len(images) < 2:
        raise ValueError(f"need at least 2 training images with one label each, got {len(images)} images and "
                         f"{len(labels)} labels")
    if labels.min() < 0 or (num_classes is not None and labels.max() >= num_classes):
        raise ValueError(f"labels must be class indices 0..num_classes-1 (num_classes={num_classes}), got "
                         f"{labels.min().item()}..{labels.max().item()}")
    if len(labels.unique()) < 2:
        raise ValueError("the training labels hold a single class; a classifier needs at least two")
    return labels


def _train(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: FineTuneConfig,
           device: torch.device) -> list[float]:
    steps = _optimizers_and_schedules(model, config)
    augment = _augmenter(config)
    history = []
    try:
        for _ in range(config.epochs):
            model.train(config.backbone_mode == "finetune")  # frozen: BatchNorm keeps its pretrained statistics
            history.append(_train_epoch(model, images, labels, steps, augment, config, device))
            for _, schedule in steps:
                if schedule is not None:
                    schedule.step()
    finally:
        for parameter in model.parameters():
            parameter.requires_grad_(True)
        model.eval()
    return history


Step = tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LRScheduler | None]


def _optimizers_and_schedules(model: nn.Module, config: FineTuneConfig) -> list[Step]:
    def sgd(parameters, lr: float) -> torch.optim.SGD:
        return torch.optim.SGD(parameters, lr=lr, momentum=config.momentum, weight_decay=config.weight_decay)

    def cosine(optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.CosineAnnealingLR:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs, eta_min=config.min_lr)

    head = sgd(model.get_submodule("fc").parameters(), config.lr)
    steps: list[Step] = [(head, cosine(head))]
    body = [p for name, p in model.named_parameters() if not name.startswith("fc.")]
    if config.backbone_mode == "frozen":
        for parameter in body:
            parameter.requires_grad_(False)
    else:
        backbone = sgd(body, config.backbone_lr)
        steps.append((backbone, cosine(backbone) if config.anneal_backbone else None))
    return steps


def _augmenter(config: FineTuneConfig) -> Callable[[torch.Tensor], torch.Tensor]:
    if not config.augment:
        return lambda batch: batch
    transforms: list[nn.Module] = [v2.RandomAffine(degrees=config.max_rotation_deg, translate=(config.max_shift,) * 2,
                                                   interpolation=v2.InterpolationMode.BILINEAR, fill=BLACK)]
    if config.horizontal_flip:
        transforms.append(v2.RandomHorizontalFlip())
    per_image = v2.Compose(transforms)
    return lambda batch: torch.stack([per_image(image) for image in batch])  # a fresh draw per image


def _train_epoch(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, steps: list[Step],
                 augment: Callable[[torch.Tensor], torch.Tensor], config: FineTuneConfig,
                 device: torch.device) -> float:
    total, seen = 0.0, 0
    for batch_index in _batches(len(images), config.batch_size):
        inputs = augment(images[batch_index]).to(device)
        targets = labels[batch_index].to(device)
        for optimizer, _ in steps:
            optimizer.zero_grad(set_to_none=True)
        with autocast(device, config.amp):
            loss = F.cross_entropy(model(inputs).float(), targets)
        loss.backward()
        for optimizer, _ in steps:
            optimizer.step()
        total += loss.item() * len(batch_index)
        seen += len(batch_index)
    return total / seen


def _batches(n: int, batch_size: int) -> list[torch.Tensor]:
    """A fresh shuffle into batches; a trailing batch of one joins the previous one (BatchNorm needs two)."""
    order = torch.randperm(n)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches
