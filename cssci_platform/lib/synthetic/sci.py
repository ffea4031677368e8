"""Synthetic multi-center cervical spinal cord injury (SCI) cohort (``write_sci_cohort``); phantom in ``common``.

One generator, three protocols (``protocol=``): ``demo`` (the platform demo: binary ``good_outcome``),
``ianr`` (IANR-SCIFRS score at 6 months, good = score >= 37; sagittal, axial and coronal T1/T2 and a
rectangular injury-level ROI) and ``upper_limb`` (ASIA upper-extremity motor score at admission and at one
year, good = improvement above the cohort's mean improvement; sagittal T2 only). For the same seed the three
protocols share every patient's core parameters (center, age, sex, diabetes, hypertension, smoking,
treatment, ASIA grade, lesion) and its sagittal anatomy and lesion; ``demo``'s images are what they always were
(its outcome follows a stronger imaging effect since issue 18).

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

    (``SCI_OUTCOME_COEFFICIENTS``); protocol ``demo`` multiplies the three imaging terms by
    ``DEMO_IMAGING_SCALE`` = 2.5 (``default_imaging_scale``; ``imaging_scale=`` of ``write_sci_cohort`` sets
    another factor); protocol ``ianr`` adds ``IANR_LOGIT_COEFFICIENTS``
    (below). Hypertension, smoking and sex carry no effect.

Protocol ``demo`` (manifest ``synthetic_sci``)
    sag_T1, sag_T2 with ``lesion`` and ``cord`` masks. ``good_outcome ~ Bernoulli(sigmoid(logit))``. With
    these values the true logit discriminates the outcome with AUC ~0.91, its imaging part alone with AUC
    ~0.88, and lesion length alone with AUC ~0.20 (longer lesion, worse outcome); about 55 % have a good
    outcome (2000 patients, seed 21). The imaging effect is planted strongly so that the default
    ``cssci demo`` (180 development patients, a 54-patient test split) recovers it visibly through
    preprocessing, ComBat and selection (issue 18; with the unscaled terms, imaging AUC ~0.75, a test split
    of that size often gave a CI reaching 0.5). The scale draws no random number: every patient's parameters
    and draws are those of the other protocols, only the outcome follows the stronger logit. Outcome at
    ~6 months (N(182, 10) days after injury).

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

from pathlib import Path

import polars as pl

from cssci_platform.lib.synthetic.common import (
    base_manifest,
    image_path,
    sigmoid,
    write_manifest,
)
from cssci_platform.lib.synthetic.sci_images import (
    render_sci_patient,
)
from cssci_platform.lib.synthetic.sci_patients import (
    SCI_CENTERS,
    SCI_PROTOCOL_LAYOUTS,
    SciPatient,
    SciProtocol,
    check_protocol,
    sample_sci_patients,
)

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
    value = {"demo": patient.good_outcome, "ianr": patient.ianr_6m, "upper_limb": patient.uems_1y}[patient.protocol]
    if value is None:
        raise ValueError(f"{patient.patient_id} was drawn without its {patient.protocol!r} outcome")
    return value


def sci_table_row(patient: SciPatient) -> dict:
    pid, known = patient.patient_id, patient.cohort == "development"
    layout = check_protocol(patient.protocol)
    row: dict[str, object] = {"patient_id": pid, "center": patient.center.name, "cohort": patient.cohort}
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
                     second_rater_fraction: float = 0.25, *, protocol: SciProtocol = "demo",
                     imaging_scale: float | None = None) -> Path:
    """Write the synthetic multi-center cervical SCI cohort (see module docstring); returns ``cohort.yaml``.
    ``imaging_scale``: the factor on the planted logit's imaging terms (None: the protocol's; 1.0 gives the demo
    cohort's outcomes as they were before issue 18)."""
    out_dir = Path(out_dir)
    layout = check_protocol(protocol)
    patients = sample_sci_patients(n_development, n_prospective, seed, second_rater_fraction, protocol, imaging_scale)
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
