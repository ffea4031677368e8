"""Synthetic spine-MRI demo cohorts with planted, documented effects.

Two generators write a cohort in the platform's manifest format (``cohort.yaml`` + ``patients.csv`` +
NIfTI volumes and masks) together with ``truth.csv``, the planted ground truth (not part of the manifest).
Everything is deterministic by ``seed``. Each patient draws from its own generators, seeded by
``(seed, stream, center, patient number)``, so a patient's values do not depend on how many other
patients are generated; cohort-level draws (which center, which class, which patients get a second
rater) use ``default_rng(seed)``.

Phantom (both cohorts)
    Sagittal volumes, about 48 mm (x, left-right; few thick slices, odd count so one slice is mid-sagittal)
    x 80 mm (y, antero-posterior; anterior = negative y) x 160 mm (z, supero-inferior), identity direction,
    origin chosen so that (0, 0, 0) mm is the center of the volume. A gently curved cord (ellipse, about
    10 mm AP x 12 mm LR) runs along z inside a CSF-filled canal; vertebral bodies (height ~15 mm, separated
    by ~5 mm discs) lie anterior to the canal; everything else is soft tissue. Raw tissue signal is on a
    ~0-1000 scale (``TISSUE_SIGNAL``: CSF dark on T1 and bright on T2, cord intermediate, marrow fatty,
    i.e. bright on T1 and dark on fat-suppressed T2). Acquisition then applies, in this order: a smooth
    multiplicative bias field ``exp(strength * random low-order polynomial)``, a small in-plane blur
    (sigma 0.5 voxel), Rician noise of the center's SD, and the center's linear intensity map
    ``scale * signal + offset``. Images are stored as int16, masks as uint8 (label 1), all in one geometry.

Cervical SCI cohort (``write_sci_cohort``)
    Centers ``SCI_CENTERS``: center_A 3.0 mm slices / 0.6 mm in-plane, scale 1.0, offset 0, noise SD 10,
    bias 0.05, 45 % of patients; center_B 3.5 / 0.8, 1.7, 150, 18, 0.15, 33 %; center_C 4.0 / 1.0, 0.6, 40,
    28, 0.25, 22 %. Case mix differs (ASIA grade distribution, mean age, surgery rate).
    Lesion: an ellipsoid along the cord centre line (clipped to the cord), ``lesion_length_mm`` long,
    lognormal around 22 mm (longer for worse ASIA grades: log-mean shift A +0.25, B +0.10, C 0, D -0.15).
    Inside the lesion the raw T2 signal has mean ``lesion_t2_mean`` (N(680, 70) clipped to 480-880) and
    standard deviation ``lesion_heterogeneity`` (a smoothed Gaussian random field, sigma 1.5 mm, scaled;
    N(60, 20) clipped to 15-120); raw T1 is iso/hypo-intense (380 - 0.2 (t2_mean - 680)) with 40 % of the
    T2 texture. Values are planted before bias, blur, noise and center scaling.
    Outcome: ``good_outcome ~ Bernoulli(sigmoid(logit))`` with, using the fixed population
    standardization ``z(v) = (v - mean) / sd`` of ``SCI_STANDARDIZATION`` (length 24/10 mm, T2 680/70,
    heterogeneity 60/20, age 55/15 years)::

        logit = 0.0 - 0.8 z(length) - 0.5 z(t2_mean) - 0.5 z(heterogeneity) - 0.45 z(age)
                + asia_effect[grade] - 0.5 diabetes + 0.6 (treatment == surgery)
        asia_effect = {A: -1.6, B: -0.8, C: 0.0, D: +0.8}

    (``SCI_OUTCOME_COEFFICIENTS``). Hypertension, smoking and sex carry no effect. With these values the
    true logit discriminates the outcome with AUC ~0.83, its imaging part alone with AUC ~0.75, and
    lesion length alone with AUC ~0.29 (longer lesion, worse outcome); about 55 % have a good outcome.
    A fraction of development patients get a second-rater sag_T2 lesion mask: the first mask with one
    supero-inferior end grown or shrunk by 1-2 voxels and, half of the time, one voxel grown posteriorly
    (within the cord). The prospective batch has no outcome in ``patients.csv``; its outcomes are in
    ``followup/outcomes.csv``.

Spinal metastasis cohort (``write_metastasis_cohort``)
    Centers ``METASTASIS_CENTERS``: center_A_1p5T (4.0 / 1.0 mm, scale 1.0, offset 0, noise 25, bias 0.10)
    and center_B_3T (3.0 / 0.6 mm, scale 1.4, offset 80, noise 12, bias 0.25). Class prevalence lung 35 %,
    breast 22 %, prostate 18 %, kidney 15 %, thyroid 10 %. One index lesion in a vertebral body (roi
    ``lesion``; roi ``vertebra`` = that body plus the lesion), further small unmasked lesions in other
    bodies up to ``n_vertebrae_involved``. Signal follows the lesion pattern (``PATTERN_SIGNAL``: lytic T1
    250 / T2 600 / FST2 650, blastic 120 / 180 / 200, mixed = patchy lytic and blastic), T2 and FST2
    shifted by class (``MetastasisClass.t2_shift``). Class signatures (``METASTASIS_CLASSES``):

        class     p(lytic, blastic, mixed)  size mm  T2 shift  texture SD  p(extension)  extra levels  age  p(male)
        lung      0.70 0.10 0.20            14       0         50          0.50          1.0           63   0.60
        kidney    0.95 0.00 0.05            18       +120      110         0.60          0.3           62   0.65
        breast    0.35 0.25 0.40            12       -30       60          0.25          1.8           55   0.02
        thyroid   0.90 0.02 0.08            15       +60       70          0.30          0.4           58   0.30
        prostate  0.05 0.80 0.15            11       -40       25          0.10          2.5           70   1.00

    (extra levels: Poisson mean of involved vertebrae beyond the index one, capped so at most 6.)
    Soft-tissue extension adds an epidural blob behind the body into the canal. The radiologist features
    (``lesion_pattern``, ``soft_tissue_extension``, ``n_vertebrae_involved``) are the planted values.
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path

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


# ----------------------------------------------------------------------------------------------- geometry
@dataclass(frozen=True)
class Acquisition:
    spacing_mm: tuple[float, float, float]  # (x, y, z)
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
        return tuple(-(n - 1) * s / 2.0 for n, s in zip(self.size, self.spacing))

    def axis_mm(self, axis: int) -> np.ndarray:
        """Voxel-centre coordinates along SimpleITK axis 0/1/2, shaped to broadcast over (z, y, x) arrays."""
        coordinates = self.origin[axis] + self.spacing[axis] * np.arange(self.size[axis], dtype=np.float32)
        shape = [1, 1, 1]
        shape[2 - axis] = self.size[axis]
        return coordinates.reshape(shape)


def grid_for(spacing_mm: tuple[float, float, float]) -> Grid:
    size = [max(1, round(fov / s)) for fov, s in zip(FIELD_OF_VIEW_MM, spacing_mm)]
    size[0] += 1 - size[0] % 2  # odd number of sagittal slices: one is mid-sagittal
    return Grid(size=tuple(size), spacing=tuple(spacing_mm))


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


def acquire(signal: np.ndarray, acquisition: Acquisition, bias: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Bias, in-plane blur, Rician noise and the center's intensity map; returns int16 voxels."""
    blurred = ndimage.gaussian_filter(signal * bias, sigma=(0.5, 0.5, 0.0))
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


