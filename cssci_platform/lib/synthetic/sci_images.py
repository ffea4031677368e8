"""The SCI cohort's images: one patient's anatomy and lesion rendered on each plane of its protocol, the
second rater's lesion mask and the injury-level rectangle ROI (documented in `synthetic.sci`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cssci_platform.lib.synthetic.common import (
    CORD,
    IN_PLANE_BLUR,
    TISSUE_SIGNAL,
    Grid,
    Plane,
    SpineAnatomy,
    acquire,
    bias_field,
    draw_spine_anatomy,
    ellipsoid,
    grid_for,
    paint,
    patient_rng,
    plane_spacing,
    texture_field,
    tissue_labels,
    write_volume,
)
from cssci_platform.lib.synthetic.sci_patients import (
    DL_RECT_MARGIN_MM,
    SCI_CENTERS,
    SciPatient,
)


def second_rater_lesion(lesion: np.ndarray, cord: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plausible inter-rater variation: one SI end grown/shrunk by 1-2 voxels, maybe 1 voxel posteriorly."""
    shift = int(rng.integers(1, 3)) * int(rng.choice([-1, 1]))
    moved = np.roll(lesion, shift, axis=0)
    result = (lesion | moved) & cord if rng.random() < 0.5 else lesion & moved
    if rng.random() < 0.5:
        result = (result | np.roll(result, 1, axis=1)) & cord
    return result if result.any() else lesion.copy()


def injury_level_rectangle(grid: Grid, anatomy: SpineAnatomy, lesion: np.ndarray,
                           margin_mm: float = DL_RECT_MARGIN_MM) -> np.ndarray:
    """Box (``dl_rect``): lesion SI extent + margin, the canal's AP extent over those levels, the cord's LR extent."""
    x, y, z = (grid.axis_mm(axis) for axis in range(3))
    lesion_z = z.ravel()[lesion.any(axis=(1, 2))]
    in_z = (z >= lesion_z.min() - margin_mm) & (z <= lesion_z.max() + margin_mm)
    centre = anatomy.centre_line_y(z.ravel()[in_z.ravel()])
    in_y = (y >= centre.min() - anatomy.canal_radius_ap_mm) & (y <= centre.max() + anatomy.canal_radius_ap_mm)
    in_x = np.abs(x) <= anatomy.cord_radius_lr_mm
    return in_z & in_y & in_x


def lesion_signal(patient: SciPatient, weighting: str, texture: np.ndarray) -> np.ndarray:
    """Planted raw lesion signal on T1 or T2 from the lesion's T2 mean, heterogeneity and texture values."""
    if weighting == "T2":
        return patient.lesion_t2_mean + patient.lesion_heterogeneity * texture
    return 380.0 - 0.2 * (patient.lesion_t2_mean - 680.0) + 0.4 * patient.lesion_heterogeneity * texture


@dataclass(frozen=True)
class SciLesionShape:
    centre_z_mm: float
    radii_mm: tuple[float, float, float]  # (LR, AP, SI)


def render_sci_plane(patient: SciPatient, plane: Plane, weightings: tuple[str, ...], anatomy: SpineAnatomy,
                     shape: SciLesionShape, rng: np.random.Generator) -> tuple[Grid, np.ndarray, np.ndarray, dict]:
    """One plane's (grid, lesion, cord, {weighting: int16 voxels}); draws texture, bias, then each weighting."""
    acquisition = patient.center.acquisition
    grid = grid_for(plane_spacing(acquisition.spacing_mm, plane))
    labels = tissue_labels(grid, anatomy)
    cord = labels == CORD
    lesion = ellipsoid(grid, (0.0, 0.0, shape.centre_z_mm), shape.radii_mm, follow_cord=anatomy) & cord
    texture = texture_field(lesion, grid, rng)
    bias = bias_field(grid, acquisition.bias_strength, rng)
    images = {}
    for weighting in weightings:
        signal = paint(labels, TISSUE_SIGNAL[f"sag_{weighting}"])
        signal[lesion] = lesion_signal(patient, weighting, texture[lesion])
        images[weighting] = acquire(signal, acquisition, bias, rng, IN_PLANE_BLUR[plane])
    return grid, lesion, cord, images


def render_sci_patient(patient: SciPatient, seed: int, image_dir: Path) -> None:
    """Write the patient's images and masks (``patient.protocol`` decides which)."""
    center_index = SCI_CENTERS.index(patient.center)
    rng = patient_rng(seed, 1, center_index, patient.number)
    anatomy = draw_spine_anatomy(rng)
    centre_z = rng.uniform(-25.0, 25.0)
    radii = (rng.uniform(0.55, 0.9) * anatomy.cord_radius_lr_mm, rng.uniform(0.55, 0.9) * anatomy.cord_radius_ap_mm,
             patient.lesion_length_mm / 2.0)
    shape = SciLesionShape(centre_z, radii)
    weightings = ("T2",) if patient.protocol == "upper_limb" else ("T1", "T2")
    grid, lesion, cord, images = render_sci_plane(patient, "sag", weightings, anatomy, shape, rng)
    volumes: dict[str, tuple[np.ndarray, Grid]] = {}
    for weighting, voxels in images.items():
        volumes[f"sag_{weighting}"] = voxels, grid
    for weighting in weightings:
        volumes[f"sag_{weighting}_lesion"] = lesion.astype(np.uint8), grid
        volumes[f"sag_{weighting}_cord"] = cord.astype(np.uint8), grid
    if patient.has_second_rater:
        volumes["sag_T2_lesion_rater2"] = second_rater_lesion(lesion, cord, rng).astype(np.uint8), grid
    if patient.protocol == "ianr":
        volumes["sag_T2_dl_rect"] = injury_level_rectangle(grid, anatomy, lesion).astype(np.uint8), grid
        plane_rng = patient_rng(seed, 3, center_index, patient.number)
        for plane in ("ax", "cor"):
            plane_grid, plane_lesion, _, plane_images = render_sci_plane(patient, plane, weightings, anatomy, shape,
                                                                         plane_rng)
            for weighting, voxels in plane_images.items():
                volumes[f"{plane}_{weighting}"] = voxels, plane_grid
                volumes[f"{plane}_{weighting}_lesion"] = plane_lesion.astype(np.uint8), plane_grid
    for name, (voxels, volume_grid) in volumes.items():
        write_volume(voxels, volume_grid, image_dir / f"{name}.nii.gz")
