"""torchvision ResNet backbones with explicit, offline weights.

Weights spec (``load_backbone(name, weights)``):

- ``"imagenet"`` (= ``"IMAGENET1K_V1"``, the one set all five ResNets share) or ``"IMAGENET1K_V2"`` (50/101/152):
  torchvision's weights, loaded only if the checkpoint is already in the torch hub cache
  (``torch.hub.get_dir()/checkpoints/<file name of the weights URL>``, which follows ``TORCH_HOME``).
  Nothing is ever downloaded.
- a path to a local checkpoint: a state dict in torchvision's ResNet format, with or without the ``fc.*``
  head (a ``{"state_dict": ...}`` wrapper, a ``module.`` prefix, and files written by `save_fine_tuned` work).
- ``"none"``: random initialisation, only when explicitly asked for (seeded).

Anything else, or missing files, raise `BackboneWeightsError` naming the file and the alternatives.
The ``weights_id`` recorded for provenance is ``"IMAGENET1K_V1"``, ``"file:<first 16 hex of sha256>"`` or
``"none"``.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn

from cssci_platform.lib.deep.errors import BackboneWeightsError
from cssci_platform.lib.deep.runtime import seeded
from cssci_platform.lib.deep.settings import FEATURE_DIMS, IMAGENET_ALIASES, NO_WEIGHTS


@dataclass
class Backbone:
    """A torchvision ResNet and where its weights came from."""

    name: str
    model: torchvision.models.ResNet
    weights_id: str
    weights_path: str = ""

    @property
    def feature_dim(self) -> int:
        return self.model.fc.in_features

    @property
    def num_outputs(self) -> int:
        return self.model.fc.out_features


def load_backbone(name: str, weights: str | os.PathLike = "imagenet", seed: int = 0) -> Backbone:
    """Build ``name`` (resnet18/34/50/101/152) with the given weights; see the module docstring.

    ``seed`` fixes the initialisation of whatever the weights do not cover (everything for ``"none"``,
    the 1000-class head for a checkpoint without ``fc.*``).
    """
    if name not in FEATURE_DIMS:
        raise ValueError(f"unknown backbone '{name}'; choose from {', '.join(FEATURE_DIMS)}")
    spec = str(weights)
    if spec.lower() == NO_WEIGHTS:
        with seeded(seed):
            return Backbone(name, torchvision.models.get_model(name, weights=None), NO_WEIGHTS)
    if spec.lower() in IMAGENET_ALIASES:
        return _imagenet_backbone(name, IMAGENET_ALIASES[spec.lower()])
    return _checkpoint_backbone(name, Path(spec), seed)


def imagenet_checkpoint_path(name: str, weights_name: str = "IMAGENET1K_V1") -> Path:
    """Where torchvision keeps (and we look for) the ImageNet checkpoint of ``name``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _checkpoint_file_name(_weights_enum(name, weights_name))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _weights_enum(name: str, weights_name: str) -> torchvision.models.WeightsEnum:
    available = torchvision.models.get_model_weights(name)
    if weights_name not in available.__members__:
        raise BackboneWeightsError("weights_unknown", f"{name} has no torchvision weights '{weights_name}'",
                                   f"use one of {', '.join(available.__members__)}, a local checkpoint path, or 'none'")
    return available[weights_name]


def _checkpoint_file_name(weights: torchvision.models.WeightsEnum) -> str:
    return os.path.basename(urlparse(weights.url).path)


def _imagenet_backbone(name: str, weights_name: str) -> Backbone:
    weights = _weights_enum(name, weights_name)
    path = imagenet_checkpoint_path(name, weights_name)
    if not path.is_file():
        raise BackboneWeightsError(
            "weights_missing",
            f"the {weights_name} ImageNet weights of {name} are not in the torch cache: {path} does not exist "
            "(weights are never downloaded at run time).",
            f"copy {path.name} (from {weights.url}) to {path.parent}/ (the folder follows TORCH_HOME), "
            "or set weights to the path of a local checkpoint, or to 'none' for an explicitly random initialisation")
    try:  # the file is in the cache, so torchvision's loader reads it and does not download
        model = torchvision.models.get_model(name, weights=weights)
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    return Backbone(name, model, weights_name, str(path))


def _checkpoint_backbone(name: str, path: Path, seed: int) -> Backbone:
    if not path.is_file():
        raise BackboneWeightsError(
            "weights_missing", f"weights '{path}' is neither 'imagenet', 'none' nor an existing checkpoint file.",
            "give the path of a state-dict file, 'imagenet' (with the torchvision checkpoint in the torch cache) "
            "or 'none' for an explicitly random initialisation")
    try:
        state = _unwrap_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except BackboneWeightsError:
        raise
    except Exception as exc:
        raise _unreadable(path, exc) from exc
    num_classes = state["fc.weight"].shape[0] if "fc.weight" in state else 1000
    with seeded(seed):
        model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    _load_matching(model, state, name, path)
    return Backbone(name, model, f"file:{file_sha256(path)[:16]}", str(path))


def _unwrap_state_dict(loaded: object) -> dict[str, torch.Tensor]:
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping) or not all(isinstance(v, torch.Tensor) for v in loaded.values()):
        raise BackboneWeightsError("weights_not_state_dict", "the checkpoint is not a state dict of tensors",
                                   "save weights with torch.save(model.state_dict(), path)")
    return {key.removeprefix("module."): value for key, value in loaded.items()}


def _load_matching(model: nn.Module, state: dict[str, torch.Tensor], name: str, path: Path) -> None:
    expected = model.state_dict()
    missing = [k for k in expected if k not in state and not k.startswith("fc.")]
    unexpected = [k for k in state if k not in expected]
    wrong_shape = [k for k in state if k in expected and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong_shape:
        problems = "; ".join(f"{label}: {', '.join(keys[:4])}{' ...' if len(keys) > 4 else ''}" for label, keys in
                             (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong_shape)) if keys)
        raise BackboneWeightsError("weights_mismatch", f"checkpoint {path} does not fit {name} ({problems}).",
                                   "check that the checkpoint was saved from the same ResNet depth")
    model.load_state_dict(state, strict=False)


def _unreadable(path: Path, exc: Exception) -> BackboneWeightsError:
    return BackboneWeightsError("weights_unreadable", f"could not read checkpoint {path}: {exc}",
                                "replace the file with an intact copy (a partial download or a different format?)")
