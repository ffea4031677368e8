"""`cssci predict --patient-dir DIR`: one patient scored outside Dagster with the registered champions.

The same steps as the prospective run (QC, preprocessing, radiomics, ROI slices, embeddings, champion
scoring), on the folder of one patient in the inbox layout (patient.csv/json + images + masks); nothing is
written to the warehouse. Grad-CAM overlays come from the fine-tuned networks, when the study has any.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cssci_platform.lib.cohort import Cohort, load_cohort, validate_row
from cssci_platform.lib.deep import InferenceSettings, load_backbone, load_fine_tuned
from cssci_platform.lib.deep.cohort_networks import TrainedChannel, embedding_frame, write_grad_cams
from cssci_platform.defs.embeddings.config import RoiSlicesConfig
from cssci_platform.lib.deep.patient_slices import SliceRequest, cut_patient_slices, masked_pairs
from cssci_platform.lib.feature_extraction import extract_patient_features
from cssci_platform.lib.imaging import GeometryTolerance
from cssci_platform.lib.inbox import ROW_FILES, read_arrival_row
from cssci_platform.lib.model_tracking import TrackingConfig, load_champion
from cssci_platform.lib.preprocessing import PreprocessingSettings, preprocess_patient
from cssci_platform.lib.quality import inspect_patient
from cssci_platform.lib.scoring import ChampionScore, patient_feature_row, score, weights_spec
from cssci_platform.lib.warehouse import table_frame


class PredictionError(Exception):
    """The patient cannot be scored; the message says why and how to fix it."""


@dataclass
class PatientPrediction:
    patient_key: str
    scores: list[tuple[ChampionScore, str, str]]  # score, registered model, version
    gradcams: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def predict_patient_dir(folder: Path, manifest: Path, warehouse: Path, tracking: TrackingConfig, out: Path,
                        slices: RoiSlicesConfig | None = None) -> PatientPrediction:
    """`slices`: the roi_slices settings the study ran with (the experiment's deep.slice); default: the asset's
    defaults, which take the sequence, ROI and plane from the manifest."""
    cohort = load_cohort(manifest)
    record = _record(folder, cohort)
    local = dataclasses.replace(cohort, data_root=folder.resolve())
    inspection = inspect_patient(local, record, GeometryTolerance())
    if not inspection.passed:
        raise PredictionError("; ".join(f"{i.code}: {i.message} (fix: {i.fix})" for i in inspection.issues if i.severity == "error"))
    result = preprocess_patient(inspection.scans, local.resolve, out / "store", PreprocessingSettings())
    channels = pl.DataFrame([vars(c) for c in result.channels])
    masks = pl.DataFrame([vars(m) for m in result.masks])
    radiomics = extract_patient_features(record.patient_key, channels, masks, "default")
    if radiomics.issues:
        raise PredictionError("; ".join(i.message for i in radiomics.issues))
    request = (slices or RoiSlicesConfig()).request(cohort.spec, masked_pairs(cohort))
    slices = _slices(record, channels, masks, request, out)
    embeddings = _embeddings(warehouse, slices, record)
    row = patient_feature_row(record, cohort.spec, radiomics.rows, embeddings)
    prediction = PatientPrediction(record.patient_key, _scores(warehouse, tracking, row, cohort))
    prediction.gradcams, prediction.notes = _gradcams(warehouse, slices, out / "gradcam")
    return prediction


def _record(folder: Path, cohort: Cohort):
    row_file = next((folder / n for n in ROW_FILES if (folder / n).is_file()), None)
    if row_file is None:
        raise PredictionError(f"{folder} has no {' or '.join(ROW_FILES)}: add the patient's row (manifest columns)")
    record, problems = validate_row(cohort.spec, {**read_arrival_row(row_file), "cohort": "prospective"})
    if problems or record is None:
        raise PredictionError(f"{row_file}: " + "; ".join(problems))
    return record


def _slices(record, channels: pl.DataFrame, masks: pl.DataFrame, request: SliceRequest, out: Path) -> pl.DataFrame:
    cut = cut_patient_slices(record.patient_key, channels, masks, request, out / "slices")
    if cut.issues:
        raise PredictionError("; ".join(f"{i.code}: {i.message} (fix: {i.fix})" for i in cut.issues))
    return pl.DataFrame(cut.rows).with_columns(center=pl.lit(record.center))


def _embeddings(warehouse: Path, slices: pl.DataFrame, record) -> pl.DataFrame:
    used = table_frame(warehouse, "SELECT DISTINCT backbone, weights_id FROM embeddings WHERE network = 'pretrained'")
    frames = [embedding_frame(slices, load_backbone(b, weights_spec(w)), "pretrained", InferenceSettings()) for b, w in used.iter_rows()]
    return pl.concat(frames) if frames else pl.DataFrame()


def _scores(warehouse: Path, tracking: TrackingConfig, row, cohort: Cohort) -> list[tuple[ChampionScore, str, str]]:
    champions = table_frame(warehouse, "SELECT signature, registered_model, threshold FROM trained_models WHERE champion")
    if champions.is_empty():
        raise PredictionError("no champion is registered: run `cssci demo` or the modeling_job first")
    variable = next(iter(cohort.spec.outcomes.values()))
    classes = list(variable.levels) if variable.levels else ["0", "1"]
    scores = []
    for signature, name, threshold in champions.iter_rows():
        pipeline, version = load_champion(tracking, name)
        scores.append((score(pipeline, row, signature, classes, threshold), name, version.version))
    return scores


def _gradcams(warehouse: Path, slices: pl.DataFrame, out: Path) -> tuple[list[Path], list[str]]:
    networks = table_frame(warehouse, "SELECT network_id, channel, checkpoint_path, classes FROM networks")
    if networks.is_empty():
        return [], ["no fine-tuned network in this study (fine_tuning_job), so no Grad-CAM"]
    written = []
    for network_id, channel, path, classes in networks.iter_rows():
        trained = TrainedChannel(load_fine_tuned(Path(path)), list(classes), 0)
        written += list(write_grad_cams(trained, slices.filter(pl.col("channel") == channel), out / network_id).values())
    return written, []
