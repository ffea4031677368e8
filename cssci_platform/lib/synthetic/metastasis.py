"""Synthetic spinal-metastasis primary-site cohort (``write_metastasis_cohort``); phantom in ``common``.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from cssci_platform.lib.synthetic.common import (
    BODY,
    TISSUE_SIGNAL,
    Acquisition,
    Grid,
    SpineAnatomy,
    acquire,
    allocate,
    base_manifest,
    bias_field,
    draw_spine_anatomy,
    ellipsoid,
    grid_for,
    image_path,
    paint,
    patient_rng,
    random_date,
    texture_field,
    tissue_labels,
    write_manifest,
    write_volume,
)


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
    wall_y = float(anatomy.posterior_wall_y(np.asarray(centre_z, dtype=np.float32)))
    return wall_y - anatomy.body_depth_mm / 2.0, centre_z


def vertebral_lesion(grid: Grid, anatomy: SpineAnatomy, body: np.ndarray, level: int, size_mm: float,
                     rng: np.random.Generator) -> np.ndarray:
    """An ellipsoid inside vertebral body ``level`` (boolean (z, y, x))."""
    centre_y, centre_z = body_centre_yz(anatomy, level)
    radii = (0.4 * size_mm, rng.uniform(0.4, 0.55) * size_mm, 0.5 * size_mm)
    return ellipsoid(grid, (rng.uniform(-2.0, 2.0), centre_y, centre_z), radii) & body


def epidural_extension(grid: Grid, anatomy: SpineAnatomy, level: int, size_mm: float) -> np.ndarray:
    """Tumour breaking through the posterior wall of body ``level`` 4 mm into the canal."""
    centre_y, centre_z = body_centre_yz(anatomy, level)
    front, back = centre_y, float(anatomy.posterior_wall_y(np.asarray(centre_z, dtype=np.float32))) + 4.0
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
    first, last = (anatomy.level_index(np.asarray(z, dtype=np.float32)) for z in (-70.0, 70.0))
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
