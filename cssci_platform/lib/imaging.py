"""SimpleITK image I/O, geometry checks, resampling and filter channels.

Every function takes and returns `SimpleITK.Image` objects; voxel data never leaves SimpleITK except for
the checks that need numpy. Errors name the file and say what to do.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
CHANNELS = ("original", "mean", "box", "gaussian", "median")


class ImageReadError(Exception):
    """A file that should hold an image (or a DICOM series folder) could not be read."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        self.path, self.reason, self.fix = Path(path), reason, fix
        super().__init__(f"{path}: {reason}. Fix: {fix}")


def has_volume_suffix(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def read_image(path: Path) -> sitk.Image:
    """Read a NIfTI/NRRD/MHA/MHD volume or a DICOM series folder (the largest series in it)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found", "check the path in the manifest (relative to data_root)")
    if path.is_dir():
        return _read_dicom_series(path)
    if not has_volume_suffix(path):
        raise ImageReadError(
            path, f"unsupported file type '{path.suffix}'", f"convert to one of {', '.join(VOLUME_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)", "re-export or re-copy the file")
    try:
        return sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageReadError(
            path, f"unreadable or corrupt image ({_first_line(error)})", "re-export or re-copy the file"
        ) from None


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    if not series_ids:
        raise ImageReadError(folder, "folder holds no DICOM series", "point the manifest at a DICOM series folder")
    file_lists = [sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(max(file_lists, key=len))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise ImageReadError(folder, f"DICOM series unreadable ({_first_line(error)})", "re-export the series") from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]


def write_image(image: sitk.Image, path: Path) -> None:
    """Write atomically: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, suffix="".join(path.suffixes))
    os.close(handle)
    try:
        sitk.WriteImage(image, tmp_name, useCompression=True)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def file_sha256(path: Path) -> str:
    """Content hash of a file, or of every file of a folder (DICOM series) in name order."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for file in files:
        digest.update(file.name.encode())
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Geometry:
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


@dataclass(frozen=True)
class GeometryTolerance:
    spacing_mm: float = 1e-3
    origin_mm: float = 1e-2
    direction: float = 1e-4


def geometry_mismatches(image: sitk.Image, mask: sitk.Image, tolerance: GeometryTolerance) -> list[str]:
    """Human-readable differences between the image grid and the mask grid, empty when they agree."""
    img, msk = Geometry.of(image), Geometry.of(mask)
    problems = []
    if img.size != msk.size:
        problems.append(f"size differs: image {img.size} vs mask {msk.size}")
    for field, limit in (("spacing", tolerance.spacing_mm), ("origin", tolerance.origin_mm)):
        a, b = np.asarray(getattr(img, field)), np.asarray(getattr(msk, field))
        if a.shape != b.shape or np.max(np.abs(a - b)) > limit:
            problems.append(f"{field} differs beyond {limit} mm: image {_fmt(a)} vs mask {_fmt(b)}")
    a, b = np.asarray(img.direction), np.asarray(msk.direction)
    if a.shape != b.shape or np.max(np.abs(a - b)) > tolerance.direction:
        problems.append(f"direction differs beyond {tolerance.direction}: image {_fmt(a)} vs mask {_fmt(b)}")
    return problems


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def nonfinite_voxel_count(image: sitk.Image) -> int:
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def mask_label_counts(mask: sitk.Image) -> dict[int, int]:
    """Voxel count per non-zero value of a mask. Non-integer values are reported as their rounding."""
    array = sitk.GetArrayViewFromImage(mask)
    values, counts = np.unique(array[array != 0], return_counts=True)
    return {int(round(float(v))): int(c) for v, c in zip(values, counts, strict=True)}


def normalize_unit_range(image: sitk.Image, lower_percentile: float = 0.0, upper_percentile: float = 100.0) -> sitk.Image:
    """Linear map of intensities to [0, 1]; values outside the percentile window are clipped."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    low, high = np.percentile(array, [lower_percentile, upper_percentile])
    scale = float(high - low) or 1.0
    normalized = np.clip((array - low) / scale, 0.0, 1.0).astype(np.float32)
    return _like(normalized, image)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


def resample_to_spacing(image: sitk.Image, spacing: tuple[float, float, float], is_mask: bool = False) -> sitk.Image:
    """Resample onto a grid with `spacing` covering the same physical extent (B-spline images, NN masks)."""
    old_spacing, old_size = np.asarray(image.GetSpacing()), np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(old_spacing * old_size / np.asarray(spacing))).astype(int)
    interpolator = sitk.sitkNearestNeighbor if is_mask else sitk.sitkBSpline
    pixel_type = image.GetPixelID() if is_mask else sitk.sitkFloat32
    return sitk.Resample(
        image, [int(s) for s in new_size], sitk.Transform(), interpolator, image.GetOrigin(),
        tuple(float(s) for s in spacing), image.GetDirection(), 0, pixel_type,
    )


def resample_mask_onto(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of a mask onto the grid of an (already resampled) image."""
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


@dataclass(frozen=True)
class ChannelSettings:
    """Filter parameters in voxels (radius) or mm (sigma), applied after resampling to isotropic spacing."""

    mean_radius: int = 1
    box_radius: int = 2
    gaussian_sigma_mm: float = 1.0
    median_radius: int = 1


def filter_channel(image: sitk.Image, channel: str, settings: ChannelSettings = ChannelSettings()) -> sitk.Image:
    """One filter channel of a normalized image: original, mean (3x3x3 neighbourhood mean), box (5x5x5
    box mean via integral image), gaussian (recursive Gaussian, sigma in mm) or median (3x3x3)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    if channel == "original":
        return image
    if channel == "mean":
        return sitk.Mean(image, [settings.mean_radius] * 3)
    if channel == "box":
        return sitk.BoxMean(image, [settings.box_radius] * 3)
    if channel == "gaussian":
        return sitk.SmoothingRecursiveGaussian(image, settings.gaussian_sigma_mm)
    if channel == "median":
        return sitk.Median(image, [settings.median_radius] * 3)
    raise ValueError(f"unknown channel '{channel}'; choose from {', '.join(CHANNELS)}")
