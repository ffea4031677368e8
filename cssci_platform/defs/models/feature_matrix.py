"""Cohort-level feature tables: ICC reliability, the wide feature matrix and its harmonized view."""

import dagster as dg
import polars as pl

from cssci_platform.defs.embeddings.assets import center_embeddings
from cssci_platform.defs.features.assets import radiomics_features
from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.outcomes.assets import study_outcome
from cssci_platform.defs.splits.assets import checked_outcome, patient_splits, study_fold_roles
from cssci_platform.lib.modeling.matrix import (
    CLIN,
    DL,
    RAD,
    assemble,
    clinical_block,
    clinical_predictors,
    embeddings_block,
    feature_columns,
    missing_patients,
    radiomics_block,
)
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.lib.warehouse import write_wide_table
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource

ALL_PATIENTS = dg.AllPartitionMapping()


@dg.asset(
    group_name="modeling",
    kinds={"duckdb", "pandas"},
    deps=[
        cohort_manifest,
        study_outcome,
        dg.AssetDep(radiomics_features, partition_mapping=ALL_PATIENTS),
        dg.AssetDep(center_embeddings, partition_mapping=dg.AllPartitionMapping()),
    ],
)
def feature_matrix(study: StudyResource, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per patient who passed QC: rad__, dl__ and clin__ columns plus center, cohort and label."""
    config, spec = study.config(), cohort.load().spec
    outcome = checked_outcome(cohort, warehouse, config)
    try:
        clinical = clinical_predictors(spec, config.models.clinical_predictors)
    except ValueError as error:
        raise dg.Failure(str(error)) from None
    with warehouse.connect() as con:
        patients, labels = queries.matrix_patients(con), queries.outcome_values(con, outcome).rename({"value": "label"})
        embeddings = queries.network_embeddings(con, config.deep.embedding_network)
        embeddings = embeddings.filter(pl.col("backbone").is_in(list(config.deep.backbones)))
        blocks = [
            radiomics_block(queries.matrix_radiomics(con)),
            *([embeddings_block(embeddings)] if embeddings.height else []),
            clinical_block(queries.clinical_rows(con), clinical),
        ]
    matrix = assemble(patients, labels, blocks)
    with warehouse.connect() as con:
        write_wide_table(con, "feature_matrix", matrix.reset_index())
    left_out = missing_patients(patients, matrix)
    return dg.MaterializeResult(
        metadata={
            "patients": len(matrix),
            "outcome": outcome,
            "radiomics_columns": len(feature_columns(matrix, RAD)),
            "deep_columns": len(feature_columns(matrix, DL)),
            "clinical_columns": len(feature_columns(matrix, CLIN)),
            "backbones": ", ".join(sorted(set(embeddings["backbone"]))) if embeddings.height else "none",
            "left_out_incomplete_features": ", ".join(left_out) or "none",
        }
    )


@dg.asset(
    group_name="modeling",
    kinds={"duckdb", "pingouin"},
    deps=[dg.AssetDep(radiomics_features, partition_mapping=ALL_PATIENTS)],
)
def feature_reliability(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """ICC(3,1) and ICC(2,1) of every radiomics feature between repeat segmentations (no labels involved)."""
    from cssci_platform.lib.selection import reliability_table

    with warehouse.connect() as con:
        rows = queries.repeat_segmentation_features(con).to_pandas()
    table, summary = reliability_table(rows)
    with warehouse.connect() as con:
        write_wide_table(con, "feature_reliability", table)
    return dg.MaterializeResult(metadata=summary)


@dg.asset(group_name="modeling", kinds={"duckdb", "pandas"}, deps=[feature_matrix, patient_splits])
def harmonized_features(study: StudyResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """ComBat fitted on the training patients only, applied to everyone: the harmonized feature table to inspect
    (models re-fit ComBat inside their own pipelines, on their own training folds)."""
    from cssci_platform.lib.harmonization.study_table import harmonized_table

    config = study.config()
    with warehouse.connect() as con:
        matrix = queries.stored_feature_matrix(con).to_pandas().set_index("patient_key")
    roles = study_fold_roles(warehouse, config).reindex(matrix.index)
    try:
        table, summary = harmonized_table(matrix, roles, config.harmonization)
    except ValueError as error:
        raise dg.Failure(str(error)) from None
    with warehouse.connect() as con:
        write_wide_table(con, "harmonized_features", table.reset_index())
    if summary.skipped_because is not None:
        return dg.MaterializeResult(metadata={"features": summary.features, "harmonization": summary.skipped_because})
    return dg.MaterializeResult(
        metadata={
            "features": summary.features,
            "centers": ", ".join(summary.centers),
            "harmonized_features": summary.harmonized_features,
            "passed_through_unharmonized": summary.passed_through_unharmonized,
            "decisions": dg.MetadataValue.md("\n".join(f"- {d}" for d in summary.decisions) or "none"),
            "center_mean_spread_before": summary.center_mean_spread_before,
            "center_mean_spread_after": summary.center_mean_spread_after,
        }
    )
