"""The spine phantom and the acquisition model shared by the synthetic cohorts, plus cohort-writing helpers.

Phantom (all cohorts)
    Physical space is SimpleITK's (x, y, z) = (left-right, antero-posterior with anterior = negative y,
    supero-inferior), identity direction; every grid covers the same field of view ``FIELD_OF_VIEW_MM``
    (48 mm LR x 80 mm AP x 160 mm SI), centred so that (0, 0, 0) mm is the center of the volume. Numpy
    arrays are in SimpleITK's (z, y, x) order. A gently curved cord (ellipse, about 10 mm AP x 12 mm LR)
    runs along z inside a CSF-filled canal; vertebral bodies (height ~15 mm, separated by ~5 mm discs) lie
    anterior to the canal; everything else is soft tissue. The phantom is a function of physical
    coordinates (``tissue_labels``, ``ellipsoid``), sampled at voxel centres, so one anatomy can be rendered
    on any grid. Raw tissue signal is on a ~0-1000 scale (``TISSUE_SIGNAL``: CSF dark on T1 and bright on
    T2, cord intermediate, marrow fatty, i.e. bright on T1 and dark on fat-suppressed T2).

Planes (``PLANES``)
    A center's ``Acquisition.spacing_mm`` is its sagittal spacing (slice thickness t along x, in-plane
    pixel p along y and z). The same center acquires axial planes with spacing (p, p, t) (thick slices along
    the cranio-caudal z axis) and coronal planes with (p, t, p) (thick slices along the AP y axis):
    ``plane_spacing``. ``grid_for`` makes the number of x voxels odd on every plane, so x = 0 (the cord's
    mid-sagittal plane) is a voxel centre.

Acquisition
    In this order: a smooth multiplicative bias field ``exp(strength * random low-order polynomial)``, a
    small in-plane blur (sigma 0.5 voxel along the two in-plane axes of the plane, ``IN_PLANE_BLUR``), Rician
    noise of the center's SD, and the center's linear intensity map ``scale * signal + offset``. Images are
    stored as int16, masks as uint8 (label 1), each mask in the geometry of its image.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
import SimpleITK as sitk
import yaml
from scipy import ndimage

FIELD_OF_VIEW_MM = (48.0, 80.0, 160.0)  # (x LR, y AP, z SI), SimpleITK order
MASK_LABEL = 1
SOFT_TISSUE, BODY, DISC, CSF, CORD = 0, 1, 2, 3, 4
TISSUE_SIGNAL = {  # raw signal per tissue label, per sequence
    "sag_T1": {SOFT_TISSUE: 350.0, BODY: 550.0, DISC: 280.0, CSF: 100.0, CORD: 420.0},
    "sag_T2": {SOFT_TISSUE: 260.0, BODY: 380.0, DISC: 620.0, CSF: 920.0, CORD: 330.0},
    "sag_FST2": {SOFT_TISSUE: 150.0, BODY: 120.0, DISC: 550.0, CSF: 850.0, CORD: 300.0},
}
Plane = Literal["sag", "ax", "cor"]
PLANES: tuple[Plane, ...] = ("sag", "ax", "cor")
IN_PLANE_BLUR = {  # gaussian sigma in voxels over (z, y, x) arrays: blur within the plane, not across slices
    "sag": (0.5, 0.5, 0.0),
    "ax": (0.0, 0.5, 0.5),
    "cor": (0.5, 0.0, 0.5),
}


@dataclass(frozen=True)
class Acquisition:
    spacing_mm: tuple[float, float, float]  # (x, y, z) of the sagittal acquisition
    intensity_scale: float
    intensity_offset: float
    noise_sd: float
    bias_strength: float


@dataclass(frozen=True)
class Grid:
    size: tuple[int, int, int]  # (x, y, z)
    spacing: tuple[float, float, float]

    @property
    def origin(self) -> tuple[float, float, float]:
        (nx, ny, nz), (sx, sy, sz) = self.size, self.spacing
        return (-(nx - 1) * sx / 2.0, -(ny - 1) * sy / 2.0, -(nz - 1) * sz / 2.0)

    def axis_mm(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates along SimpleITK axis 0/1/2, shaped to broadcast over (z, y, x) arrays."""
        coordinates = self.origin[axis] + self.spacing[axis] * np.arange(self.size[axis], dtype=np.float32)
        shape = [1, 1, 1]
        shape[2 - axis] = self.size[axis]
        return coordinates.reshape(shape)


def grid_for(spacing_mm: tuple[float, float, float]) -> Grid:
    size = [max(1, round(fov / s)) for fov, s in zip(FIELD_OF_VIEW_MM, spacing_mm)]
    size[0] += 1 - size[0] % 2  # odd number of sagittal slices: one is mid-sagittal
    return Grid(size=(size[0], size[1], size[2]), spacing=(spacing_mm[0], spacing_mm[1], spacing_mm[2]))