# ----------------------------------------------------------------------------------------------- cohort helpers
def sigmoid(value: float) -> float:
    return 1.0 / (1.0 + math.exp(-value))


def patient_rng(seed: int, stream: int, center_index: int, number: int) -> np.random.Generator:
    """Per-patient generator; stream 0 draws parameters, stream 1 draws image randomness."""
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
    manifest_path.write_text(yaml.safe_dump(manifest, sort_keys=False))
    return manifest_path


def base_manifest(name: str, centers: list[str], sequences: list[str], rois: list[str]) -> dict:
    return {"manifest_version": 1, "name": name, "table": "patients.csv", "data_root": ".", "centers": centers,
            "sequences": sequences, "rois": rois, "mask_label": MASK_LABEL}


# ----------------------------------------------------------------------------------------------- SCI cohort
@dataclass(frozen=True)
class SciCenter:
    name: str
    letter: str
    acquisition: Acquisition
    patient_fraction: float
    asia_probabilities: tuple[float, float, float, float]  # A, B, C, D
    age_mean: float
    surgery_rate: float


SCI_CENTERS = (
    SciCenter("center_A", "A", Acquisition((3.0, 0.6, 0.6), 1.0, 0.0, 10.0, 0.05),
              patient_fraction=0.45, asia_probabilities=(0.15, 0.15, 0.30, 0.40), age_mean=52.0, surgery_rate=0.70),
    SciCenter("center_B", "B", Acquisition((3.5, 0.8, 0.8), 1.7, 150.0, 18.0, 0.15),
              patient_fraction=0.33, asia_probabilities=(0.25, 0.20, 0.30, 0.25), age_mean=57.0, surgery_rate=0.50),
    SciCenter("center_C", "C", Acquisition((4.0, 1.0, 1.0), 0.6, 40.0, 28.0, 0.25),
              patient_fraction=0.22, asia_probabilities=(0.10, 0.15, 0.30, 0.45), age_mean=60.0, surgery_rate=0.60),
)
ASIA_GRADES = ("A", "B", "C", "D")
SCI_STANDARDIZATION = {"lesion_length_mm": (24.0, 10.0), "lesion_t2_mean": (680.0, 70.0),
                       "lesion_heterogeneity": (60.0, 20.0), "age": (55.0, 15.0)}
