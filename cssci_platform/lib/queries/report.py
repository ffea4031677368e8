"""Named reads for the report's figures: the training patients' rows of one fold, raw and ComBat-harmonized."""

from __future__ import annotations

import duckdb
import polars as pl

from cssci_platform.lib.queries.catalog import has_table
from cssci_platform.lib.queries.modeling import by_patient

# wide rows, sorted by patient after the read (see queries.modeling.FEATURE_MATRIX)
TRAINING_FEATURE_ROWS = """
SELECT m.* FROM feature_matrix m JOIN splits s USING (patient_key)
WHERE s.split = ? AND s.fold = ? AND s.role = 'train'
"""
HARMONIZED_TRAINING_ROWS = """
SELECT h.* FROM harmonized_features h JOIN splits s USING (patient_key)
WHERE s.split = ? AND s.fold = ? AND s.role = 'train'
"""


def training_feature_rows(con: duckdb.DuckDBPyConnection, split: str, fold: str) -> pl.DataFrame:
    """The feature matrix rows (patient_key, center, cohort, label, rad__/dl__/clin__ columns) of the training
    patients of one fold of a stored split: what that fold's models were fitted on."""
    return by_patient(con.execute(TRAINING_FEATURE_ROWS, [split, fold]).pl())


def harmonized_training_rows(con: duckdb.DuckDBPyConnection, split: str, fold: str) -> pl.DataFrame | None:
    """The `harmonized_features` rows (patient_key, center, cohort, label, harmonized columns) of the training
    patients of one fold; None when harmonized_features was never materialized."""
    if not has_table(con, "harmonized_features"):
        return None
    return by_patient(con.execute(HARMONIZED_TRAINING_ROWS, [split, fold]).pl())
