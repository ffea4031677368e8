"""Per-patient preprocessing: normalize to [0, 1], resample to isotropic spacing, filter channels.

Outputs are entries of the content-addressed feature store (lib/feature_store): the entry name carries a hash of the
input file hash, the settings and the SimpleITK version, the entry record their full key and the file's own hash, so a
re-run with the same inputs and settings - in this experiment or any other on the cohort - finds verified files and
does no work, and a damaged or foreign file is computed again. Derived volumes are NRRD
with gzip level 1: SimpleITK's NIfTI writer ignores the compression level, and its default level made
writing the five channels of a 5-million-voxel volume cost more than computing them.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import SimpleITK as sitk
from pydantic import Field, PositiveInt, model_validator

from cssci_platform.lib.feature_store import FeatureStore, content_key
from cssci_platform.lib.imaging import (
    CHANNELS,
    ChannelSettings,
    filter_channel,
    normalize_unit_range,
    read_image,
    resample_mask_onto,
    resample_to_spacing,
    write_image,
)
from cssci_platform.lib.quality import ScanInfo
from cssci_platform.lib.settings import Section

DERIVED_SUFFIX = ".nrrd"
DERIVED_COMPRESSION = 1


Interpolator = Literal["linear", "bspline"]
Channel = Literal[CHANNELS]  # type: ignore[valid-type]


class PreprocessingSettings(Section):
    """How every image is prepared before features are computed (study config section `preprocessing`).

    Resampled to `spacing_mm` with `interpolator`, then intensities mapped to [0, 1] between the `lower_percentile`
    and `upper_percentile` of the volume; each of `channels` is the image through one filter, whose sizes are
    the radii (voxels) and sigma (mm) below, as the published protocols specify them."""

    spacing_mm: tuple[float, float, float] = (1.0, 1.0, 1.0)
    interpolator: Interpolator = "linear"
    lower_percentile: float = Field(0.0, ge=0, le=100)
    upper_percentile: float = Field(100.0, ge=0, le=100)
    channels: tuple[Channel, ...] = CHANNELS
    mean_radius: PositiveInt = 1
    box_radius: PositiveInt = 2
    gaussian_sigma_mm: float = Field(1.0, gt=0)
    median_radius: PositiveInt = 1

    @model_validator(mode="after")
    def _percentiles_in_order(self) -> PreprocessingSettings:
        if self.lower_percentile >= self.upper_percentile:
            raise ValueError(f"lower_percentile ({self.lower_percentile}) must be below upper_percentile "
                             f"({self.upper_percentile})")
        return self

    @property
    def filters(self) -> ChannelSettings:
        return ChannelSettings(self.mean_radius, self.box_radius, self.gaussian_sigma_mm, self.median_radius)

    def digest(self) -> str:
        """Names the derived files; the same document as before the settings became a study section, so files
        already in a store are found again."""
        document = {"spacing_mm": list(self.spacing_mm), "interpolator": self.interpolator,
                    "lower_percentile": self.lower_percentile, "upper_percentile": self.upper_percentile,
                    "channels": list(self.channels), "filters": asdict(self.filters)}
        return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ChannelFile:
    patient_key: str
    sequence: str
    channel: str
    image_path: str
    source_sha256: str
    settings_digest: str


@dataclass(frozen=True)
class MaskFile:
    patient_key: str
    sequence: str
    roi: str
    segmentation: str
    mask_path: str
    source_sha256: str


@dataclass
class PreprocessedPatient:
    channels: list[ChannelFile]
    masks: list[MaskFile]
    computed_files: int


def preprocess_patient(scans: list[ScanInfo], resolve, store: Path,
                       settings: PreprocessingSettings) -> PreprocessedPatient:
    """Preprocess every sequence of one patient; `resolve` maps a manifest path to a file path, `store` is the feature
    store's folder for channels (shared by the cohort's experiments); `computed_files` counts the files not reused."""
    result = PreprocessedPatient([], [], 0)
    images = [s for s in scans if s.kind == "image"]
    for image_scan in images:
        masks = [s for s in scans if s.kind == "mask" and s.sequence == image_scan.sequence]
        _preprocess_sequence(image_scan, masks, resolve, store, settings, result)
    return result


def _preprocess_sequence(image_scan: ScanInfo, masks: list[ScanInfo], resolve, store: Path,
                         settings: PreprocessingSettings, result: PreprocessedPatient) -> None:
    entries = FeatureStore(store)
    folder = f"{image_scan.patient_key}/{image_scan.sequence}"
    digest, version = settings.digest(), sitk.Version.VersionString()
    channel_keys = {c: content_key(image=image_scan.sha256, settings=digest, channel=c, simpleitk=version)
                    for c in settings.channels}
    mask_keys = {m: content_key(mask=m.sha256, image=image_scan.sha256, settings=digest, simpleitk=version)
                 for m in masks}
    channel_entries = {c: f"{folder}/{c}-{k[:16]}" for c, k in channel_keys.items()}
    mask_entries = {m: f"{folder}/mask-{m.roi}-{m.segmentation}-{k[:16]}" for m, k in mask_keys.items()}
    found = {**{c: entries.find(channel_entries[c], k) for c, k in channel_keys.items()},
             **{m: entries.find(mask_entries[m], k) for m, k in mask_keys.items()}}
    if None in found.values():
        base = _normalized_resampled(read_image(resolve(image_scan.path)), settings)
        for channel, key in channel_keys.items():
            if found[channel] is None:
                image = filter_channel(base, channel, settings.filters)
                found[channel] = entries.save(channel_entries[channel], key, DERIVED_SUFFIX, _writer(image))
                result.computed_files += 1
        for mask_scan, key in mask_keys.items():
            if found[mask_scan] is None:
                mask = resample_mask_onto(read_image(resolve(mask_scan.path)), base)
                found[mask_scan] = entries.save(mask_entries[mask_scan], key, DERIVED_SUFFIX, _writer(mask))
                result.computed_files += 1
    key = image_scan.patient_key
    result.channels += [ChannelFile(key, image_scan.sequence, c, str(found[c]), image_scan.sha256, digest)
                        for c in settings.channels]
    result.masks += [MaskFile(key, m.sequence, m.roi, m.segmentation, str(found[m]), m.sha256) for m in masks]


def _writer(image: sitk.Image) -> Callable[[Path], None]:
    return lambda path: write_image(image, path, DERIVED_COMPRESSION)


def _normalized_resampled(image: sitk.Image, settings: PreprocessingSettings) -> sitk.Image:
    # Resample first so B-spline overshoot cannot push intensities outside [0, 1].
    resampled = resample_to_spacing(image, settings.spacing_mm, interpolator=settings.interpolator)
    return normalize_unit_range(resampled, settings.lower_percentile, settings.upper_percentile)

