"""Device choice, seeding and batched inference shared by embeddings, predictions and fine-tuning."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch import nn

from cssci_platform.lib.deep.settings import InferenceSettings


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device '{name}' requested but CUDA is not available; use device 'cpu' or 'auto'")
    return device


def precision_label(device: torch.device, amp: bool) -> str:
    return "bfloat16-autocast" if device.type == "cuda" and amp else "float32"


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Seed torch's RNGs and, on CPU, force deterministic algorithms; restore the caller's state after."""
    cuda_devices = [device] if device is not None and device.type == "cuda" else []
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    fill_before = torch.utils.deterministic.fill_uninitialized_memory  # type: ignore[attr-defined]
    with torch.random.fork_rng(devices=cuda_devices):
        torch.manual_seed(seed)
        if not cuda_devices:  # on CUDA this would demand CUBLAS_WORKSPACE_CONFIG; CUDA runs are not bitwise exact
            torch.use_deterministic_algorithms(True)
            # Deterministic mode also NaN-fills every new tensor (a debugging aid): an extra write over each layer
            # output, 6-10 % of a ResNet50 forward pass on CPU (benchmarks/RESULTS.md); results do not depend on it.
            torch.utils.deterministic.fill_uninitialized_memory = False  # type: ignore[attr-defined]
        try:
            yield
        finally:
            torch.use_deterministic_algorithms(deterministic_before)
            torch.utils.deterministic.fill_uninitialized_memory = fill_before  # type: ignore[attr-defined]


def autocast(device: torch.device, amp: bool) -> contextlib.AbstractContextManager:
    if device.type == "cuda" and amp:
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def prepare_model(model: nn.Module, device: torch.device, settings: InferenceSettings) -> nn.Module:
    """Move the model (in place) to ``device``; channels_last on CUDA when asked."""
    model.to(device)
    if device.type == "cuda" and settings.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def to_device(batch: torch.Tensor, device: torch.device, settings: InferenceSettings) -> torch.Tensor:
    if device.type == "cuda" and settings.channels_last:
        return batch.to(device, non_blocking=True, memory_format=torch.channels_last)
    return batch.to(device)


def run_batched(model: nn.Module, images: torch.Tensor, forward: Callable[[nn.Module, torch.Tensor], torch.Tensor],
                settings: InferenceSettings) -> torch.Tensor:
    """``forward(model, batch)`` over ``images`` (n, 3, H, W) in eval mode; float32 CPU result, batches concatenated.

    The model's training flag is restored afterwards; the model stays on the chosen device.
    """
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"expected images shaped (n, 3, H, W), got {tuple(images.shape)}")
    device = resolve_device(settings.device)
    was_training = model.training
    prepare_model(model, device, settings).eval()
    outputs = []
    try:
        with seeded(settings.seed, device), torch.inference_mode(), autocast(device, settings.amp):
            for start in range(0, len(images), settings.batch_size):
                batch = to_device(images[start:start + settings.batch_size], device, settings)
                outputs.append(forward(model, batch).float().cpu())
    finally:
        model.train(was_training)
    if not outputs:
        return torch.empty(0)
    return torch.cat(outputs)