SCI_OUTCOME_COEFFICIENTS = {
    "intercept": 0.0, "lesion_length_mm": -0.8, "lesion_t2_mean": -0.5, "lesion_heterogeneity": -0.5,
    "age": -0.45, "asia_grade": {"A": -1.6, "B": -0.8, "C": 0.0, "D": 0.8}, "diabetes": -0.5, "surgery": 0.6,
}
SCI_IMAGE_NAMES = ("sag_T1", "sag_T2", "sag_T1_lesion", "sag_T1_cord", "sag_T2_lesion", "sag_T2_cord")


@dataclass(frozen=True)
class SciPatient:
    patient_id: str
    center: SciCenter
    number: int
    cohort: str
    age: int
    sex: str
    diabetes: int
    hypertension: int
    smoking: int
    treatment: str
    asia_grade: str
    lesion_length_mm: float
    lesion_t2_mean: float
    lesion_heterogeneity: float
    true_logit: float
    good_outcome: int
    outcome_date: dt.date
    has_second_rater: bool


def sci_imaging_logit(length_mm: float, t2_mean: float, heterogeneity: float) -> float:
    """The imaging part of the planted logit (no intercept)."""
    values = {"lesion_length_mm": length_mm, "lesion_t2_mean": t2_mean, "lesion_heterogeneity": heterogeneity}
    return sum(SCI_OUTCOME_COEFFICIENTS[k] * (v - SCI_STANDARDIZATION[k][0]) / SCI_STANDARDIZATION[k][1]
               for k, v in values.items())


def sci_true_logit(length_mm: float, t2_mean: float, heterogeneity: float, age: float, asia_grade: str,
                   diabetes: int, treatment: str) -> float:
    c = SCI_OUTCOME_COEFFICIENTS
    age_mean, age_sd = SCI_STANDARDIZATION["age"]
    clinical = c["age"] * (age - age_mean) / age_sd + c["asia_grade"][asia_grade] + c["diabetes"] * diabetes
    surgery = c["surgery"] * (treatment == "surgery")
    return c["intercept"] + sci_imaging_logit(length_mm, t2_mean, heterogeneity) + clinical + surgery


def draw_sci_patient(seed: int, center_index: int, number: int, cohort: str, second_rater: bool) -> SciPatient:
    center = SCI_CENTERS[center_index]
    rng = patient_rng(seed, 0, center_index, number)
    age = int(np.clip(round(rng.normal(center.age_mean, 14.0)), 18, 90))
    sex = "M" if rng.random() < 0.75 else "F"
    diabetes = int(rng.random() < sigmoid(-2.0 + 0.04 * (age - 55)))
    hypertension = int(rng.random() < sigmoid(-1.0 + 0.05 * (age - 55)))
    smoking = int(rng.random() < 0.30)
    treatment = "surgery" if rng.random() < center.surgery_rate else "conservative"
    asia = ASIA_GRADES[rng.choice(4, p=center.asia_probabilities)]
    log_shift = {"A": 0.25, "B": 0.10, "C": 0.0, "D": -0.15}[asia]
    length = float(np.clip(rng.lognormal(math.log(22.0) + log_shift, 0.4), 6.0, 70.0))
    t2_mean = float(np.clip(rng.normal(680.0, 70.0), 480.0, 880.0))
    heterogeneity = float(np.clip(rng.normal(60.0, 20.0), 15.0, 120.0))
    logit = sci_true_logit(length, t2_mean, heterogeneity, age, asia, diabetes, treatment)
    good = int(rng.random() < sigmoid(logit))
    first_day = dt.date(2024, 1, 1) if cohort == "prospective" else dt.date(2019, 1, 1)
    injury = random_date(rng, first_day, first_day + dt.timedelta(days=364 if cohort == "prospective" else 1460))
    outcome_date = injury + dt.timedelta(days=int(round(rng.normal(182.0, 10.0))))
    return SciPatient(f"SCI-{center.letter}-{number:04d}", center, number, cohort, age, sex, diabetes, hypertension,
                      smoking, treatment, asia, round(length, 2), round(t2_mean, 2), round(heterogeneity, 2),
                      logit, good, outcome_date, second_rater)


