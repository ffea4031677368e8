"""One patient's network inputs: the max-ROI slice of every channel, cut once, stored as `.npy` files.

The slice and crop are planned once from the patient's lesion mask, so all channels share them; each
channel's resized crop (its own intensities, (H, W) float32) is written content-addressed under the store,
and a `roi_slices` row records where it came from (with the pixels cut off at each side where the crop met
the slice border). Problems become `QcIssue`s of stage `roi_slices`.

Which sequence, ROI and plane make the network input defaults to what the cohort declares
(`default_slice_target`), so a manifest whose only sequence is `ax_T1` runs without an experiment config.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
import polars as pl
from pydantic import Field, PositiveInt, field_validator, model_validator

from cssci_platform.lib.cohort import Cohort, CohortSpec
from cssci_platform.lib.deep.errors import RoiSliceError
from cssci_platform.lib.deep.roi_slices import (
    NUMPY_AXIS,
    RectangleMode,
    RoiCrop,
    RoiSliceSettings,
    SliceAxis,
    cut_roi_slice,
    imagenet_normalize,
    plan_roi_crop,
)
from cssci_platform.lib.imaging import ImageReadError, read_image
from cssci_platform.lib.quality import QcIssue
from cssci_platform.lib.settings import Section

if TYPE_CHECKING:
    import torch

STAGE = "roi_slices"
PRIMARY = "primary"
PREFERRED_SEQUENCE, PREFERRED_ROI = "sag_T2", "lesion"  # the published spine protocol's names
DEFAULT_AXIS: SliceAxis = "sagittal"
CONFIG_KEYS = ("deep.slice.sequence / deep.slice.roi in the experiment config (for one Dagster run: the study "
               "resource's overrides)")
OBLIQUE_WARNING_DEG = 20.0  # a slice further off its named patient plane than this is sliced with a warning
AXIS_WORDS: dict[str, SliceAxis] = {
    "sag": "sagittal", "sagittal": "sagittal", "cor": "coronal", "coronal": "coronal",
    "ax": "axial", "axial": "axial", "tra": "axial", "trans": "axial", "transverse": "axial", "transversal": "axial",
}


@dataclass(frozen=True)
class SliceTarget:
    """The sequence, ROI and plane of the network input."""

    sequence: str
    roi: str
    axis: SliceAxis


def default_slice_target(spec: CohortSpec, masked: Collection[tuple[str, str]] = frozenset()) -> SliceTarget:
    """What the network input is cut from when no config says: the first (sequence, ROI) pair with masks
    (`masked`, e.g. `masked_pairs(cohort)`), trying `sag_T2` / `lesion` first where declared, then the manifest's
    declaration order (with no mask known: that order's first pair); the plane named in the sequence (`sag_`,
    `cor_`, `ax_` or `tra_`), else sagittal."""
    return slice_target(spec, masked=masked)


def slice_target(spec: CohortSpec, sequence: str | None = None, roi: str | None = None, axis: SliceAxis | None = None,
                 masked: Collection[tuple[str, str]] = frozenset()) -> SliceTarget:
    """The configured values, each one left unset (None) chosen as `default_slice_target` does."""
    pairs = [(s, r) for s in ([sequence] if sequence else _preferred_first(spec.sequences, PREFERRED_SEQUENCE))
             for r in ([roi] if roi else _preferred_first(spec.rois, PREFERRED_ROI))]
    chosen_sequence, chosen_roi = next((pair for pair in pairs if pair in masked), pairs[0])
    return SliceTarget(chosen_sequence, chosen_roi, axis or axis_named_in(chosen_sequence) or DEFAULT_AXIS)


def masked_pairs(cohort: Cohort) -> frozenset[tuple[str, str]]:
    """(sequence, ROI) pairs with a primary mask for at least one patient of the cohort."""
    return frozenset((m.sequence, m.roi) for patient in cohort.patients.values() for m in patient.masks
                     if m.segmentation == PRIMARY)


def slice_target_problem(target: SliceTarget, masked: Collection[tuple[str, str]]) -> str | None:
    """Why every patient would be quarantined at roi_slices (no patient has the target's mask), naming the
    config keys that fix it; None when some patient has it. Decidable from the manifest, before any patient runs."""
    if (target.sequence, target.roi) in masked:
        return None
    keys = ("set deep.slice.sequence and deep.slice.roi in the experiment config (for one Dagster run: the study "
            "resource's overrides, deep.slice.sequence=... and deep.slice.roi=...)")
    if not masked:
        return f"no patient has any mask, so no ROI slice can be cut: add mask__<sequence>__<roi> columns, or {keys}"
    available = ", ".join(f"{s}/{r}" for s, r in sorted(masked))
    return (f"no patient has a '{target.roi}' mask on sequence '{target.sequence}', so every patient would be "
            f"quarantined at roi_slices: {keys} to a pair with masks ({available})")


def _preferred_first(declared: list[str], preferred: str) -> list[str]:
    return [preferred, *(d for d in declared if d != preferred)] if preferred in declared else list(declared)


def axis_named_in(sequence: str) -> SliceAxis | None:
    """The plane a sequence name states (`sag_T2`, `T1_axial`, `COR-STIR`), or None."""
    words = [w for w in re.split(r"[^a-z]+", sequence.lower()) if w]
    return next((AXIS_WORDS[w] for w in words if w in AXIS_WORDS), None)


@dataclass(frozen=True)
class SliceRequest:
    """Which sequence and ROIs make the network input."""

    sequence: str
    roi: str = "lesion"
    rect_roi: str | None = None   # with rectangle 'rect_mask', e.g. 'dl_rect'
    canal_roi: str | None = None  # with rectangle 'lesion_to_canal', e.g. 'cord'
    settings: RoiSliceSettings = RoiSliceSettings()

    def digest(self) -> str:
        text = json.dumps({**asdict(self), "settings": asdict(self.settings)}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class SliceSettings(Section):
    """The 2D input of the networks (study config section `deep.slice`): the max-ROI slice of `roi` on `sequence`,
    in the plane `axis`, cropped as `rectangle` says and resized to `output_size` pixels square.

    `sequence`, `roi` and `axis` left unset come from the manifest (`slice_target`): the first (sequence, ROI)
    pair with masks, sag_T2 / lesion first where declared; the plane named in the sequence, else sagittal."""

    sequence: str | None = None
    roi: str | None = None
    axis: SliceAxis | None = None
    rectangle: RectangleMode = "lesion_bbox"
    rect_roi: str | None = None
    canal_roi: str | None = None
    margin: float = Field(5.0, ge=0)
    margin_unit: Literal["mm", "px"] = "mm"
    output_size: PositiveInt = 224
    # an ROI at the edge of the image (a cord mask spanning the field of view): cut the crop at the slice border
    # and record the pixels cut per side (roi_slices.clipped_px); false: quarantine such patients instead
    clip_to_slice: bool = True

    @field_validator("axis", mode="before")
    @classmethod
    def _known_axis(cls, axis: object) -> object:
        if axis is not None and axis not in NUMPY_AXIS:
            raise ValueError(f"unknown slice axis '{axis}'; choose from {', '.join(NUMPY_AXIS)} or leave it unset")
        return axis

    @model_validator(mode="after")
    def _rectangle_roi(self) -> SliceSettings:
        if self.rectangle == "rect_mask" and not self.rect_roi:
            raise ValueError("rectangle 'rect_mask' needs 'rect_roi' (the ROI holding the drawn rectangle)")
        if self.rectangle == "lesion_to_canal" and not self.canal_roi:
            raise ValueError("rectangle 'lesion_to_canal' needs 'canal_roi' (the canal or cord ROI)")
        return self

    def request(self, spec: CohortSpec, masked: Collection[tuple[str, str]] = frozenset()) -> SliceRequest:
        """What to cut for a cohort; `masked`: its (sequence, ROI) pairs with masks (`masked_pairs`), for the
        defaults."""
        target = slice_target(spec, self.sequence, self.roi, self.axis, masked)
        settings = RoiSliceSettings(target.axis, self.rectangle, self.margin, self.margin_unit,
                                    (self.output_size, self.output_size), self.clip_to_slice, spec.mask_label)
        return SliceRequest(target.sequence, target.roi, self.rect_roi, self.canal_roi, settings)


@dataclass
class PatientSlices:
    rows: list[dict]
    issues: list[QcIssue]  # errors: why this patient has no slices
    warnings: list[QcIssue] = field(default_factory=list)  # slices were made, with a remark (an oblique scan)

    @property
    def qc_issues(self) -> list[QcIssue]:
        """Everything to record in qc_issues for the stage."""
        return [*self.issues, *self.warnings]


def cut_patient_slices(patient_key: str, channels: pl.DataFrame, masks: pl.DataFrame, request: SliceRequest,
                       store: Path) -> PatientSlices:
    """`channels`: preprocessed_channels rows; `masks`: preprocessed_masks rows of this patient."""
    def issue(code: str, message: str, fix: str, file: str = "") -> PatientSlices:
        return PatientSlices([], [QcIssue(patient_key, STAGE, code, message, fix, file)])

    sequence_channels = channels.filter(pl.col("sequence") == request.sequence).sort("channel")
    if sequence_channels.is_empty():
        available = sorted(set(channels["sequence"])) if channels.height else []
        return issue("sequence_missing", f"no preprocessed channels of sequence '{request.sequence}' (has {available})",
                     f"choose the DL sequence among the patient's sequences ({CONFIG_KEYS}), or add that image to the "
                     "manifest")
    try:
        lesion = _mask(masks, request.sequence, request.roi, required=True)
        crop = plan_roi_crop(lesion, request.settings, _mask(masks, request.sequence, request.rect_roi),
                             _mask(masks, request.sequence, request.canal_roi))
        rows = [_write_slice(patient_key, row, crop, request, store) for row in sequence_channels.iter_rows(named=True)]
    except RoiSliceError as error:
        return issue(error.code, f"{request.sequence}/{request.roi}: {error.message}", error.fix)
    except MissingMaskError as error:
        return issue(error.code, str(error),
                     f"add the patient's mask__{request.sequence}__{request.roi} to the manifest, or choose a sequence "
                     f"and ROI the patient has masks for ({CONFIG_KEYS}); then re-materialize")
    except ImageReadError as error:
        return issue(getattr(error, "code", "unreadable_file"), str(error),
                     "re-materialize preprocessed_channels for this patient (its derived files are missing or damaged)")
    return PatientSlices(rows, [], _oblique_warnings(patient_key, crop, request))


def _oblique_warnings(patient_key: str, crop: RoiCrop, request: SliceRequest) -> list[QcIssue]:
    if crop.obliquity_deg <= OBLIQUE_WARNING_DEG:
        return []
    return [QcIssue(patient_key, STAGE, "oblique_slice",
                    f"{request.sequence}/{request.roi}: the {crop.axis} slice is {crop.obliquity_deg:.0f}° off the "
                    f"patient's {crop.axis} plane (an oblique scan); the nearest plane of the scan was used",
                    f"check the scan's direction cosines; reformat it to a true {crop.axis} plane if the network "
                    "input must be one", severity="warning")]


class MissingMaskError(Exception):
    code = "roi_mask_missing"


def _mask(masks: pl.DataFrame, sequence: str, roi: str | None, required: bool = False):
    if roi is None:
        return None
    match = masks.filter((pl.col("sequence") == sequence) & (pl.col("roi") == roi)
                         & (pl.col("segmentation") == PRIMARY))
    if match.is_empty():
        if required:
            raise MissingMaskError(f"no preprocessed '{roi}' mask for sequence '{sequence}'")
        return None
    return read_image(Path(match["mask_path"][0]))


def _write_slice(patient_key: str, channel_row: dict, crop: RoiCrop, request: SliceRequest, store: Path) -> dict:
    image = read_image(Path(channel_row["image_path"]))
    pixels = cut_roi_slice(image, crop, request.settings).pixels.astype(np.float32)
    digest = hashlib.sha256(f"{channel_row['image_path']}|{request.digest()}".encode()).hexdigest()[:20]
    path = store / patient_key / f"{request.sequence}_{request.roi}_{channel_row['channel']}_{digest}.npy"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.npy")
    np.save(temporary, pixels)
    temporary.replace(path)
    box = crop.box
    return {"patient_key": patient_key, "sequence": request.sequence, "roi": request.roi,
            "channel": channel_row["channel"], "axis": crop.axis, "slice_index": crop.slice_index,
            "roi_area_px": crop.roi_area_px, "crop": [box.row_start, box.row_stop, box.col_start, box.col_stop],
            "clipped_px": list(crop.clipped_px),
            "slice_path": str(path), "settings_digest": request.digest()}


def load_network_inputs(slice_paths: list[str]) -> torch.Tensor:
    """(n, 3, H, W) ImageNet-normalised inputs from stored slice files; names the file that cannot be read."""
    import torch  # here, not at import: the patient steps that cut slices never need it (issue 18, memory)

    grey = []
    for path in slice_paths:
        try:
            grey.append(np.load(path))
        except (OSError, ValueError) as error:
            raise SliceFileError(path, str(error)) from error
    if not grey:
        return torch.zeros((0, 3, 1, 1))
    return imagenet_normalize(torch.from_numpy(np.stack(grey)))


class SliceFileError(Exception):
    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(f"slice file {path} cannot be read ({reason})")
