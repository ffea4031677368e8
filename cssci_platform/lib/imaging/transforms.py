"""Intensity normalization, resampling to a spacing (images and masks), and the filter channels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

CHANNELS = ("original", "mean", "box", "gaussian", "median")


def normalize_unit_range(
    image: sitk.Image, lower_percentile: float = 0.0, upper_percentile: float = 100.0
) -> sitk.Image:
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


INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


def resample_to_spacing(image: sitk.Image, spacing: tuple[float, float, float], is_mask: bool = False,
                        interpolator: str = "linear") -> sitk.Image:
    """Resample onto a grid with `spacing` covering the same physical extent. Images use `interpolator`
    (trilinear by default, as IBSI recommends; 'bspline' is PyRadiomics' default), masks nearest neighbour."""
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"unknown interpolator '{interpolator}'; choose from {', '.join(INTERPOLATORS)}")
    old_spacing, old_size = np.asarray(image.GetSpacing()), np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(old_spacing * old_size / np.asarray(spacing))).astype(int)
    interpolator_id = sitk.sitkNearestNeighbor if is_mask else INTERPOLATORS[interpolator]
    pixel_type = image.GetPixelID() if is_mask else sitk.sitkFloat32
    # Align the outer voxel edges of both grids: shift the first voxel centre by half the spacing change.
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((np.asarray(spacing) - old_spacing) / 2)
    return sitk.Resample(
        image, [int(s) for s in new_size], sitk.Transform(), interpolator_id, tuple(float(o) for o in origin),
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
    box mean via integral image), gaussian (discrete Gaussian convolution, sigma in mm; unlike the recursive
    IIR filter it cannot overshoot, so [0, 1] inputs stay in [0, 1]) or median (3x3x3)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    if channel == "original":
        return image
    if channel == "mean":
        return sitk.Mean(image, [settings.mean_radius] * 3)
    if channel == "box":
        return sitk.BoxMean(image, [settings.box_radius] * 3)
    if channel == "gaussian":
        return sitk.DiscreteGaussian(image, [settings.gaussian_sigma_mm ** 2] * 3, 32, 0.001, True)
    if channel == "median":
        return sitk.Median(image, [settings.median_radius] * 3)
    raise ValueError(f"unknown channel '{channel}'; choose from {', '.join(CHANNELS)}")