def plane_spacing(sagittal_spacing_mm: tuple[float, float, float], plane: Plane) -> tuple[float, float, float]:
    """(x, y, z) spacing of ``plane`` for a center whose sagittal spacing is (thickness, pixel, pixel)."""
    thickness, pixel = sagittal_spacing_mm[0], sagittal_spacing_mm[1]
    if plane == "sag":
        return (sagittal_spacing_mm[0], sagittal_spacing_mm[1], sagittal_spacing_mm[2])
    if plane == "ax":
        return (pixel, pixel, thickness)
    if plane == "cor":
        return (pixel, thickness, pixel)
    raise ValueError(f"unknown plane '{plane}'; choose from {', '.join(PLANES)}")


@dataclass(frozen=True)
class SpineAnatomy:
    cord_y_mm: float
    curvature_mm: float
    curvature_wavelength_mm: float
    curvature_phase: float
    cord_radius_ap_mm: float
    cord_radius_lr_mm: float
    canal_margin_mm: float
    body_depth_mm: float
    level_period_mm: float
    disc_height_mm: float
    level_phase_mm: float

    def centre_line_y(self, z: np.ndarray) -> np.ndarray:
        angle = 2.0 * np.pi * z / self.curvature_wavelength_mm + self.curvature_phase
        return self.cord_y_mm + self.curvature_mm * np.sin(angle)

    def level_index(self, z: np.ndarray) -> np.ndarray:
        return np.floor((z - self.level_phase_mm) / self.level_period_mm).astype(np.int32)

    def level_centre_z(self, level: int) -> float:
        body_start = self.level_phase_mm + level * self.level_period_mm + self.disc_height_mm
        return body_start + (self.level_period_mm - self.disc_height_mm) / 2.0

    def posterior_wall_y(self, z: np.ndarray) -> np.ndarray:
        return self.centre_line_y(z) - self.cord_radius_ap_mm - self.canal_margin_mm - 1.0

    @property
    def canal_radius_lr_mm(self) -> float:
        return self.cord_radius_lr_mm + 3.0

    @property
    def canal_radius_ap_mm(self) -> float:
        return self.cord_radius_ap_mm + self.canal_margin_mm


def draw_spine_anatomy(rng: np.random.Generator) -> SpineAnatomy:
    period = rng.uniform(19.0, 22.0)
    return SpineAnatomy(
        cord_y_mm=rng.uniform(6.0, 10.0), curvature_mm=rng.uniform(1.0, 4.0),
        curvature_wavelength_mm=rng.uniform(200.0, 320.0), curvature_phase=rng.uniform(0.0, 2 * np.pi),
        cord_radius_ap_mm=rng.uniform(4.5, 5.5), cord_radius_lr_mm=rng.uniform(5.5, 7.0),
        canal_margin_mm=rng.uniform(2.0, 3.5), body_depth_mm=rng.uniform(14.0, 18.0),
        level_period_mm=period, disc_height_mm=rng.uniform(4.0, 6.0), level_phase_mm=rng.uniform(0.0, period),
    )


Vector3 = tuple[float, float, float]


def ellipsoid(grid: Grid, centre_mm: Vector3, radii_mm: Vector3, follow_cord: SpineAnatomy | None = None) -> np.ndarray:
    """Boolean (z, y, x) ellipsoid; with ``follow_cord`` its y centre follows the cord's curvature."""
    x, y, z = (grid.axis_mm(axis) for axis in range(3))
    y_centre = centre_mm[1] if follow_cord is None else follow_cord.centre_line_y(z)
    distance = ((x - centre_mm[0]) / radii_mm[0]) ** 2 + ((y - y_centre) / radii_mm[1]) ** 2
    return (distance + ((z - centre_mm[2]) / radii_mm[2]) ** 2) <= 1.0


def tissue_labels(grid: Grid, anatomy: SpineAnatomy) -> np.ndarray:
    """uint8 (z, y, x) tissue labels (SOFT_TISSUE, BODY, DISC, CSF, CORD)."""
    x, y, z = (grid.axis_mm(axis) for axis in range(3))
    dy = y - anatomy.centre_line_y(z)
    cord = (x / anatomy.cord_radius_lr_mm) ** 2 + (dy / anatomy.cord_radius_ap_mm) ** 2 <= 1.0
    canal_lr, canal_ap = anatomy.cord_radius_lr_mm + 3.0, anatomy.cord_radius_ap_mm + anatomy.canal_margin_mm
    canal = (x / canal_lr) ** 2 + (dy / canal_ap) ** 2 <= 1.0
    wall = anatomy.posterior_wall_y(z)
    column = (np.abs(x) <= 13.0) & (y <= wall) & (y >= wall - anatomy.body_depth_mm)
    in_disc = (z - anatomy.level_phase_mm) % anatomy.level_period_mm < anatomy.disc_height_mm
    labels = np.zeros(tuple(reversed(grid.size)), dtype=np.uint8)
    labels[column & ~in_disc] = BODY
    labels[column & in_disc] = DISC
    labels[canal] = CSF
    labels[cord] = CORD
    return labels


