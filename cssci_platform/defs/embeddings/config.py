"""Run configuration of the deep-feature assets (shown and editable in the Dagster launchpad)."""

from collections.abc import Collection
from typing import Literal

import dagster as dg
from pydantic import field_validator

from cssci_platform.lib.deep import FineTuneConfig, RoiSliceSettings
from cssci_platform.lib.cohort import CohortSpec
from cssci_platform.lib.deep.patient_slices import SliceRequest, slice_target
from cssci_platform.lib.deep.roi_slices import NUMPY_AXIS
from cssci_platform.lib.imaging import CHANNELS


class RoiSlicesConfig(dg.Config):
    # unset (None): from the manifest (`default_slice_target`): the first (sequence, ROI) pair with masks, sag_T2 /
    # lesion first where declared, then declaration order; the plane named in the sequence (sag_, cor_, ax_, tra_),
    # else sagittal
    sequence: str | None = None
    roi: str | None = None
    axis: str | None = None  # sagittal, coronal or axial (Dagster config has no optional Literal)
    rectangle: Literal["lesion_bbox", "rect_mask", "lesion_to_canal"] = "lesion_bbox"
    rect_roi: str | None = None
    canal_roi: str | None = None
    margin: float = 5.0
    margin_unit: Literal["mm", "px"] = "mm"
    output_size: int = 224
    clip_to_slice: bool = True  # cut a crop that leaves the slice at its border (recorded in roi_slices.clipped_px)

    @field_validator("axis")
    @classmethod
    def _known_axis(cls, axis: str | None) -> str | None:
        if axis is not None and axis not in NUMPY_AXIS:
            raise ValueError(f"unknown slice axis '{axis}'; choose from {', '.join(NUMPY_AXIS)} or leave it unset")
        return axis

    def request(self, spec: CohortSpec, masked: Collection[tuple[str, str]] = frozenset()) -> SliceRequest:
        """`masked`: the cohort's (sequence, ROI) pairs with masks (`masked_pairs`), for the defaults."""
        target = slice_target(spec, self.sequence, self.roi, self.axis, masked)
        settings = RoiSliceSettings(target.axis, self.rectangle, self.margin, self.margin_unit,
                                    (self.output_size, self.output_size), self.clip_to_slice, spec.mask_label)
        return SliceRequest(target.sequence, target.roi, self.rect_roi, self.canal_roi, settings)


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
