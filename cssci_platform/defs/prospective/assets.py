"""Prospective operations: score one new patient with the champions; record follow-up outcomes; validation."""

from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from cssci_platform.defs.embeddings.assets import roi_slices
from cssci_platform.defs.features.assets import radiomics_features
from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.defs.qc import quarantine_guard
from cssci_platform.lib.cohort_tables import apply_followup_file
from cssci_platform.lib.inbox import file_digest, read_followup
from cssci_platform.lib.patient_scoring import ScoringError, score_patient, stored_rows, study_champions
from cssci_platform.lib.queries.modeling import modelled_outcome
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

PATIENT_STAGES = ("manifest", "scans", "preprocess", "radiomics", "roi_slices")


@dg.asset(group_name="prospective", partitions_def=patients_partitions, kinds={"mlflow", "duckdb"},
          deps=[radiomics_features, roi_slices, dg.AssetKey("trained_models")])
def prospective_predictions(context: dg.AssetExecutionContext, study: StudyResource, cohort: CohortResource,
                            warehouse: WarehouseResource, tracking: TrackingResource) -> dg.MaterializeResult:
    """This patient's probabilities from each signature's `champion` (MLflow registry, by name and alias), scored from
    its stored patient-stage rows by the one recipe `cssci predict` uses too (`lib/patient_scoring`)."""
    return dg.MaterializeResult(metadata=score_prospective_patient(study, cohort, warehouse, tracking,
                                                                   context.partition_key))


def score_prospective_patient(study: StudyResource, cohort: CohortResource, warehouse: WarehouseResource,
                              tracking: TrackingResource, key: str) -> dict:
    """`prospective_predictions` of one patient: its champion scores (and embeddings computed for them) written;
    the metadata. Raises `dg.Failure` naming why the patient cannot be scored."""
    with warehouse.connect() as con:
        quarantine_guard(con, key, PATIENT_STAGES)
        rows, champions, outcome = stored_rows(con, key), study_champions(con), modelled_outcome(con)
    manifest, record = cohort.patient(key)
    config = study.config()
    try:
        scores = score_patient(record, manifest.spec, config, rows, champions, outcome, tracking.config(config.name))
    except ScoringError as error:
        raise dg.Failure(str(error)) from error
    now = datetime.now()
    with warehouse.connect() as con:
        for frame in scores.new_embeddings.partition_by("backbone") if scores.new_embeddings.height else []:
            where = {"patient_key": key, "backbone": frame["backbone"][0], "network": frame["network"][0]}
            replace_rows(con, "embeddings", where, frame.with_columns(created_at=pl.lit(now)))
        predictions = scores.prediction_rows(key, record.center, now)
        replace_rows(con, "prospective_predictions", {"patient_key": key}, predictions)
    embedded = sorted(set(scores.new_embeddings["backbone"])) if scores.new_embeddings.height else []
    return {"predictions": dg.MetadataValue.md(scores.markdown()),
            "embedded_here": ", ".join(embedded) or "none (stored embeddings)"}


class FollowupConfig(dg.Config):
    file: str


@dg.asset(group_name="outcomes", kinds={"duckdb"})
def followup_outcomes(
    config: FollowupConfig, cohort: CohortResource, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Outcomes from one follow-up file of the inbox, applied row by row and once per file content: valid rows are
    recorded with their provenance (`recorded_outcomes`), each bad row is rejected with its line and reason."""
    path = Path(config.file)
    manifest = cohort.load()
    sha256 = file_digest(path)
    rows, problems = read_followup(path, manifest)
    with warehouse.connect() as con:
        applied = apply_followup_file(con, manifest, path, sha256, rows, problems)
    return dg.MaterializeResult(
        metadata={
            "file": dg.MetadataValue.path(str(path)),
            "sha256": sha256,
            "already_applied": applied.already_applied,
            "recorded": applied.recorded,
            "rejected": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none"),
        }
    )
