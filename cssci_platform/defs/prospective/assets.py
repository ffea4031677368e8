"""Prospective operations: score one new patient with the champions; record follow-up outcomes; validation."""

from datetime import datetime
from pathlib import Path

import dagster as dg
import polars as pl

from cssci_platform.defs.embeddings.assets import roi_slices
from cssci_platform.defs.features.assets import radiomics_features
from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.defs.qc import quarantine_guard
from cssci_platform.lib.deep import InferenceSettings, load_backbone
from cssci_platform.lib.deep.cohort_networks import embedding_frame
from cssci_platform.lib.cohort_tables import apply_followup_file
from cssci_platform.lib.inbox import file_digest, read_followup
from cssci_platform.lib.model_tracking import load_champion
from cssci_platform.lib.scoring import as_rows, missing_columns, patient_feature_row, score, weights_spec
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

PATIENT_STAGES = ("manifest", "scans", "preprocess", "radiomics", "roi_slices")


class ScoringConfig(dg.Config):
    experiment: str = "demo"


@dg.asset(group_name="prospective", partitions_def=patients_partitions, kinds={"mlflow", "duckdb"},
          deps=[radiomics_features, roi_slices, dg.AssetKey("trained_models")])
def prospective_predictions(context: dg.AssetExecutionContext, config: ScoringConfig, cohort: CohortResource,
                            warehouse: WarehouseResource, tracking: TrackingResource) -> dg.MaterializeResult:
    """This patient's probabilities from each signature's `champion` (MLflow registry, by name and alias)."""
    key = context.partition_key
    quarantine_guard(warehouse, key, PATIENT_STAGES)
    manifest, record = cohort.patient(key)
    champions = warehouse.frame("SELECT signature, registered_model, threshold FROM trained_models WHERE champion")
    if champions.is_empty():
        raise dg.Failure("no champion model is registered yet: materialize trained_models (modeling_job) first")
    row = patient_feature_row(record, manifest.spec, warehouse.frame(
        "SELECT * FROM radiomics_features WHERE patient_key = ?", [key]), _embed_patient(warehouse, key, record.center))
    variable = next(iter(manifest.spec.outcomes.values()))
    classes = list(variable.levels) if variable.levels else ["0", "1"]
    rows, now = [], datetime.now()
    for signature, name, threshold in champions.iter_rows():
        pipeline, version = load_champion(tracking.config(config.experiment), name)
        if missing := missing_columns(pipeline, row):
            raise dg.Failure(f"patient '{key}' lacks {len(missing)} feature(s) the {signature} champion uses, e.g. "
                             f"{missing[:3]}: process the same sequences, ROIs, channels and backbones as the study")
        for item in as_rows([score(pipeline, row, signature, classes, threshold)]):
            rows.append({"patient_key": key, "center": record.center, **item, "registered_model": name,
                         "model_version": version.version, "run_id": version.run_id, "predicted_at": now})
    with warehouse.connect() as con:
        replace_rows(con, "prospective_predictions", {"patient_key": key}, rows)
    table = pl.DataFrame(rows).filter(pl.col("class_label") == classes[-1])
    return dg.MaterializeResult(metadata={
        "predictions": dg.MetadataValue.md("\n".join(
            [f"| signature | P({classes[-1]}) | risk group | model version |", "|---|---|---|---|"] +
            [f"| {r['signature']} | {r['probability']:.3f} | {r['risk_group']} | {r['registered_model']} v{r['model_version']} |"
             for r in table.iter_rows(named=True)])),
    })


def _embed_patient(warehouse: WarehouseResource, key: str, center: str) -> pl.DataFrame:
    """The patient's slices embedded with every backbone the study used (same weights, pretrained network)."""
    used = warehouse.frame("SELECT DISTINCT backbone, weights_id FROM embeddings WHERE network = 'pretrained' "
                           "AND patient_key <> ?", [key])
    slices = warehouse.frame("SELECT *, ? AS center FROM roi_slices WHERE patient_key = ?", [center, key])
    frames = []
    for backbone, weights_id in used.iter_rows():
        frame = embedding_frame(slices, load_backbone(backbone, weights_spec(weights_id)), "pretrained", InferenceSettings())
        frames.append(frame.with_columns(created_at=pl.lit(datetime.now())))
    with warehouse.connect() as con:
        for frame in frames:
            replace_rows(con, "embeddings", {"patient_key": key, "backbone": frame["backbone"][0], "network": "pretrained"}, frame)
    return pl.concat(frames) if frames else pl.DataFrame()


class FollowupConfig(dg.Config):
    file: str


@dg.asset(group_name="prospective", kinds={"duckdb"})
def followup_outcomes(config: FollowupConfig, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Outcomes from one follow-up file of the inbox, applied row by row and once per file content: valid rows are
    recorded with their provenance (`recorded_outcomes`), each bad row is rejected with its line and reason."""
    path = Path(config.file)
    manifest = cohort.load()
    sha256 = file_digest(path)
    rows, problems = read_followup(path, manifest)
    with warehouse.connect() as con:
        applied = apply_followup_file(con, manifest, path, sha256, rows, problems)
    return dg.MaterializeResult(metadata={
        "file": dg.MetadataValue.path(str(path)), "sha256": sha256, "already_applied": applied.already_applied,
        "recorded": applied.recorded, "rejected": dg.MetadataValue.md("\n".join(f"- {p}" for p in problems) or "none")})
