"""Synthetic multi-center cervical spinal cord injury (SCI) cohort (``write_sci_cohort``); phantom in ``common``.

One generator, three protocols (``protocol=``): ``demo`` (the platform demo: binary ``good_outcome``),
``ianr`` (IANR-SCIFRS score at 6 months, good = score >= 37; sagittal, axial and coronal T1/T2 and a
rectangular injury-level ROI) and ``upper_limb`` (ASIA upper-extremity motor score at admission and at one
year, good = improvement above the cohort's mean improvement; sagittal T2 only). For the same seed the three
protocols share every patient's core parameters (center, age, sex, diabetes, hypertension, smoking,
treatment, ASIA grade, lesion) and its sagittal anatomy and lesion; ``demo`` output is what it always was.

Centers (all protocols)
    ``SCI_CENTERS``: center_A 3.0 mm slices / 0.6 mm in-plane, scale 1.0, offset 0, noise SD 10, bias 0.05,
    45 % of patients; center_B 3.5 / 0.8, 1.7, 150, 18, 0.15, 33 %; center_C 4.0 / 1.0, 0.6, 40, 28, 0.25,
    22 %. Case mix differs (ASIA grade distribution, mean age, surgery rate).

Lesion
    An ellipsoid along the cord centre line (clipped to the cord), ``lesion_length_mm`` long, lognormal
    around 22 mm (longer for worse ASIA grades: log-mean shift A +0.25, B +0.10, C 0, D -0.15). Inside the
    lesion the raw T2 signal has mean ``lesion_t2_mean`` (N(680, 70) clipped to 480-880) and standard
    deviation ``lesion_heterogeneity`` (a smoothed Gaussian random field, sigma 1.5 mm, scaled; N(60, 20)
    clipped to 15-120); raw T1 is iso/hypo-intense (380 - 0.2 (t2_mean - 680)) with 40 % of the T2 texture.
    Values are planted before bias, blur, noise and center scaling.

Planted logit (all protocols)
    With the fixed population standardization ``z(v) = (v - mean) / sd`` of ``SCI_STANDARDIZATION`` (length
    24/10 mm, T2 680/70, heterogeneity 60/20, age 55/15 years)::

        logit = 0.0 - 0.8 z(length) - 0.5 z(t2_mean) - 0.5 z(heterogeneity) - 0.45 z(age)
                + asia_effect[grade] - 0.5 diabetes + 0.6 (treatment == surgery)
        asia_effect = {A: -1.6, B: -0.8, C: 0.0, D: +0.8}

    (``SCI_OUTCOME_COEFFICIENTS``); protocol ``ianr`` adds ``IANR_LOGIT_COEFFICIENTS`` (below). Hypertension,
    smoking and sex carry no effect.

Protocol ``demo`` (manifest ``synthetic_sci``)
    sag_T1, sag_T2 with ``lesion`` and ``cord`` masks. ``good_outcome ~ Bernoulli(sigmoid(logit))``. With
    these values the true logit discriminates the outcome with AUC ~0.83, its imaging part alone with AUC
    ~0.75, and lesion length alone with AUC ~0.29 (longer lesion, worse outcome); about 55 % have a good
    outcome. Outcome at ~6 months (N(182, 10) days after injury).

Protocol ``ianr`` (manifest ``synthetic_sci_ianr``)
    sag_T1, sag_T2 (``lesion``, ``cord``), ax_T1, ax_T2, cor_T1, cor_T2 (``lesion``): the same anatomy and
    lesion rendered on each plane's grid (``common.plane_spacing``: axial = thick slices along z, coronal =
    thick slices along y), each plane with its own texture, bias and noise draws. ROI ``dl_rect`` exists on
    sag_T2 only: a box covering the lesion's supero-inferior extent plus ``DL_RECT_MARGIN_MM`` at both ends,
    the spinal canal in AP (over those levels) and the cord in LR (|x| <= cord LR radius); it contains the
    lesion. Extra clinical variables (stream 2 of ``patient_rng``): ``drinking`` (p 0.40 men, 0.12 women),
    ``cardiovascular_disease`` (sigmoid(-2.2 + 0.05 (age - 55))), ``brain_injury`` (p 0.15), ``injury_site``
    (``C1-C4`` p 0.35, else ``C5-C7``). ``IANR_LOGIT_COEFFICIENTS``: brain_injury -0.5, injury_site C1-C4
    -0.3 (drinking and cardiovascular disease carry no effect). Outcome ``ianr_6m`` (integer 0-50)::

        ianr_6m = clip(floor(37 + IANR_SCALE * (logit + e)), 0, 50),   e ~ standard logistic, IANR_SCALE = 4

    so ``ianr_6m >= 37`` iff ``logit + e >= 0``, i.e. good ~ Bernoulli(sigmoid(logit)) exactly; about 52 %
    good (true logit AUC ~0.82), median 37, ~9 % at the ceiling of 50. The manifest declares ``ianr_6m``
    (continuous) and no ``good_outcome``; truth.csv has both.

Protocol ``upper_limb`` (manifest ``synthetic_sci_upper_limb``)
    sag_T2 only (``lesion``, ``cord``). Extra clinical variable ``uems_admission`` (integer 0-50, N(mean by
    ASIA grade ``UEMS_ADMISSION_MEAN`` A 12, B 18, C 26, D 36; SD 7), stream 2). Outcome ``uems_1y``::

        change = floor(UEMS_CHANGE_INTERCEPT + UEMS_CHANGE_SCALE * (logit + e)),   e ~ standard logistic
        uems_1y = clip(uems_admission + change, 0, 50)          (intercept 8, scale 3)

    so the improvement ``uems_1y - uems_admission`` grows with the logit (the clip at 50 caps it for
    patients admitted with high scores: ~18 % reach 50). Mean improvement ~7 points (SD ~6.4, ~12 % lose
    points); about 49 % good; the true logit discriminates the derived label with AUC ~0.76 (~0.82 for
    ``ianr``: the ceiling blurs it). The derived label ``good_outcome`` = improvement above the mean
    improvement of the development patients (the study's "above the cohort's mean change"; prospective
    patients use the development mean too); it is in truth.csv with the improvement and the logit, not in the
    manifest. Outcome at ~1 year (N(365, 14) days after injury).

Second rater and prospective batch (all protocols)
    A fraction of development patients get a second-rater sag_T2 lesion mask: the first mask with one
    supero-inferior end grown or shrunk by 1-2 voxels and, half of the time, one voxel grown posteriorly
    (within the cord). The prospective batch has no outcome in ``patients.csv``; its outcomes are in
    ``followup/outcomes.csv`` (columns patient_id, outcome, value, outcome_date; outcome = the protocol's
    manifest outcome).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import numpy as np
import polars as pl

from cssci_platform.lib.synthetic.common import (
    CORD,
    IN_PLANE_BLUR,
    TISSUE_SIGNAL,
    Acquisition,
    Grid,
    Plane,
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
    plane_spacing,
    random_date,
    sigmoid,
    texture_field,
    tissue_labels,
    write_manifest,
    write_volume,
)

SciProtocol = Literal["demo", "ianr", "upper_limb"]
SCI_PROTOCOLS: tuple[str, ...] = get_args(SciProtocol)


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

# protocol "ianr"
INJURY_SITES = ("C1-C4", "C5-C7")
IANR_LOGIT_COEFFICIENTS = {"brain_injury": -0.5, "injury_site": {"C1-C4": -0.3, "C5-C7": 0.0}}
IANR_GOOD_THRESHOLD = 37  # IANR-SCIFRS >= 37 at 6 months = good outcome
IANR_SCALE = 4.0
IANR_MAX = 50
DL_RECT_MARGIN_MM = 4.0

# protocol "upper_limb"
UEMS_MAX = 50
UEMS_ADMISSION_MEAN = {"A": 12.0, "B": 18.0, "C": 26.0, "D": 36.0}
UEMS_ADMISSION_SD = 7.0
UEMS_CHANGE_INTERCEPT = 8.0
UEMS_CHANGE_SCALE = 3.0


@dataclass(frozen=True)
class SciProtocolLayout:
    """What one protocol writes: manifest name, sequences, masks, clinical variables and the outcome."""

    manifest_name: str
    sequences: tuple[str, ...]
    masks: tuple[tuple[str, str], ...]  # (sequence, roi) of the primary segmentation, in column order
    rois: tuple[str, ...]
    clinical: dict[str, dict]  # manifest spec per clinical variable, in column order
    outcome: str  # the manifest outcome (also the followup file's ``outcome``)
    outcome_spec: dict

    @property
    def columns(self) -> list[str]:
        return ["patient_id", "center", "cohort", *[f"image__{s}" for s in self.sequences],
                *[f"mask__{s}__{roi}" for s, roi in self.masks], "mask__sag_T2__lesion__rater2",
                *self.clinical, self.outcome, "outcome_date"]


_BINARY = {"type": "binary"}
_SEX = {"type": "categorical", "levels": ["F", "M"]}
_TREATMENT = {"type": "categorical", "levels": ["surgery", "conservative"]}
_ASIA = {"type": "categorical", "levels": list(ASIA_GRADES)}
SCI_PROTOCOL_LAYOUTS: dict[str, SciProtocolLayout] = {
    "demo": SciProtocolLayout(
        "synthetic_sci", ("sag_T1", "sag_T2"),
        (("sag_T1", "lesion"), ("sag_T1", "cord"), ("sag_T2", "lesion"), ("sag_T2", "cord")), ("lesion", "cord"),
        {"age": {"type": "continuous"}, "sex": _SEX, "diabetes": _BINARY, "hypertension": _BINARY,
         "smoking": _BINARY, "treatment": _TREATMENT, "asia_grade": _ASIA},
        "good_outcome", {"type": "binary"},
    ),
    "ianr": SciProtocolLayout(
        "synthetic_sci_ianr", ("sag_T1", "sag_T2", "ax_T1", "ax_T2", "cor_T1", "cor_T2"),
        (("sag_T1", "lesion"), ("sag_T1", "cord"), ("sag_T2", "lesion"), ("sag_T2", "cord"), ("sag_T2", "dl_rect"),
         ("ax_T1", "lesion"), ("ax_T2", "lesion"), ("cor_T1", "lesion"), ("cor_T2", "lesion")),
        ("lesion", "cord", "dl_rect"),
        {"age": {"type": "continuous"}, "sex": _SEX, "smoking": _BINARY, "drinking": _BINARY,
         "hypertension": _BINARY, "diabetes": _BINARY, "cardiovascular_disease": _BINARY, "brain_injury": _BINARY,
         "injury_site": {"type": "categorical", "levels": list(INJURY_SITES)}, "treatment": _TREATMENT,
         "asia_grade": _ASIA},
        "ianr_6m", {"type": "continuous"},
    ),
    "upper_limb": SciProtocolLayout(
        "synthetic_sci_upper_limb", ("sag_T2",), (("sag_T2", "lesion"), ("sag_T2", "cord")), ("lesion", "cord"),
        {"age": {"type": "continuous"}, "sex": _SEX, "diabetes": _BINARY, "hypertension": _BINARY,
         "smoking": _BINARY, "treatment": _TREATMENT, "asia_grade": _ASIA, "uems_admission": {"type": "continuous"}},
        "uems_1y", {"type": "continuous"},
    ),
}


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
    good_outcome: int  # ianr: ianr_6m >= 37; upper_limb: improvement above the development mean
    outcome_date: dt.date
    has_second_rater: bool
    protocol: str = "demo"
    # protocol "ianr"
    drinking: int | None = None
    cardiovascular_disease: int | None = None
    brain_injury: int | None = None
    injury_site: str | None = None
    ianr_6m: int | None = None
    # protocol "upper_limb"
    uems_admission: int | None = None
    uems_1y: int | None = None

    @property
    def uems_change(self) -> int | None:
        return None if self.uems_1y is None else self.uems_1y - self.uems_admission


def check_protocol(protocol: str) -> SciProtocolLayout:
    if protocol not in SCI_PROTOCOL_LAYOUTS:
        raise ValueError(f"unknown SCI protocol {protocol!r}; choose from {', '.join(SCI_PROTOCOLS)}")
    return SCI_PROTOCOL_LAYOUTS[protocol]


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


def ianr_logit_extra(brain_injury: int, injury_site: str) -> float:
    """What protocol ``ianr`` adds to the planted logit."""
    c = IANR_LOGIT_COEFFICIENTS
    return c["brain_injury"] * brain_injury + c["injury_site"][injury_site]


def draw_ianr_clinical(rng: np.random.Generator, age: int, sex: str) -> dict:
    return {
        "drinking": int(rng.random() < (0.40 if sex == "M" else 0.12)),
        "cardiovascular_disease": int(rng.random() < sigmoid(-2.2 + 0.05 * (age - 55))),
        "brain_injury": int(rng.random() < 0.15),
        "injury_site": INJURY_SITES[0] if rng.random() < 0.35 else INJURY_SITES[1],
    }


def ianr_score(logit: float, logistic_noise: float) -> int:
    """IANR-SCIFRS at 6 months: >= 37 exactly when ``logit + logistic_noise >= 0``."""
    return int(np.clip(math.floor(IANR_GOOD_THRESHOLD + IANR_SCALE * (logit + logistic_noise)), 0, IANR_MAX))


def uems_one_year(admission: int, logit: float, logistic_noise: float) -> int:
    change = math.floor(UEMS_CHANGE_INTERCEPT + UEMS_CHANGE_SCALE * (logit + logistic_noise))
    return int(np.clip(admission + change, 0, UEMS_MAX))


def draw_sci_patient(seed: int, center_index: int, number: int, cohort: str, second_rater: bool,
                     protocol: SciProtocol = "demo") -> SciPatient:
    """One patient; for ``upper_limb`` ``good_outcome`` is provisional (see ``sample_sci_patients``)."""
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
    extra: dict = {}
    if protocol == "demo":
        good = int(rng.random() < sigmoid(logit))
    else:
        extra_rng = patient_rng(seed, 2, center_index, number)
        if protocol == "ianr":
            extra = draw_ianr_clinical(extra_rng, age, sex)
            logit += ianr_logit_extra(extra["brain_injury"], extra["injury_site"])
            extra["ianr_6m"] = ianr_score(logit, rng.logistic())
            good = int(extra["ianr_6m"] >= IANR_GOOD_THRESHOLD)
        else:
            admission = int(np.clip(round(extra_rng.normal(UEMS_ADMISSION_MEAN[asia], UEMS_ADMISSION_SD)), 0, UEMS_MAX))
            extra = {"uems_admission": admission, "uems_1y": uems_one_year(admission, logit, rng.logistic())}
            good = int(extra["uems_1y"] - admission > UEMS_CHANGE_INTERCEPT)  # provisional
    first_day = dt.date(2024, 1, 1) if cohort == "prospective" else dt.date(2019, 1, 1)
    injury = random_date(rng, first_day, first_day + dt.timedelta(days=364 if cohort == "prospective" else 1460))
    followup_days = (365.0, 14.0) if protocol == "upper_limb" else (182.0, 10.0)
    outcome_date = injury + dt.timedelta(days=int(round(rng.normal(*followup_days))))
    return SciPatient(f"SCI-{center.letter}-{number:04d}", center, number, cohort, age, sex, diabetes, hypertension,
                      smoking, treatment, asia, round(length, 2), round(t2_mean, 2), round(heterogeneity, 2),
                      logit, good, outcome_date, second_rater, protocol, **extra)


def upper_limb_outcomes(patients: list[SciPatient]) -> list[SciPatient]:
    """``good_outcome`` = UEMS improvement above the development patients' mean improvement."""
    changes = [p.uems_change for p in patients if p.cohort == "development"]
    threshold = float(np.mean(changes))
    return [dataclasses.replace(p, good_outcome=int(p.uems_change > threshold)) for p in patients]