def sample_sci_patients(n_development: int = 120, n_prospective: int = 30, seed: int = 7,
                        second_rater_fraction: float = 0.25) -> list[SciPatient]:
    """Patient-level parameters of ``write_sci_cohort`` (no images): cheap, for tests and power checks."""
    if not 0.0 <= second_rater_fraction <= 1.0:
        raise ValueError(f"second_rater_fraction must be in [0, 1], got {second_rater_fraction}")
    if n_development < 1 or n_prospective < 0:
        raise ValueError(f"need n_development >= 1 and n_prospective >= 0, got {n_development}, {n_prospective}")
    fractions = [c.patient_fraction for c in SCI_CENTERS]
    development_counts, prospective_counts = allocate(n_development, fractions), allocate(n_prospective, fractions)
    slots = [(ci, number, cohort)
             for ci, (n_dev, n_pro) in enumerate(zip(development_counts, prospective_counts))
             for number, cohort in enumerate(["development"] * n_dev + ["prospective"] * n_pro, start=1)]
    n_rated = round(second_rater_fraction * n_development)
    rated = set(np.random.default_rng(seed).permutation(n_development)[:n_rated].tolist())
    development_slots = [s for s in slots if s[2] == "development"]
    rated_slots = {development_slots[i] for i in rated}
    return [draw_sci_patient(seed, ci, number, cohort, (ci, number, cohort) in rated_slots)
            for ci, number, cohort in slots]


