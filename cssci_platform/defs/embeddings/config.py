"""Run configuration of the deep-feature assets (shown and editable in the Dagster launchpad)."""

from typing import Literal

import dagster as dg

from cssci_platform.lib.deep import FineTuneConfig, RoiSliceSettings
from cssci_platform.lib.deep.patient_slices import SliceRequest
from cssci_platform.lib.imaging import CHANNELS


class RoiSlicesConfig(dg.Config):
    sequence: str = "sag_T2"
    roi: str = "lesion"
    axis: Literal["sagittal", "coronal", "axial"] = "sagittal"
    rectangle: Literal["lesion_bbox", "rect_mask", "lesion_to_canal"] = "lesion_bbox"
    rect_roi: str | None = None
    canal_roi: str | None = None
    margin: float = 5.0
    margin_unit: Literal["mm", "px"] = "mm"
    output_size: int = 224
    clip_to_slice: bool = False

    def request(self, mask_label: int) -> SliceRequest:
        settings = RoiSliceSettings(self.axis, self.rectangle, self.margin, self.margin_unit,
                                    (self.output_size, self.output_size), self.clip_to_slice, mask_label)
        return SliceRequest(self.sequence, self.roi, self.rect_roi, self.canal_roi, settings)


class EmbeddingsConfig(dg.Config):
    backbones: list[str] = ["resnet18"]
    # "imagenet" (torchvision checkpoint already in TORCH_HOME), a local checkpoint path, or "none" (random
    # init, explicitly asked for); never downloaded.
    weights: str = "imagenet"
    network: Literal["pretrained", "fine_tuned"] = "pretrained"
    channels: list[str] = list(CHANNELS)
    batch_size: int = 64
    device: str = "auto"
    seed: int = 0


class FineTuningConfig(dg.Config):
    backbones: list[str] = ["resnet18"]
    weights: str = "imagenet"
    channels: list[str] = list(CHANNELS)
    split: str | None = None  # a split name in the `splits` table; default: the only one there
    fold: str = "holdout"
    epochs: int = 50
    batch_size: int = 64
    lr: float = 0.01
    backbone_mode: Literal["finetune", "frozen"] = "finetune"
    backbone_lr: float = 0.001
    augment: bool = True
    seed: int = 0
    device: str = "auto"
    gradcam: bool = True

    def fine_tune_config(self) -> FineTuneConfig:
        return FineTuneConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, backbone_mode=self.backbone_mode,
                              backbone_lr=self.backbone_lr, augment=self.augment, seed=self.seed, device=self.device)