def sample_sci_patients(n_development: int = 120, n_prospective: int = 30, seed: int = 7,
                        second_rater_fraction: float = 0.25, protocol: SciProtocol = "demo") -> list[SciPatient]:
    """Patient-level parameters of ``write_sci_cohort`` (no images): cheap, for tests and power checks."""
    check_protocol(protocol)
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
    patients = [draw_sci_patient(seed, ci, number, cohort, (ci, number, cohort) in rated_slots, protocol)
                for ci, number, cohort in slots]
    return upper_limb_outcomes(patients) if protocol == "upper_limb" else patients


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


SCI_COLUMNS = SCI_PROTOCOL_LAYOUTS["demo"].columns


def sci_columns(protocol: SciProtocol = "demo") -> list[str]:
    return check_protocol(protocol).columns


def sci_manifest(protocol: SciProtocol = "demo") -> dict:
    layout = check_protocol(protocol)
    manifest = base_manifest(layout.manifest_name, [c.name for c in SCI_CENTERS], list(layout.sequences),
                             list(layout.rois))
    manifest["clinical"] = {name: dict(spec) for name, spec in layout.clinical.items()}
    manifest["outcomes"] = {layout.outcome: dict(layout.outcome_spec)}
    return manifest


def sci_outcome_value(patient: SciPatient) -> int:
    """The value of the protocol's manifest outcome."""
    return {"demo": patient.good_outcome, "ianr": patient.ianr_6m, "upper_limb": patient.uems_1y}[patient.protocol]