def texture_field(mask: np.ndarray, grid: Grid, rng: np.random.Generator, sigma_mm: float = 1.5) -> np.ndarray:
    """Smoothed Gaussian random field with mean 0 and SD 1 inside ``mask`` (0 outside)."""
    field = np.zeros(mask.shape, dtype=np.float32)
    if not mask.any():
        return field
    box = ndimage.find_objects(mask.astype(np.uint8))[0]
    sigma_voxels = [sigma_mm / s for s in reversed(grid.spacing)]
    noise = rng.standard_normal(mask[box].shape, dtype=np.float32)
    smooth = ndimage.gaussian_filter(noise, sigma_voxels, mode="reflect")[mask[box]]
    field[box][mask[box]] = (smooth - smooth.mean()) / max(float(smooth.std()), 1e-6)
    return field


def paint(labels: np.ndarray, signal_by_label: dict[int, float]) -> np.ndarray:
    lookup = np.zeros(256, dtype=np.float32)
    for label, value in signal_by_label.items():
        lookup[label] = value
    return lookup[labels]


def bias_field(grid: Grid, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative field exp(strength * random low-order polynomial of normalized coordinates)."""
    half = [n * s / 2.0 for n, s in zip(grid.size, grid.spacing)]
    u, v, w = (grid.axis_mm(axis) / half[axis] for axis in range(3))
    terms = [u, v, w, v * w, u * w, w**2 - 1 / 3, v**2 - 1 / 3]
    coefficients = rng.normal(0.0, 1.0, len(terms)) / math.sqrt(len(terms) / 2)
    return np.exp(strength * sum(c * t for c, t in zip(coefficients, terms))).astype(np.float32)


def acquire(signal: np.ndarray, acquisition: Acquisition, bias: np.ndarray, rng: np.random.Generator,
            blur_sigma: tuple[float, float, float] = IN_PLANE_BLUR["sag"]) -> np.ndarray:
    """Bias, in-plane blur, Rician noise and the center's intensity map; returns int16 voxels.

    ``blur_sigma`` is in voxels over the (z, y, x) array; the default blurs the sagittal plane (y, z).
    """
    blurred = ndimage.gaussian_filter(signal * bias, sigma=blur_sigma)
    real = blurred + acquisition.noise_sd * rng.standard_normal(signal.shape, dtype=np.float32)
    imaginary = acquisition.noise_sd * rng.standard_normal(signal.shape, dtype=np.float32)
    mapped = acquisition.intensity_scale * np.hypot(real, imaginary) + acquisition.intensity_offset
    return np.clip(np.rint(mapped), 0, np.iinfo(np.int16).max).astype(np.int16)


def write_volume(voxels: np.ndarray, grid: Grid, path: Path) -> None:
    image = sitk.GetImageFromArray(voxels)
    image.SetSpacing(grid.spacing)
    image.SetOrigin(grid.origin)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)


def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def patient_rng(seed: int, stream: int, center_index: int, number: int) -> np.random.Generator:
    """Per-patient generator.

    Streams: 0 draws parameters, 1 draws image randomness, 2 draws protocol-specific clinical variables
    (SCI ``ianr`` / ``upper_limb``), 3 draws the image randomness of extra planes (axial, coronal).
    """
    return np.random.default_rng([seed, stream, center_index, number])


def allocate(n: int, fractions: list[float]) -> list[int]:
    """Largest-remainder counts summing to ``n``; every group gets one when ``n`` allows."""
    raw = [n * f / sum(fractions) for f in fractions]
    counts = [math.floor(r) for r in raw]
    for index in sorted(range(len(raw)), key=lambda i: counts[i] - raw[i])[: n - sum(counts)]:
        counts[index] += 1
    for index in range(len(counts)):
        donor = max(range(len(counts)), key=counts.__getitem__)
        if counts[index] == 0 and counts[donor] > 1:
            counts[index], counts[donor] = 1, counts[donor] - 1
    return counts


def random_date(rng: np.random.Generator, first: dt.date, last: dt.date) -> dt.date:
    return first + dt.timedelta(days=int(rng.integers(0, (last - first).days + 1)))


def image_path(patient_id: str, name: str) -> str:
    return f"images/{patient_id}/{name}.nii.gz"


def write_manifest(out_dir: Path, manifest: dict, rows: list[dict], columns: list[str]) -> Path:
    out_dir.mkdir(parents=True, exist_ok=True)
    path_columns = {c: pl.String for c in columns if c.startswith(("image__", "mask__"))}
    pl.DataFrame(rows, schema_overrides=path_columns).select(columns).write_csv(out_dir / "patients.csv")
    manifest_path = out_dir / "cohort.yaml"
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False), encoding="utf-8")
    return manifest_path


def base_manifest(name: str, centers: list[str], sequences: list[str], rois: list[str]) -> dict:
    return {"manifest_version": 1, "name": name, "table": "patients.csv", "data_root": ".", "centers": centers,
            "sequences": sequences, "rois": rois, "mask_label": MASK_LABEL}
