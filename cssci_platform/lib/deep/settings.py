"""The settings of the deep-learning part (study config section `deep`), importable without torch: a study config,
a patient worker or the CLI reads them without loading the networks (issue 18, memory: torch, torchvision,
matplotlib and scikit-learn are ~1.3 GB of a process that imports them). The modules that run networks
(backbones, runtime, finetune, cohort_networks) use these same classes; nothing here imports torch."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from pydantic import Field, PositiveInt, model_validator

from cssci_platform.lib.deep.patient_slices import SliceSettings
from cssci_platform.lib.imaging import CHANNELS
from cssci_platform.lib.settings import Section

FEATURE_DIMS = {"resnet18": 512, "resnet34": 512, "resnet50": 2048, "resnet101": 2048, "resnet152": 2048}
# The `weights` setting: an ImageNet alias (-> torchvision weights name), NO_WEIGHTS, or a checkpoint file
IMAGENET_ALIASES = {"imagenet": "IMAGENET1K_V1", "imagenet1k_v1": "IMAGENET1K_V1", "imagenet1k_v2": "IMAGENET1K_V2"}
NO_WEIGHTS = "none"
EMBEDDING_STAGE = "embeddings"
BackboneName = Literal[tuple(FEATURE_DIMS)]  # type: ignore[valid-type]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


@dataclass(frozen=True)
class InferenceSettings:
    """How to run a network over many slices.

    On CUDA, ``amp`` runs the forward pass under bf16 autocast and ``channels_last`` stores activations
    NHWC (faster convolutions on tensor cores); both are ignored on CPU, which runs float32 with
    deterministic algorithms so that a seed reproduces the output exactly.
    """

    batch_size: int = 64
    device: str = "auto"  # "auto" (CUDA when available), "cpu", "cuda", "cuda:1", ...
    amp: bool = True
    channels_last: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


class FineTuneConfig(Section):
    """The training recipe of one network (the published one by default); stored with every checkpoint."""

    epochs: PositiveInt = 50
    batch_size: int = Field(64, ge=2)
    lr: float = Field(0.01, gt=0)  # task head; cosine-annealed from lr to min_lr over `epochs`
    min_lr: float = Field(0.0, ge=0)
    momentum: float = 0.9
    weight_decay: float = 1e-4
    backbone_mode: Literal["finetune", "frozen"] = "finetune"
    backbone_lr: float = Field(0.001, gt=0)
    anneal_backbone: bool = False
    augment: bool = True
    max_shift: float = 0.1  # fraction of the image height / width
    max_rotation_deg: float = 10.0
    horizontal_flip: bool = True
    seed: int = 0
    device: str = "auto"
    amp: bool = True  # bf16 autocast, CUDA only


class FineTuningSettings(FineTuneConfig):
    """A CNN classifier per backbone x channel (new head, SGD, cosine annealing of the head), trained on the
    training patients of the split; its class probabilities are reported as signature `CNN` (study config section
    `deep.fine_tuning`: the recipe's keys plus which networks to train). `seed` and `device` left unset are
    `deep.seed` and `deep.device`."""

    backbones: list[BackboneName]  # type: ignore[valid-type]
    channels: list[Channel] = ["original"]
    gradcam: bool = True  # a Grad-CAM overlay per patient in the image store


def training_recipe(config: FineTuneConfig) -> FineTuneConfig:
    """The recipe alone (what a checkpoint records), also of the study section that extends it."""
    return FineTuneConfig(**config.model_dump(include=set(FineTuneConfig.model_fields)))


class DeepSettings(Section):
    """Deep transfer-learning features (study config section `deep`): pretrained `backbones` embed the ROI slice of
    every channel (empty list: none); `fine_tuning` trains CNN classifiers on the same slices.

    `embedding_network`: which networks embed the slices for the DL signatures: `pretrained` (the backbones as
    loaded from `weights`) or `fine_tuned` (the networks `fine_tuning` trained, one per backbone x channel; needs
    `fine_tuning` and its networks stored)."""

    backbones: list[BackboneName] = ["resnet18"]  # type: ignore[valid-type]
    # "imagenet" (torchvision checkpoint already in $TORCH_HOME/hub/checkpoints), a checkpoint file, or "none"
    weights: str = "imagenet"
    channels: list[Channel] = list(CHANNELS)
    slice: SliceSettings = SliceSettings()
    batch_size: PositiveInt = 64
    device: str = "auto"
    seed: int = 0
    fine_tuning: FineTuningSettings | None = None
    embedding_network: Literal["pretrained", "fine_tuned"] = "pretrained"

    @model_validator(mode="before")
    @classmethod
    def _fine_tuning_runs_where_embedding_does(cls, values: Any) -> Any:
        """`fine_tuning.seed` / `.device` left unset are the section's `seed` / `device`."""
        if isinstance(values, dict) and isinstance(values.get("fine_tuning"), dict):
            inherited = {key: values[key] for key in ("seed", "device") if key in values}
            values = {**values, "fine_tuning": {**inherited, **values["fine_tuning"]}}
        return values

    @model_validator(mode="after")
    def _fine_tuned_embeddings_need_fine_tuning(self) -> DeepSettings:
        if self.embedding_network == "fine_tuned" and self.fine_tuning is None:
            raise ValueError("embedding_network 'fine_tuned' needs a 'fine_tuning' section (the networks to embed "
                             "with)")
        return self

    def inference(self) -> InferenceSettings:
        """How the embedding networks run."""
        return InferenceSettings(batch_size=self.batch_size, device=self.device, seed=self.seed)