def sci_table_row(patient: SciPatient) -> dict:
    pid, known = patient.patient_id, patient.cohort == "development"
    layout = check_protocol(patient.protocol)
    row = {"patient_id": pid, "center": patient.center.name, "cohort": patient.cohort}
    row |= {f"image__{s}": image_path(pid, s) for s in layout.sequences}
    row |= {f"mask__{s}__{roi}": image_path(pid, f"{s}_{roi}") for s, roi in layout.masks}
    row["mask__sag_T2__lesion__rater2"] = image_path(pid, "sag_T2_lesion_rater2") if patient.has_second_rater else None
    row |= {name: getattr(patient, name) for name in layout.clinical}
    return row | {layout.outcome: sci_outcome_value(patient) if known else None,
                  "outcome_date": patient.outcome_date.isoformat() if known else None}


def sci_truth_row(patient: SciPatient) -> dict:
    row = {
        "patient_id": patient.patient_id, "center": patient.center.name, "cohort": patient.cohort,
        "lesion_length_mm": patient.lesion_length_mm, "lesion_t2_mean": patient.lesion_t2_mean,
        "lesion_heterogeneity": patient.lesion_heterogeneity, "true_logit": round(patient.true_logit, 6),
    }
    if patient.protocol == "upper_limb":  # sigmoid(logit) is not P(good) here: the cut is the cohort mean change
        return row | {"uems_admission": patient.uems_admission, "uems_1y": patient.uems_1y,
                      "uems_change": patient.uems_change, "good_outcome": patient.good_outcome}
    row["true_probability"] = round(sigmoid(patient.true_logit), 6)
    if patient.protocol == "ianr":
        row["ianr_6m"] = patient.ianr_6m
    return row | {"good_outcome": patient.good_outcome}


