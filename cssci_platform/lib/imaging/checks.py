"""Checks of loaded images: image and mask grids that disagree, non-finite voxels, mask labels and values that are
not whole numbers."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk


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
    """Voxel count per non-zero label of a mask. Non-integer values count as their rounding (see
    `nonintegral_voxels`); NaN/Inf voxels are not labels and are left out (see `nonfinite_voxel_count`)."""
    array = sitk.GetArrayViewFromImage(mask)
    labels = np.round(array[np.isfinite(array)]) if np.issubdtype(array.dtype, np.floating) else array
    values, counts = np.unique(labels[labels != 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


@dataclass(frozen=True)
class NonIntegralVoxels:
    count: int
    example: float | None  # one offending value, to quote in a message


def nonintegral_voxels(image: sitk.Image) -> NonIntegralVoxels:
    """Finite voxels whose value is not a whole number (0.9999 in a mask saved as float)."""
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.floating):
        return NonIntegralVoxels(0, None)
    finite = array[np.isfinite(array)]
    fractional = finite[finite != np.round(finite)]
    return NonIntegralVoxels(int(fractional.size), float(fractional[0]) if fractional.size else None)
