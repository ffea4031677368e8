"""Cohort-level feature tables: ICC reliability, the wide feature matrix and its harmonized view."""

import dagster as dg
import pandas as pd
import polars as pl

from cssci_platform.defs.embeddings.assets import center_embeddings
from cssci_platform.defs.features.assets import radiomics_features
from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.outcomes.assets import study_outcome
from cssci_platform.defs.splits.assets import checked_outcome, patient_splits, study_fold_roles
from cssci_platform.lib.harmonization import HARMONIZATION_OFF
from cssci_platform.lib.harmonization.frame import center_mean_spread
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
from cssci_platform.lib.selection import icc, ratings_from_long
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
    with warehouse.connect() as con:
        rows = queries.repeat_segmentation_features(con).to_pandas()
    if rows["patient_key"].nunique() < 2:
        with warehouse.connect() as con:
            write_wide_table(
                con,
                "feature_reliability",
                pd.DataFrame(
                    {
                        "kind": pd.Series(dtype=str),
                        "feature": pd.Series(dtype=str),
                        "icc": pd.Series(dtype=float),
                        "ci_low": pd.Series(dtype=float),
                        "ci_high": pd.Series(dtype=float),
                    }
                ),
            )
        return dg.MaterializeResult(
            metadata={
                "patients_with_repeats": int(rows["patient_key"].nunique()),
                "features": 0,
                "note": "ICC needs repeat segmentations (mask__<sequence>__<roi>__<rater> "
                "columns) of at least 2 patients; the ICC filter is unavailable",
            }
        )
    pairs = rows[rows["feature"].isin(rows.loc[rows["segmentation"] != "primary", "feature"])]
    complete = (
        pairs.groupby(["patient_key", "feature"])["segmentation"].transform("nunique")
        == pairs["segmentation"].nunique()
    )
    ratings = ratings_from_long(pairs[complete], "patient_key", "segmentation", "feature", "value")
    table = pd.concat(
        {kind: icc(ratings, kind=kind)[["icc", "ci_low", "ci_high"]] for kind in ("ICC3", "ICC2")}, names=["kind"]
    )
    table = table.reset_index().rename(columns={"level_1": "feature"})
    with warehouse.connect() as con:
        write_wide_table(con, "feature_reliability", table)
    icc3 = table[table["kind"] == "ICC3"]["icc"]
    return dg.MaterializeResult(
        metadata={
            "patients_with_repeats": int(pairs["patient_key"].nunique()),
            "features": int(icc3.size),
            "icc3_at_least_0_75": int((icc3 >= 0.75).sum()),
            "icc3_median": float(icc3.median()),
        }
    )


@dg.asset(group_name="modeling", kinds={"duckdb", "pandas"}, deps=[feature_matrix, patient_splits])
def harmonized_features(study: StudyResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """ComBat fitted on the training patients only, applied to everyone: the harmonized feature table to inspect
    (models re-fit ComBat inside their own pipelines, on their own training folds)."""
    config = study.config()
    settings = config.harmonization
    with warehouse.connect() as con:
        matrix = queries.stored_feature_matrix(con).to_pandas().set_index("patient_key")
    roles = study_fold_roles(warehouse, config).reindex(matrix.index)
    columns = [
        c
        for c in feature_columns(matrix, RAD) + feature_columns(matrix, DL)
        if matrix.loc[roles == "train", c].nunique() > 1
    ]
    if not settings.enabled or not columns:
        with warehouse.connect() as con:
            write_wide_table(con, "harmonized_features", matrix[["center", "cohort", "label", *columns]].reset_index())
        why = (
            "off (config harmonization.enabled: false)"
            if not settings.enabled
            else "no feature varies among training patients"
        )
        return dg.MaterializeResult(metadata={"features": len(columns), "harmonization": why})
    combat = settings.combat("center", columns, unseen_center_policy="none").set_output(transform="pandas")
    try:
        combat.fit(matrix.loc[roles == "train", [*columns, "center"]])
    except ValueError as error:
        raise dg.Failure(f"{error} (or turn harmonization off: {HARMONIZATION_OFF})") from None
    output = pd.concat([matrix[["center", "cohort", "label"]], combat.transform(matrix[[*columns, "center"]])], axis=1)
    with warehouse.connect() as con:
        write_wide_table(con, "harmonized_features", output.reset_index())
    return dg.MaterializeResult(
        metadata={
            "features": len(columns),
            "centers": ", ".join(map(str, combat.batches_)),
            "harmonized_features": len(combat.harmonized_cols_) if combat.standardization_ is not None else 0,
            "passed_through_unharmonized": len(combat.unharmonized_cols_),
            "decisions": dg.MetadataValue.md("\n".join(f"- {d}" for d in combat.decisions_) or "none"),
            "center_mean_spread_before": center_mean_spread(matrix, columns),
            "center_mean_spread_after": center_mean_spread(output, columns),
        }
    )
