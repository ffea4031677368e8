"""Named reads of the study report beyond the modelling tables: which center and cohort each patient belongs to."""

from __future__ import annotations

import duckdb
import polars as pl

PATIENT_CENTERS = "SELECT patient_key, center, cohort FROM patients ORDER BY patient_key"


def patient_centers(con: duckdb.DuckDBPyConnection) -> pl.DataFrame:
    """patient_key, center, cohort (development / prospective) of every registered patient."""
    return con.execute(PATIENT_CENTERS).pl()
