from pathlib import Path

import dagster as dg
import polars as pl

from cssci_platform.defs.ingest.assets import patient_scans
from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.defs.qc import issues_markdown, quarantine_guard, record_issues
from cssci_platform.lib.feature_extraction import extract_patient_features, radiomics_inputs
from cssci_platform.lib.feature_store import FeatureStore
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.preprocessing import preprocess_patient
from cssci_platform.lib.quality import ScanInfo, resampled_mask_issues
from cssci_platform.lib.queries import patients as queries
from cssci_platform.lib.warehouse import replace_patient_radiomics, replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.patient import PatientResources, PatientStepResult
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset(
    group_name="features",
    partitions_def=patients_partitions,
    deps=[patient_scans],
    kinds={"simpleitk", "duckdb"},
)
def preprocessed_channels(context: dg.AssetExecutionContext, study: StudyResource, cohort: CohortResource,
                          warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """Per sequence: resampled to isotropic spacing, normalized to [0, 1], one NIfTI per filter channel."""
    resources = PatientResources(study, cohort, warehouse, image_store)
    return dg.MaterializeResult(metadata=preprocess_patient_channels(resources, context.partition_key).metadata)


def preprocess_patient_channels(resources: PatientResources, key: str) -> PatientStepResult:
    """`preprocessed_channels` of one patient: channel and mask files, their rows, preprocess QC issues."""
    study, cohort, warehouse, image_store = resources
    with warehouse.reading() as con:
        quarantine_guard(con, key, ("manifest", "scans"))
        scans = [ScanInfo(**_scan_fields(row)) for row in queries.patient_scans(con, key).iter_rows(named=True)]
    manifest, _ = cohort.patient(key)
    features = image_store.features(Path(cohort.manifest_path))
    result = preprocess_patient(scans, manifest.resolve, features.folder("channels"), study.config().preprocessing)
    issues = resampled_mask_issues(key, result.masks)
    with warehouse.connect() as con:
        replace_rows(con, "preprocessed_channels", {"patient_key": key}, [vars(c) for c in result.channels])
        replace_rows(con, "preprocessed_masks", {"patient_key": key}, [vars(m) for m in result.masks])
        record_issues(con, key, "preprocess", issues)
    files = len(result.channels) + len(result.masks)
    return PatientStepResult({"channel_files": len(result.channels), "mask_files": len(result.masks),
            "computed_files": result.computed_files, "reused_from_cache": files - result.computed_files,
            "features": _reuse(files - result.computed_files, files),
            "store": dg.MetadataValue.path(str(features.folder("channels") / key)),
            "issues": dg.MetadataValue.md(issues_markdown(issues))}, issues)


def _reuse(reused: int, total: int) -> str:
    """'reused' (every file or extraction read from the cohort's feature store), 'computed', or how many of each."""
    if total == 0:
        return "none"
    if reused == total:
        return "reused"
    return "computed" if reused == 0 else f"computed {total - reused}, reused {reused}"


def _scan_fields(row: dict) -> dict:
    return {**row, **{k: tuple(row[k]) for k in ("size", "spacing", "origin", "direction")}}


@dg.asset(
    group_name="features",
    partitions_def=patients_partitions,
    deps=[preprocessed_channels],
    kinds={"pyradiomics", "duckdb"},
)
def radiomics_features(context: dg.AssetExecutionContext, study: StudyResource, cohort: CohortResource,
                       warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """PyRadiomics features per sequence x ROI x segmentation x channel, long in `radiomics_features`."""
    resources = PatientResources(study, cohort, warehouse, image_store)
    return dg.MaterializeResult(metadata=extract_patient_radiomics(resources, context.partition_key).metadata)


def extract_patient_radiomics(resources: PatientResources, key: str) -> PatientStepResult:
    """`radiomics_features` of one patient: its feature rows (from the feature store where computed before) and
    radiomics QC issues."""
    study, cohort, warehouse, image_store = resources
    settings = study.config()
    with warehouse.reading() as con:
        quarantine_guard(con, key, ("manifest", "scans", "preprocess"))
        stored = queries.preprocessed_channels(con, key), queries.preprocessed_masks(con, key)
    channels, masks = radiomics_inputs(*stored, settings.imaging, settings.preprocessing.channels)
    store = image_store.features(Path(cohort.manifest_path))
    extraction = extract_patient_features(key, channels, masks, settings.radiomics.params,
                                          FeatureStore(store.folder("radiomics")))
    with warehouse.connect() as con:
        feature_columns = replace_patient_radiomics(con, key, extraction.rows)
        record_issues(con, key, "radiomics", extraction.issues)
    metadata = {"extractions": extraction.extractions, "computed_extractions": extraction.computed,
                "reused_extractions": extraction.reused, "features": _reuse(extraction.reused, extraction.extractions),
                "feature_store": dg.MetadataValue.path(str(store.root)),
                "features_per_extraction": extraction.features_per_extraction,
                "feature_values": extraction.rows.height, "params": settings.radiomics.params,
                "params_hash": extraction.params_hash,
                "extractor": extraction.extractor_version, "wide_view_columns": feature_columns,
                "preview": dg.MetadataValue.md(_preview(extraction.rows)),
                "issues": dg.MetadataValue.md(issues_markdown(extraction.issues))}
    return PatientStepResult(metadata, list(extraction.issues))


def _preview(rows: pl.DataFrame) -> str:
    if rows.is_empty():
        return "no features"
    sample = rows.filter(pl.col("channel") == "original").head(8).select("sequence", "roi", "feature", "value")
    rows_shown = [(sequence, roi, feature, f"{value:.5g}") for sequence, roi, feature, value in sample.iter_rows()]
    return markdown_table(["sequence", "roi", "feature", "value"], rows_shown)
