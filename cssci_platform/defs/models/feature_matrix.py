"""Cohort-level feature tables: ICC reliability, the wide feature matrix and its harmonized view."""

import dagster as dg
import pandas as pd
import polars as pl

from cssci_platform.defs.embeddings.assets import center_embeddings
from cssci_platform.defs.features.assets import radiomics_features
from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.outcomes.assets import study_outcome
from cssci_platform.defs.splits.assets import patient_splits, split_roles, study_outcome_name
from cssci_platform.lib.modeling.matrix import (
    CLIN,
    DL,
    RAD,
    assemble,
    clinical_block,
    embeddings_block,
    feature_columns,
    missing_patients,
    radiomics_block,
)
from cssci_platform.lib.harmonization import HARMONIZATION_OFF, ComBat
from cssci_platform.lib.selection import icc, ratings_from_long
from cssci_platform.lib.warehouse import write_wide_table
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.warehouse import WarehouseResource

ALL_PATIENTS = dg.AllPartitionMapping()
HEALTHY = ("NOT EXISTS (SELECT 1 FROM qc_issues q WHERE q.patient_key = {alias}.patient_key "
           "AND q.severity = 'error')")


class FeatureMatrixConfig(dg.Config):
    outcome: str | None = None  # default: the manifest's first outcome
    backbones: list[str] | None = None  # default: every backbone with pretrained embeddings
    network: str = "pretrained"
    clinical_predictors: list[str] | None = None  # default: every clinical variable of the manifest


@dg.asset(group_name="modeling", kinds={"duckdb", "pandas"},
          deps=[cohort_manifest, study_outcome, dg.AssetDep(radiomics_features, partition_mapping=ALL_PATIENTS),
                dg.AssetDep(center_embeddings, partition_mapping=dg.AllPartitionMapping())])
