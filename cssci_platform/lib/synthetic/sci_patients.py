"""The SCI cohort's patients: centers, protocols and their layouts, the planted logit and outcomes, and the
draws of one patient's clinical values, anatomy and lesion (the model is documented in `synthetic.sci`)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from dataclasses import dataclass
from typing import Literal, TypedDict, get_args

import numpy as np

from cssci_platform.lib.synthetic.common import (
    Acquisition,
    allocate,
    patient_rng,
    random_date,
    sigmoid,
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


class SciOutcomeCoefficients(TypedDict):
    intercept: float
    lesion_length_mm: float
    lesion_t2_mean: float
    lesion_heterogeneity: float
    age: float
    asia_grade: dict[str, float]
    diabetes: float
    surgery: float


class IanrLogitCoefficients(TypedDict):
    brain_injury: float
    injury_site: dict[str, float]


ImagingTerm = Literal["lesion_length_mm", "lesion_t2_mean", "lesion_heterogeneity"]
SCI_OUTCOME_COEFFICIENTS: SciOutcomeCoefficients = {
    "intercept": 0.0, "lesion_length_mm": -0.8, "lesion_t2_mean": -0.5, "lesion_heterogeneity": -0.5,
    "age": -0.45, "asia_grade": {"A": -1.6, "B": -0.8, "C": 0.0, "D": 0.8}, "diabetes": -0.5, "surgery": 0.6,
}


# protocol "demo": the imaging terms of the logit are multiplied by this, so that the default `cssci demo` (180
# development patients, a 54-patient test split) recovers them visibly: test AUC with a 95 % CI above 0.5
DEMO_IMAGING_SCALE = 2.5


SCI_IMAGE_NAMES = ("sag_T1", "sag_T2", "sag_T1_lesion", "sag_T1_cord", "sag_T2_lesion", "sag_T2_cord")


# protocol "ianr"
INJURY_SITES = ("C1-C4", "C5-C7")


IANR_LOGIT_COEFFICIENTS: IanrLogitCoefficients = {"brain_injury": -0.5, "injury_site": {"C1-C4": -0.3, "C5-C7": 0.0}}
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
        return None if self.uems_1y is None or self.uems_admission is None else self.uems_1y - self.uems_admission


def check_protocol(protocol: str) -> SciProtocolLayout:
    if protocol not in SCI_PROTOCOL_LAYOUTS:
        raise ValueError(f"unknown SCI protocol {protocol!r}; choose from {', '.join(SCI_PROTOCOLS)}")
    return SCI_PROTOCOL_LAYOUTS[protocol]


def default_imaging_scale(protocol: str) -> float:
    """The protocol's factor on the imaging terms of the planted logit: ``DEMO_IMAGING_SCALE`` for ``demo``, else 1."""
    return DEMO_IMAGING_SCALE if protocol == "demo" else 1.0


def sci_imaging_logit(length_mm: float, t2_mean: float, heterogeneity: float, scale: float = 1.0) -> float:
    """The imaging part of the planted logit (no intercept), its terms times ``scale``."""
    values: dict[ImagingTerm, float] = {
        "lesion_length_mm": length_mm, "lesion_t2_mean": t2_mean, "lesion_heterogeneity": heterogeneity,
    }
    return scale * sum(SCI_OUTCOME_COEFFICIENTS[k] * (v - SCI_STANDARDIZATION[k][0]) / SCI_STANDARDIZATION[k][1]
                       for k, v in values.items())


def sci_true_logit(length_mm: float, t2_mean: float, heterogeneity: float, age: float, asia_grade: str,
                   diabetes: int, treatment: str, imaging_scale: float = 1.0) -> float:
    c = SCI_OUTCOME_COEFFICIENTS
    age_mean, age_sd = SCI_STANDARDIZATION["age"]
    clinical = c["age"] * (age - age_mean) / age_sd + c["asia_grade"][asia_grade] + c["diabetes"] * diabetes
    surgery = c["surgery"] * (treatment == "surgery")
    imaging = sci_imaging_logit(length_mm, t2_mean, heterogeneity, imaging_scale)
    return c["intercept"] + imaging + clinical + surgery


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
                     protocol: SciProtocol = "demo", imaging_scale: float | None = None) -> SciPatient:
    """One patient; for ``upper_limb`` ``good_outcome`` is provisional (see ``sample_sci_patients``).
    ``imaging_scale``: the factor on the logit's imaging terms (None: the protocol's, ``default_imaging_scale``)."""
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
    scale = default_imaging_scale(protocol) if imaging_scale is None else imaging_scale
    logit = sci_true_logit(length, t2_mean, heterogeneity, age, asia, diabetes, treatment, scale)
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
    threshold = float(np.mean([_uems_change(p) for p in patients if p.cohort == "development"]))
    return [dataclasses.replace(p, good_outcome=int(_uems_change(p) > threshold)) for p in patients]


def _uems_change(patient: SciPatient) -> int:
    if patient.uems_change is None:
        raise ValueError(f"{patient.patient_id} has no UEMS scores (protocol {patient.protocol!r}, not 'upper_limb')")
    return patient.uems_change


def sample_sci_patients(n_development: int = 120, n_prospective: int = 30, seed: int = 7,
                        second_rater_fraction: float = 0.25, protocol: SciProtocol = "demo",
                        imaging_scale: float | None = None) -> list[SciPatient]:
    """Patient-level parameters of ``write_sci_cohort`` (no images): cheap, for tests and power checks.
    ``imaging_scale`` (None: the protocol's) only changes the outcomes, never a patient's parameters or images."""
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
    patients = [draw_sci_patient(seed, ci, number, cohort, slot in rated_slots, protocol, imaging_scale)
                for slot in slots for ci, number, cohort in [slot]]
    return upper_limb_outcomes(patients) if protocol == "upper_limb" else patients