def write_sci_cohort(out_dir: Path, n_development: int = 120, n_prospective: int = 30, seed: int = 7,
                     second_rater_fraction: float = 0.25, *, protocol: SciProtocol = "demo") -> Path:
    """Write the synthetic multi-center cervical SCI cohort (see module docstring); returns ``cohort.yaml``."""
    out_dir = Path(out_dir)
    layout = check_protocol(protocol)
    patients = sample_sci_patients(n_development, n_prospective, seed, second_rater_fraction, protocol)
    for patient in patients:
        render_sci_patient(patient, seed, out_dir / "images" / patient.patient_id)
    prospective = [p for p in patients if p.cohort == "prospective"]
    (out_dir / "followup").mkdir(parents=True, exist_ok=True)
    pl.DataFrame(
        {"patient_id": [p.patient_id for p in prospective], "outcome": [layout.outcome] * len(prospective),
         "value": [sci_outcome_value(p) for p in prospective],
         "outcome_date": [p.outcome_date.isoformat() for p in prospective]},
        schema={"patient_id": pl.String, "outcome": pl.String, "value": pl.Int64, "outcome_date": pl.String},
    ).write_csv(out_dir / "followup" / "outcomes.csv")
    pl.DataFrame([sci_truth_row(p) for p in patients]).write_csv(out_dir / "truth.csv")
    return write_manifest(out_dir, sci_manifest(protocol), [sci_table_row(p) for p in patients], layout.columns)