def second_rater_lesion(lesion: np.ndarray, cord: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Plausible inter-rater variation: one SI end grown/shrunk by 1-2 voxels, maybe 1 voxel posteriorly."""
    shift = int(rng.integers(1, 3)) * int(rng.choice([-1, 1]))
    moved = np.roll(lesion, shift, axis=0)
    result = (lesion | moved) & cord if rng.random() < 0.5 else lesion & moved
    if rng.random() < 0.5:
        result = (result | np.roll(result, 1, axis=1)) & cord
    return result if result.any() else lesion.copy()


def render_sci_patient(patient: SciPatient, seed: int, image_dir: Path) -> None:
    rng = patient_rng(seed, 1, SCI_CENTERS.index(patient.center), patient.number)
    acquisition = patient.center.acquisition
    grid = grid_for(acquisition.spacing_mm)
    anatomy = draw_spine_anatomy(rng)
    labels = tissue_labels(grid, anatomy)
    cord = labels == CORD
    centre_z = rng.uniform(-25.0, 25.0)
    radii = (rng.uniform(0.55, 0.9) * anatomy.cord_radius_lr_mm, rng.uniform(0.55, 0.9) * anatomy.cord_radius_ap_mm,
             patient.lesion_length_mm / 2.0)
    lesion = ellipsoid(grid, (0.0, 0.0, centre_z), radii, follow_cord=anatomy) & cord
    texture = texture_field(lesion, grid, rng)
    bias = bias_field(grid, acquisition.bias_strength, rng)
    t2 = paint(labels, TISSUE_SIGNAL["sag_T2"])
    t2[lesion] = patient.lesion_t2_mean + patient.lesion_heterogeneity * texture[lesion]
    t1 = paint(labels, TISSUE_SIGNAL["sag_T1"])
    t1[lesion] = 380.0 - 0.2 * (patient.lesion_t2_mean - 680.0) + 0.4 * patient.lesion_heterogeneity * texture[lesion]
    volumes = {"sag_T1": acquire(t1, acquisition, bias, rng), "sag_T2": acquire(t2, acquisition, bias, rng)}
    for sequence in ("sag_T1", "sag_T2"):
        volumes[f"{sequence}_lesion"] = lesion.astype(np.uint8)
        volumes[f"{sequence}_cord"] = cord.astype(np.uint8)
    if patient.has_second_rater:
        volumes["sag_T2_lesion_rater2"] = second_rater_lesion(lesion, cord, rng).astype(np.uint8)
    for name, voxels in volumes.items():
        write_volume(voxels, grid, image_dir / f"{name}.nii.gz")


SCI_COLUMNS = [
    "patient_id", "center", "cohort", "image__sag_T1", "image__sag_T2", "mask__sag_T1__lesion", "mask__sag_T1__cord",
    "mask__sag_T2__lesion", "mask__sag_T2__cord", "mask__sag_T2__lesion__rater2", "age", "sex", "diabetes",
    "hypertension", "smoking", "treatment", "asia_grade", "good_outcome", "outcome_date",
]


def sci_manifest() -> dict:
    manifest = base_manifest("synthetic_sci", [c.name for c in SCI_CENTERS], ["sag_T1", "sag_T2"], ["lesion", "cord"])
    manifest["clinical"] = {
        "age": {"type": "continuous"}, "sex": {"type": "categorical", "levels": ["F", "M"]},
        "diabetes": {"type": "binary"}, "hypertension": {"type": "binary"}, "smoking": {"type": "binary"},
        "treatment": {"type": "categorical", "levels": ["surgery", "conservative"]},
        "asia_grade": {"type": "categorical", "levels": list(ASIA_GRADES)},
    }
    manifest["outcomes"] = {"good_outcome": {"type": "binary"}}
    return manifest


def sci_table_row(patient: SciPatient) -> dict:
    pid, known = patient.patient_id, patient.cohort == "development"
    return {
        "patient_id": pid, "center": patient.center.name, "cohort": patient.cohort,
        "image__sag_T1": image_path(pid, "sag_T1"), "image__sag_T2": image_path(pid, "sag_T2"),
        "mask__sag_T1__lesion": image_path(pid, "sag_T1_lesion"), "mask__sag_T1__cord": image_path(pid, "sag_T1_cord"),
        "mask__sag_T2__lesion": image_path(pid, "sag_T2_lesion"), "mask__sag_T2__cord": image_path(pid, "sag_T2_cord"),
        "mask__sag_T2__lesion__rater2": image_path(pid, "sag_T2_lesion_rater2") if patient.has_second_rater else None,
        "age": patient.age, "sex": patient.sex, "diabetes": patient.diabetes, "hypertension": patient.hypertension,
        "smoking": patient.smoking, "treatment": patient.treatment, "asia_grade": patient.asia_grade,
        "good_outcome": patient.good_outcome if known else None,
        "outcome_date": patient.outcome_date.isoformat() if known else None,
    }


def sci_truth_row(patient: SciPatient) -> dict:
    return {
        "patient_id": patient.patient_id, "center": patient.center.name, "cohort": patient.cohort,
        "lesion_length_mm": patient.lesion_length_mm, "lesion_t2_mean": patient.lesion_t2_mean,
        "lesion_heterogeneity": patient.lesion_heterogeneity, "true_logit": round(patient.true_logit, 6),
        "true_probability": round(sigmoid(patient.true_logit), 6), "good_outcome": patient.good_outcome,
    }


def write_sci_cohort(out_dir: Path, n_development: int = 120, n_prospective: int = 30, seed: int = 7,
                     second_rater_fraction: float = 0.25) -> Path:
    """Write the synthetic multi-center cervical SCI cohort (see module docstring); returns ``cohort.yaml``."""
    out_dir = Path(out_dir)
    patients = sample_sci_patients(n_development, n_prospective, seed, second_rater_fraction)
    for patient in patients:
        render_sci_patient(patient, seed, out_dir / "images" / patient.patient_id)
    prospective = [p for p in patients if p.cohort == "prospective"]
    (out_dir / "followup").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"patient_id": [p.patient_id for p in prospective], "outcome": ["good_outcome"] * len(prospective),
         "value": [p.good_outcome for p in prospective],
         "outcome_date": [p.outcome_date.isoformat() for p in prospective]},
        schema={"patient_id": pl.String, "outcome": pl.String, "value": pl.Int64, "outcome_date": pl.String},
    ).write_csv(out_dir / "followup" / "outcomes.csv")
    pl.DataFrame([sci_truth_row(p) for p in patients]).write_csv(out_dir / "truth.csv")
    return write_manifest(out_dir, sci_manifest(), [sci_table_row(p) for p in patients], SCI_COLUMNS)


# ----------------------------------------------------------------------------------------------- metastasis cohort
@dataclass(frozen=True)
class MetastasisCenter:
    name: str
    letter: str
    acquisition: Acquisition
    patient_fraction: float


@dataclass(frozen=True)
class MetastasisClass:
    name: str
    prevalence: float
    pattern_probabilities: tuple[float, float, float]  # lytic, blastic, mixed
    size_mm: float
    t2_shift: float
    heterogeneity: float
    extension_probability: float
    extra_levels_mean: float
    age_mean: float
    male_probability: float


METASTASIS_CENTERS = (
    MetastasisCenter("center_A_1p5T", "A", Acquisition((4.0, 1.0, 1.0), 1.0, 0.0, 25.0, 0.10), 0.55),
    MetastasisCenter("center_B_3T", "B", Acquisition((3.0, 0.6, 0.6), 1.4, 80.0, 12.0, 0.25), 0.45),
)
METASTASIS_CLASSES = (
    MetastasisClass("lung", 0.35, (0.70, 0.10, 0.20), 14.0, 0.0, 50.0, 0.50, 1.0, 63.0, 0.60),
    MetastasisClass("kidney", 0.15, (0.95, 0.00, 0.05), 18.0, 120.0, 110.0, 0.60, 0.3, 62.0, 0.65),
    MetastasisClass("breast", 0.22, (0.35, 0.25, 0.40), 12.0, -30.0, 60.0, 0.25, 1.8, 55.0, 0.02),
    MetastasisClass("thyroid", 0.10, (0.90, 0.02, 0.08), 15.0, 60.0, 70.0, 0.30, 0.4, 58.0, 0.30),
    MetastasisClass("prostate", 0.18, (0.05, 0.80, 0.15), 11.0, -40.0, 25.0, 0.10, 2.5, 70.0, 1.00),
)
LESION_PATTERNS = ("lytic", "blastic", "mixed")
PATTERN_SIGNAL = {
    "lytic": {"sag_T1": 250.0, "sag_T2": 600.0, "sag_FST2": 650.0},
    "blastic": {"sag_T1": 120.0, "sag_T2": 180.0, "sag_FST2": 200.0},
}
METASTASIS_SEQUENCES = ("sag_T1", "sag_T2", "sag_FST2")
MAX_VERTEBRAE_INVOLVED = 6


@dataclass(frozen=True)
class MetastasisPatient:
    patient_id: str
    center: MetastasisCenter
    number: int
    primary_site: MetastasisClass
    age: int
    sex: str
    lesion_pattern: str
    lesion_size_mm: float
    lesion_heterogeneity: float
    soft_tissue_extension: int
    n_vertebrae_involved: int
    diagnosis_date: dt.date

    def lesion_signal(self, sequence: str) -> float:
        """Planted mean raw signal of the lesion (mixed = average of lytic and blastic patches)."""
        patterns = ("lytic", "blastic") if self.lesion_pattern == "mixed" else (self.lesion_pattern,)
        base = float(np.mean([PATTERN_SIGNAL[p][sequence] for p in patterns]))
        return base + (self.primary_site.t2_shift if sequence != "sag_T1" else 0.0)


def draw_metastasis_patient(seed: int, center_index: int, number: int, site: MetastasisClass) -> MetastasisPatient:
    center = METASTASIS_CENTERS[center_index]
    rng = patient_rng(seed, 0, center_index, number)
    age = int(np.clip(round(rng.normal(site.age_mean, 10.0)), 25, 92))
    sex = "M" if rng.random() < site.male_probability else "F"
    pattern = LESION_PATTERNS[rng.choice(3, p=site.pattern_probabilities)]
    size = float(np.clip(rng.normal(site.size_mm, 4.0), 6.0, 22.0))
    heterogeneity = float(np.clip(rng.normal(site.heterogeneity, 0.2 * site.heterogeneity), 5.0, 200.0))
    extension = int(rng.random() < site.extension_probability)
    n_involved = int(min(1 + rng.poisson(site.extra_levels_mean), MAX_VERTEBRAE_INVOLVED))
    diagnosis = random_date(rng, dt.date(2018, 1, 1), dt.date(2023, 12, 31))
    return MetastasisPatient(f"MET-{center.letter}-{number:04d}", center, number, site, age, sex, pattern,
                             round(size, 2), round(heterogeneity, 2), extension, n_involved, diagnosis)


def sample_metastasis_patients(n_patients: int = 120, seed: int = 11) -> list[MetastasisPatient]:
    """Patient-level parameters of ``write_metastasis_cohort`` (no images)."""
    if n_patients < 1:
        raise ValueError(f"n_patients must be >= 1, got {n_patients}")
    rng = np.random.default_rng(seed)
    class_counts = allocate(n_patients, [c.prevalence for c in METASTASIS_CLASSES])
    sites = rng.permutation(np.repeat(np.arange(len(METASTASIS_CLASSES)), class_counts))
    center_counts = allocate(n_patients, [c.patient_fraction for c in METASTASIS_CENTERS])
    slots = [(ci, number) for ci, count in enumerate(center_counts) for number in range(1, count + 1)]
    return [draw_metastasis_patient(seed, ci, number, METASTASIS_CLASSES[site])
            for (ci, number), site in zip(slots, sites)]


def body_centre_yz(anatomy: SpineAnatomy, level: int) -> tuple[float, float]:
    centre_z = anatomy.level_centre_z(level)
    return float(anatomy.posterior_wall_y(np.float32(centre_z))) - anatomy.body_depth_mm / 2.0, centre_z


def vertebral_lesion(grid: Grid, anatomy: SpineAnatomy, body: np.ndarray, level: int, size_mm: float,
                     rng: np.random.Generator) -> np.ndarray:
    """An ellipsoid inside vertebral body ``level`` (boolean (z, y, x))."""
    centre_y, centre_z = body_centre_yz(anatomy, level)
    radii = (0.4 * size_mm, rng.uniform(0.4, 0.55) * size_mm, 0.5 * size_mm)
    return ellipsoid(grid, (rng.uniform(-2.0, 2.0), centre_y, centre_z), radii) & body


def epidural_extension(grid: Grid, anatomy: SpineAnatomy, level: int, size_mm: float) -> np.ndarray:
    """Tumour breaking through the posterior wall of body ``level`` 4 mm into the canal."""
    centre_y, centre_z = body_centre_yz(anatomy, level)
    front, back = centre_y, float(anatomy.posterior_wall_y(np.float32(centre_z))) + 4.0
    return ellipsoid(grid, (0.0, (front + back) / 2.0, centre_z), (5.0, (back - front) / 2.0, min(0.4 * size_mm, 6.0)))


def lesion_signal_map(patient: MetastasisPatient, sequence: str, texture: np.ndarray) -> np.ndarray:
    """Raw lesion signal from pattern, class shift and texture (``texture`` = SD-1 field on lesion voxels)."""
    shift = patient.primary_site.t2_shift if sequence != "sag_T1" else 0.0
    amplitude = patient.lesion_heterogeneity * (0.5 if sequence == "sag_T1" else 1.0)
    if patient.lesion_pattern == "mixed":
        patches = np.where(texture > 0, PATTERN_SIGNAL["blastic"][sequence], PATTERN_SIGNAL["lytic"][sequence])
        return patches + shift + 0.3 * amplitude * texture
    return PATTERN_SIGNAL[patient.lesion_pattern][sequence] + shift + amplitude * texture


def metastasis_levels(anatomy: SpineAnatomy, n_levels: int, rng: np.random.Generator) -> list[int]:
    """Index level (body centre within +-50 mm) first, then other distinct levels inside the field of view."""
    first, last = anatomy.level_index(np.float32(-70.0)), anatomy.level_index(np.float32(70.0))
    candidates = [k for k in range(int(first), int(last) + 1) if abs(anatomy.level_centre_z(k)) <= 70.0]
    central = [k for k in candidates if abs(anatomy.level_centre_z(k)) <= 50.0]
    index_level = int(rng.choice(central))
    others = rng.permutation([k for k in candidates if k != index_level])[: n_levels - 1]
    return [index_level, *map(int, others)]


def render_metastasis_patient(patient: MetastasisPatient, seed: int, image_dir: Path) -> int:
    """Write images and masks; returns the index level."""
    rng = patient_rng(seed, 1, METASTASIS_CENTERS.index(patient.center), patient.number)
    acquisition = patient.center.acquisition
    grid = grid_for(acquisition.spacing_mm)
    anatomy = draw_spine_anatomy(rng)
    labels = tissue_labels(grid, anatomy)
    level_of_slice = anatomy.level_index(grid.axis_mm(2))
    levels = metastasis_levels(anatomy, patient.n_vertebrae_involved, rng)
    bodies = [(labels == BODY) & (level_of_slice == level) for level in levels]
    lesion = vertebral_lesion(grid, anatomy, bodies[0], levels[0], patient.lesion_size_mm, rng)
    if patient.soft_tissue_extension:
        lesion |= epidural_extension(grid, anatomy, levels[0], patient.lesion_size_mm)
    all_lesions = lesion.copy()
    for level, body in zip(levels[1:], bodies[1:]):
        all_lesions |= vertebral_lesion(grid, anatomy, body, level, 0.6 * patient.lesion_size_mm, rng)
    texture = texture_field(all_lesions, grid, rng)
    bias = bias_field(grid, acquisition.bias_strength, rng)
    volumes = {}
    for sequence in METASTASIS_SEQUENCES:
        signal = paint(labels, TISSUE_SIGNAL[sequence])
        signal[all_lesions] = lesion_signal_map(patient, sequence, texture[all_lesions])
        volumes[sequence] = acquire(signal, acquisition, bias, rng)
        volumes[f"{sequence}_lesion"] = lesion.astype(np.uint8)
        volumes[f"{sequence}_vertebra"] = (bodies[0] | lesion).astype(np.uint8)
    for name, voxels in volumes.items():
        write_volume(voxels, grid, image_dir / f"{name}.nii.gz")
    return levels[0]


METASTASIS_COLUMNS = [
    "patient_id", "center", "cohort", *[f"image__{s}" for s in METASTASIS_SEQUENCES],
    *[f"mask__{s}__{roi}" for s in METASTASIS_SEQUENCES for roi in ("lesion", "vertebra")],
    "age", "sex", "lesion_pattern", "soft_tissue_extension", "n_vertebrae_involved", "primary_site", "outcome_date",
]


def metastasis_manifest() -> dict:
    manifest = base_manifest("synthetic_metastasis", [c.name for c in METASTASIS_CENTERS],
                             list(METASTASIS_SEQUENCES), ["lesion", "vertebra"])
    manifest["clinical"] = {
        "age": {"type": "continuous"}, "sex": {"type": "categorical", "levels": ["F", "M"]},
        "lesion_pattern": {"type": "categorical", "levels": list(LESION_PATTERNS)},
        "soft_tissue_extension": {"type": "binary"}, "n_vertebrae_involved": {"type": "continuous"},
    }
    manifest["outcomes"] = {"primary_site": {"type": "multiclass", "levels": [c.name for c in METASTASIS_CLASSES]}}
    return manifest


def metastasis_table_row(patient: MetastasisPatient) -> dict:
    pid = patient.patient_id
    row = {"patient_id": pid, "center": patient.center.name, "cohort": "development"}
    row |= {f"image__{s}": image_path(pid, s) for s in METASTASIS_SEQUENCES}
    row |= {f"mask__{s}__{roi}": image_path(pid, f"{s}_{roi}")
            for s in METASTASIS_SEQUENCES for roi in ("lesion", "vertebra")}
    return row | {
        "age": patient.age, "sex": patient.sex, "lesion_pattern": patient.lesion_pattern,
        "soft_tissue_extension": patient.soft_tissue_extension, "n_vertebrae_involved": patient.n_vertebrae_involved,
        "primary_site": patient.primary_site.name, "outcome_date": patient.diagnosis_date.isoformat(),
    }


def metastasis_truth_row(patient: MetastasisPatient, index_level: int) -> dict:
    return {
        "patient_id": patient.patient_id, "center": patient.center.name, "primary_site": patient.primary_site.name,
        "lesion_pattern": patient.lesion_pattern, "lesion_size_mm": patient.lesion_size_mm,
        **{f"lesion_{s.removeprefix('sag_').lower()}_mean": patient.lesion_signal(s) for s in METASTASIS_SEQUENCES},
        "lesion_heterogeneity": patient.lesion_heterogeneity, "soft_tissue_extension": patient.soft_tissue_extension,
        "n_vertebrae_involved": patient.n_vertebrae_involved, "index_level": index_level,
    }


def write_metastasis_cohort(out_dir: Path, n_patients: int = 120, seed: int = 11) -> Path:
    """Write the synthetic spinal-metastasis primary-site cohort (see module docstring); returns ``cohort.yaml``."""
    out_dir = Path(out_dir)
    patients = sample_metastasis_patients(n_patients, seed)
    index_levels = [render_metastasis_patient(p, seed, out_dir / "images" / p.patient_id) for p in patients]
    truth = [metastasis_truth_row(p, level) for p, level in zip(patients, index_levels)]
    pl.DataFrame(truth).write_csv(out_dir / "truth.csv")
    rows = [metastasis_table_row(p) for p in patients]
    return write_manifest(out_dir, metastasis_manifest(), rows, METASTASIS_COLUMNS)
