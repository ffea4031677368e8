"""What a study stage after the patients was computed from, as one digest: a second `cssci run` of the same study
reuses a stage whose last run had the same inputs instead of running it again.

A stage's inputs are (1) the study settings it reads, (2) the patient-level source rows in the warehouse (the
manifest's tables, recorded follow-up outcomes and everything the patient steps wrote), (3) the runs of the stages
before it in the same command (a re-run upstream stage makes every later stage stale) and (4) its own run config.
Every stage after the patients is a deterministic function of these (seeds are settings), so equal digests mean
equal results. Timestamp columns are left out: rewriting a row with the same content is no change.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import duckdb

from cssci_platform.lib.deep.patient_slices import STAGE as SLICE_STAGE
from cssci_platform.lib.queries.catalog import table_columns

PATIENT_QC_STAGES = ("manifest", "scans", "preprocess", "radiomics", SLICE_STAGE)  # written before any later stage
# table -> the rows of it that are source data of the stages after the patients (None: all)
SOURCE_ROWS: dict[str, str | None] = {
    "patients": None, "clinical": None, "outcomes": None, "recorded_outcomes": None, "scans": None,
    "preprocessed_channels": None, "preprocessed_masks": None, "radiomics_features": None, "roi_slices": None,
    "qc_issues": "list_contains(" + repr(list(PATIENT_QC_STAGES)) + ", stage)",
}


def source_rows(derived_outcomes: Sequence[str] = ()) -> dict[str, str | None]:
    """SOURCE_ROWS without the outcomes the study derives (`outcome_rules.derived_outcome_names`): they are
    written after the digest is taken (by the modelling stage), and are a function of the source outcomes and the
    settings, which are inputs already."""
    if not derived_outcomes:
        return SOURCE_ROWS
    return {**SOURCE_ROWS, "outcomes": "NOT list_contains(" + repr(list(derived_outcomes)) + ", outcome)"}


def source_digest(con: duckdb.DuckDBPyConnection, tables: Mapping[str, str | None] = SOURCE_ROWS) -> str:
    """A digest of the content of `tables` (row order does not matter; timestamps are left out)."""
    parts = [f"{table}:{_table_content(con, table, condition)}" for table, condition in sorted(tables.items())]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _table_content(con: duckdb.DuckDBPyConnection, table: str, condition: str | None) -> str:
    columns = [name for name, kind in table_columns(con, table) if not kind.startswith("TIMESTAMP")]
    if not columns:
        return "absent"
    row_hash = "hash(" + ", ".join(f'"{name}"' for name in columns) + ")"
    where = f" WHERE {condition}" if condition else ""
    found = con.execute(f"SELECT count(*) || '/' || coalesce(sum({row_hash}), 0) FROM {table}{where}").fetchone()
    return str(found[0]) if found else "absent"


def stage_digest(job_name: str, run_config: Mapping | None, settings: Mapping, source: str,
                 upstream_runs: Sequence[str]) -> str:
    """The digest of one stage's inputs: its job, run config, study settings, source rows and upstream runs."""
    document = {"job": job_name, "run_config": run_config or {}, "settings": settings, "source": source,
                "upstream_runs": list(upstream_runs)}
    return hashlib.sha256(json.dumps(document, sort_keys=True, default=str).encode()).hexdigest()
