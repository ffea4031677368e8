"""patient_splits: train / test / validation roles per patient, for the study's split preset and outcome."""

from datetime import datetime
from typing import TYPE_CHECKING

import dagster as dg
import polars as pl

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.outcomes.assets import study_outcome
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.lib.splits import assign_splits, role_counts_table
from cssci_platform.lib.study_config import StudyConfig
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource

if TYPE_CHECKING:
    import pandas as pd


@dg.asset(group_name="splits", deps=[cohort_manifest, study_outcome], kinds={"duckdb", "scikitlearn"})
def patient_splits(study: StudyResource, cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Train / test / validation roles per patient (stratified, seeded); prospective patients are validation."""
    config = study.config()
    outcome = checked_outcome(cohort, warehouse, config)
    spec = config.split.spec()
    with warehouse.connect() as con:
        patients = queries.split_candidates(con, outcome)
    splits = assign_splits(patients, spec).with_columns(
        outcome=pl.lit(outcome), seed=pl.lit(spec.seed), created_at=pl.lit(datetime.now())
    )
    with warehouse.connect() as con:
        replace_rows(con, "splits", {"split": spec.name}, splits)
    return dg.MaterializeResult(
        metadata={
            "split": spec.name,
            "outcome": outcome,
            "folds": splits["fold"].n_unique(),
            "roles": dg.MetadataValue.md(role_counts_table(splits)),
        }
    )


def study_split_folds(warehouse: WarehouseResource, config: StudyConfig) -> "tuple[str, dict[str, pd.Series]]":
    """The study's stored split and, per fold models train on (`split.folds`), patient_key -> role (a Series named
    by the split)."""
    split = config.split.stored_name
    with warehouse.connect() as con:
        stored = queries.split_folds(con, split)
        if not stored:
            raise dg.Failure(
                f"split '{split}' is not stored (the splits table holds {queries.stored_splits(con) or 'none'}); "
                "materialize patient_splits"
            )
        folds = config.split.trained_folds(stored)
        return split, {fold: _roles(con, split, fold, stored) for fold in folds}


def study_fold_roles(warehouse: WarehouseResource, config: StudyConfig) -> "pd.Series":
    """patient_key -> role in the first fold of the study's split (the fold of fold-specific tables)."""
    split = config.split.stored_name
    with warehouse.connect() as con:
        return _roles(con, split, config.split.first_fold, queries.split_folds(con, split))


def _roles(con, split: str, fold: str, stored: list[str]) -> "pd.Series":
    import pandas as pd

    roles = queries.split_roles(con, split, fold)
    if not roles:
        raise dg.Failure(
            f"split '{split}' has no fold '{fold}'; its folds are {stored[:20] or 'none: materialize patient_splits'}"
        )
    return pd.Series(roles, name=split)


def checked_outcome(cohort: CohortResource, warehouse: WarehouseResource, config: StudyConfig) -> str:
    """The study's outcome (`outcome.name`), once it exists: declared in the manifest or derived by study_outcome."""
    declared = list(cohort.load().spec.outcomes)
    outcome = config.outcome.name
    with warehouse.connect() as con:
        derived = set(queries.outcome_names(con)) - set(declared)
    if outcome not in declared and outcome not in derived:
        raise dg.Failure(
            f"outcome '{outcome}' is neither declared in the manifest ({declared}) nor derived by study_outcome "
            f"({sorted(derived) or 'none yet'}); materialize study_outcome with this name or fix the config"
        )
    return outcome
