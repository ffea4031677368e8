"""`cssci predict --patient-dir DIR`: one patient scored outside Dagster with the registered champions.

The patient stage runs on the folder of one patient in the inbox layout (patient.csv/json + images + masks) with the
study's own settings (the home's `experiment.yaml`), then the patient is scored by the same recipe as the prospective
run (`lib/patient_scoring`); nothing is written to the warehouse. Grad-CAM overlays come from the fine-tuned
networks, when the study has any.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from cssci_platform.lib import warehouse as store
from cssci_platform.lib.cohort import Cohort, PatientRecord, load_cohort, validate_row
from cssci_platform.lib.deep import load_fine_tuned
from cssci_platform.lib.deep.cohort_networks import TrainedChannel, write_grad_cams
from cssci_platform.lib.inbox import ROW_FILES, read_arrival_row
from cssci_platform.lib.model_tracking import TrackingConfig
from cssci_platform.lib.patient_scoring import ScoringError, rows_from_folder, score_patient, study_champions
from cssci_platform.lib.queries import prospective as queries
from cssci_platform.lib.queries.modeling import modelled_outcome
from cssci_platform.lib.scoring import ChampionScore
from cssci_platform.lib.study_config import StudyConfig

PredictionError = ScoringError  # the patient cannot be scored; the message says why and how to fix it


@dataclass
class PatientPrediction:
    patient_key: str
    scores: list[tuple[ChampionScore, str, str]]  # score, registered model, version
    gradcams: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def predict_patient_dir(
    folder: Path, config: StudyConfig, manifest: Path, warehouse: Path, tracking_uri: str, out: Path
) -> PatientPrediction:
    """Score the patient in `folder` with the champions of the study `config` (its MLflow experiment `config.name`
    in the store at `tracking_uri`), its patient stage run with the study's settings; derived files under `out`."""
    cohort = load_cohort(manifest)
    record = _record(folder, cohort)
    with store.connect(warehouse, read_only=True) as con:
        champions, outcome, networks = study_champions(con), modelled_outcome(con), queries.fine_tuned_networks(con)
    rows = dataclasses.replace(
        rows_from_folder(record, dataclasses.replace(cohort, data_root=folder.resolve()), config, out / "store"),
        networks=networks,
    )
    scores = score_patient(
        record, cohort.spec, config, rows, champions, outcome, TrackingConfig(tracking_uri, config.name)
    )
    prediction = PatientPrediction(
        record.patient_key, [(r.score, r.registered_model, r.version) for r in scores.results]
    )
    slices = rows.slices.with_columns(center=pl.lit(record.center))
    prediction.gradcams, prediction.notes = _gradcams(networks, slices, out / "gradcam")
    return prediction


def _record(folder: Path, cohort: Cohort) -> PatientRecord:
    row_file = next((folder / n for n in ROW_FILES if (folder / n).is_file()), None)
    if row_file is None:
        raise PredictionError(f"{folder} has no {' or '.join(ROW_FILES)}: add the patient's row (manifest columns)")
    record, problems = validate_row(cohort.spec, {**read_arrival_row(row_file), "cohort": "prospective"})
    if problems or record is None:
        raise PredictionError(f"{row_file}: " + "; ".join(problems))
    return record


def _gradcams(networks: pl.DataFrame, slices: pl.DataFrame, out: Path) -> tuple[list[Path], list[str]]:
    if networks.is_empty():
        return [], ["no fine-tuned network in this study (fine_tuning_job), so no Grad-CAM"]
    written = []
    for network_id, channel, path, classes in networks.select(
        "network_id", "channel", "checkpoint_path", "classes"
    ).iter_rows():
        trained = TrainedChannel(load_fine_tuned(Path(path)), list(classes), 0)
        written += list(
            write_grad_cams(trained, slices.filter(pl.col("channel") == channel), out / network_id).values()
        )
    return written, []