def feature_matrix(config: FeatureMatrixConfig, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """One row per patient who passed QC: rad__, dl__ and clin__ columns plus center, cohort and label."""
    spec = cohort.load().spec
    outcome = study_outcome_name(cohort, warehouse, config.outcome)
    patients = warehouse.frame(f"SELECT patient_key, center, cohort FROM patients p WHERE {HEALTHY.format(alias='p')}")
    labels = warehouse.frame("SELECT patient_key, value AS label FROM outcomes WHERE outcome = ?", [outcome])
    blocks = [radiomics_block(warehouse.frame(f"SELECT * FROM radiomics_features r WHERE {HEALTHY.format(alias='r')}"))]
    embeddings = warehouse.frame("SELECT * FROM embeddings WHERE network = ?", [config.network])
    if config.backbones is not None:
        embeddings = embeddings.filter(pl.col("backbone").is_in(config.backbones))
    if embeddings.height:
        blocks.append(embeddings_block(embeddings))
    unknown = sorted(set(config.clinical_predictors or []) - set(spec.clinical))
    if unknown:
        raise dg.Failure(f"clinical_predictors {unknown} are not clinical variables of the manifest ({list(spec.clinical)})")
    clinical = {name: (v.type, v.levels) for name, v in spec.clinical.items()
                if config.clinical_predictors is None or name in config.clinical_predictors}
    blocks.append(clinical_block(warehouse.frame("SELECT * FROM clinical"), clinical))
    matrix = assemble(patients, labels, blocks)
    with warehouse.connect() as con:
        write_wide_table(con, "feature_matrix", matrix.reset_index())
    left_out = missing_patients(patients, matrix)
    return dg.MaterializeResult(metadata={
        "patients": len(matrix), "outcome": outcome, "radiomics_columns": len(feature_columns(matrix, RAD)),
        "deep_columns": len(feature_columns(matrix, DL)), "clinical_columns": len(feature_columns(matrix, CLIN)),
        "backbones": ", ".join(sorted(set(embeddings["backbone"]))) if embeddings.height else "none",
        "left_out_incomplete_features": ", ".join(left_out) or "none",
    })


@dg.asset(group_name="modeling", kinds={"duckdb", "pingouin"},
          deps=[dg.AssetDep(radiomics_features, partition_mapping=ALL_PATIENTS)])
def feature_reliability(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """ICC(3,1) and ICC(2,1) of every radiomics feature between repeat segmentations (no labels involved)."""
    rows = warehouse.frame(
        "SELECT patient_key, segmentation, 'rad__' || sequence || '__' || roi || '__' || channel || '__' || feature AS feature, "
        f"value FROM radiomics_features r WHERE {HEALTHY.format(alias='r')} AND patient_key IN "
        "(SELECT patient_key FROM radiomics_features WHERE segmentation <> 'primary')").to_pandas()
    if rows["patient_key"].nunique() < 2:
        with warehouse.connect() as con:
            write_wide_table(con, "feature_reliability", pd.DataFrame(
                {"kind": pd.Series(dtype=str), "feature": pd.Series(dtype=str), "icc": pd.Series(dtype=float),
                 "ci_low": pd.Series(dtype=float), "ci_high": pd.Series(dtype=float)}))
        return dg.MaterializeResult(metadata={"patients_with_repeats": int(rows["patient_key"].nunique()), "features": 0,
                                              "note": "ICC needs repeat segmentations (mask__<sequence>__<roi>__<rater> "
                                                      "columns) of at least 2 patients; the ICC filter is unavailable"})
    pairs = rows[rows["feature"].isin(rows.loc[rows["segmentation"] != "primary", "feature"])]
    complete = pairs.groupby(["patient_key", "feature"])["segmentation"].transform("nunique") == pairs["segmentation"].nunique()
    ratings = ratings_from_long(pairs[complete], "patient_key", "segmentation", "feature", "value")
    table = pd.concat({kind: icc(ratings, kind=kind)[["icc", "ci_low", "ci_high"]] for kind in ("ICC3", "ICC2")}, names=["kind"])
    table = table.reset_index().rename(columns={"level_1": "feature"})
    with warehouse.connect() as con:
        write_wide_table(con, "feature_reliability", table)
    icc3 = table[table["kind"] == "ICC3"]["icc"]
    return dg.MaterializeResult(metadata={
        "patients_with_repeats": int(pairs["patient_key"].nunique()), "features": int(icc3.size),
        "icc3_at_least_0_75": int((icc3 >= 0.75).sum()), "icc3_median": float(icc3.median()),
    })


class HarmonizationConfig(dg.Config):
    split: str | None = None
    fold: str = "holdout"
    enabled: bool = True  # false: the study does not harmonize; the table holds the unadjusted features
    small_center: str = "pool"  # centers under min_center_size training patients: pool | unseen | error
    min_center_size: int = 2
    unharmonized_classes: list[str] = ["shape"]  # radiomics feature classes passed through unharmonized


@dg.asset(group_name="modeling", kinds={"duckdb", "pandas"}, deps=[feature_matrix, patient_splits])
def harmonized_features(config: HarmonizationConfig, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """ComBat fitted on the training patients only, applied to everyone: the harmonized feature table to inspect
    (models re-fit ComBat inside their own pipelines, on their own training folds)."""
    matrix = warehouse.frame("SELECT * FROM feature_matrix").to_pandas().set_index("patient_key")
    roles = split_roles(warehouse, config.split, config.fold).reindex(matrix.index)
    columns = [c for c in feature_columns(matrix, RAD) + feature_columns(matrix, DL) if matrix.loc[roles == "train", c].nunique() > 1]
    if not config.enabled or not columns:
        with warehouse.connect() as con:
            write_wide_table(con, "harmonized_features", matrix[["center", "cohort", "label", *columns]].reset_index())
        why = "off (config harmonization.enabled: false)" if not config.enabled else "no feature varies among training patients"
        return dg.MaterializeResult(metadata={"features": len(columns), "harmonization": why})
    train = matrix.loc[roles == "train", [*columns, "center"]]
    combat = ComBat(batch_col="center", feature_cols=columns, unseen_center_policy="none", small_center=config.small_center,
                    min_center_size=config.min_center_size, unharmonized_classes=tuple(config.unharmonized_classes))
    try:
        combat.set_output(transform="pandas").fit(train)
    except ValueError as error:
        raise dg.Failure(f"{error} (or turn harmonization off: {HARMONIZATION_OFF})") from None
    harmonized = combat.transform(matrix[[*columns, "center"]])
    output = pd.concat([matrix[["center", "cohort", "label"]], harmonized], axis=1)
    with warehouse.connect() as con:
        write_wide_table(con, "harmonized_features", output.reset_index())
    spread = {"before": _center_spread(matrix, columns), "after": _center_spread(output, columns)}
    return dg.MaterializeResult(metadata={
        "features": len(columns), "centers": ", ".join(map(str, combat.batches_)),
        "harmonized_features": len(combat.harmonized_cols_) if combat.standardization_ is not None else 0,
        "passed_through_unharmonized": len(combat.unharmonized_cols_),
        "decisions": dg.MetadataValue.md("\n".join(f"- {d}" for d in combat.decisions_) or "none"),
        "center_mean_spread_before": spread["before"], "center_mean_spread_after": spread["after"],
    })


def _center_spread(frame: pd.DataFrame, columns: list[str]) -> float:
    """Median over features of the SD of per-center means, in units of the feature's overall SD."""
    values = frame[columns]
    scaled = (values - values.mean()) / values.std(ddof=0).replace(0, 1)
    return float(scaled.groupby(frame["center"]).mean().std(ddof=0).median())
