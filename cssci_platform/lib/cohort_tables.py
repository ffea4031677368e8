"""The manifest's tables in the warehouse (`patients`, `clinical`, `outcomes`) and the outcomes recorded from
follow-up files, which are source data: they live in `recorded_outcomes` with their provenance (file, its
SHA-256, line, time) and are laid over the manifest's values every time `outcomes` is written, so no
re-materialization of the manifest can drop them.

Precedence: for a patient and outcome, the value of the most recently applied follow-up file wins over the
manifest's value (a follow-up is newer information); a file is applied once per content, so re-running an
old file never overrides a later one.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import duckdb
import polars as pl

from cssci_platform.lib.cohort import Cohort
from cssci_platform.lib.warehouse import append_rows, transaction

LATEST_RECORDED = """
SELECT patient_key, outcome, value, outcome_date FROM recorded_outcomes
QUALIFY row_number() OVER (PARTITION BY patient_key, outcome ORDER BY recorded_at DESC, source_line DESC) = 1
"""
DELETE_MANIFEST_OUTCOMES = "DELETE FROM outcomes WHERE outcome IN (SELECT unnest(?::VARCHAR[])) AND {patients}"
INSERT_MANIFEST_OUTCOMES = f"""
INSERT INTO outcomes (patient_key, outcome, value, outcome_date)
SELECT m.patient_key, m.outcome, m.value, m.outcome_date::DATE FROM manifest_outcomes m
WHERE NOT EXISTS (SELECT 1 FROM ({LATEST_RECORDED}) r WHERE r.patient_key = m.patient_key AND r.outcome = m.outcome)
"""
INSERT_RECORDED_OUTCOMES = f"""
INSERT INTO outcomes (patient_key, outcome, value, outcome_date)
SELECT patient_key, outcome, value, outcome_date FROM ({LATEST_RECORDED})
WHERE outcome IN (SELECT unnest(?::VARCHAR[])) AND {{patients}}
"""
FILE_ALREADY_APPLIED = "SELECT count(*) FROM followup_files WHERE source_sha256 = ?"


def write_manifest_tables(
    con: duckdb.DuckDBPyConnection, manifest: Cohort, keys: Collection[str] | None = None
) -> None:
    """Replace the `patients`, `clinical` and manifest-outcome rows of `keys` (default: the whole cohort) in one
    transaction; recorded follow-up outcomes are laid over the manifest's values."""
    records = [p for k, p in manifest.patients.items() if keys is None or k in keys]
    with transaction(con):
        for table in ("patients", "clinical"):
            con.execute(f"DELETE FROM {table} WHERE {_patients_filter(keys)}", _patients_args(keys))
        append_rows(con, "patients", patient_rows(manifest, records))
        append_rows(con, "clinical", clinical_rows(records))
        _write_outcomes(con, manifest, records, keys)


def _write_outcomes(
    con: duckdb.DuckDBPyConnection, manifest: Cohort, records: list, keys: Collection[str] | None
) -> None:
    declared = list(manifest.spec.outcomes)
    patients = _patients_filter(keys)
    con.execute(DELETE_MANIFEST_OUTCOMES.format(patients=patients), [declared, *_patients_args(keys)])
    schema = {"patient_key": pl.String, "outcome": pl.String, "value": pl.String, "outcome_date": pl.String}
    frame = pl.DataFrame(outcome_rows(records), schema=schema)
    con.register("manifest_outcomes", frame)
    con.execute(INSERT_MANIFEST_OUTCOMES)
    con.unregister("manifest_outcomes")
    con.execute(INSERT_RECORDED_OUTCOMES.format(patients=patients), [declared, *_patients_args(keys)])


def _patients_filter(keys: Collection[str] | None) -> str:
    return "TRUE" if keys is None else "patient_key IN (SELECT unnest(?::VARCHAR[]))"


def _patients_args(keys: Collection[str] | None) -> list:
    return [] if keys is None else [list(keys)]


def patient_rows(manifest: Cohort, records: list) -> list[dict]:
    now = datetime.now()
    return [{"patient_key": p.patient_key, "center": p.center, "cohort": p.cohort, "manifest_line": p.line,
             "outcome_date": p.outcome_date, "manifest_path": str(manifest.manifest_path),
             "manifest_sha256": manifest.manifest_sha256, "updated_at": now} for p in records]


def clinical_rows(records: list) -> list[dict]:
    return [{"patient_key": p.patient_key, "variable": name,
             "value_number": float(value) if isinstance(value, (int, float)) else None,
             "value_text": value if isinstance(value, str) else None}
            for p in records for name, value in p.clinical.items()]


def outcome_rows(records: list) -> list[dict]:
    return [{"patient_key": p.patient_key, "outcome": name, "value": None if value is None else str(value),
             "outcome_date": p.outcome_date}
            for p in records for name, value in p.outcomes.items()]


@dataclass(frozen=True)
class FollowupApplication:
    recorded: int
    rejected: int
    already_applied: bool


def apply_followup_file(con: duckdb.DuckDBPyConnection, manifest: Cohort, path: Path, sha256: str,
                        rows: pl.DataFrame, problems: list[str]) -> FollowupApplication:
    """Record one follow-up file's valid rows (with provenance) and one rejection per bad row, exactly once per
    file content, in one transaction; then lay the new values over `outcomes`."""
    with transaction(con):
        if _first_value(con, FILE_ALREADY_APPLIED, [sha256]):
            return FollowupApplication(0, 0, already_applied=True)
        now = datetime.now()
        append_rows(con, "recorded_outcomes", rows.select(
            "patient_key", "outcome", "value", pl.col("outcome_date").str.to_date(strict=True),
            pl.lit(str(path)).alias("source_file"), pl.lit(sha256).alias("source_sha256"),
            pl.col("line").alias("source_line"), pl.lit(now).alias("recorded_at")))
        append_rows(con, "inbox_events", [{"source": path.name, "patient_key": None, "status": "rejected", "reason": p,
                                           "digest": sha256, "seen_at": now} for p in problems])
        append_rows(con, "followup_files", [{"source_file": str(path), "source_sha256": sha256, "recorded": rows.height,
                                             "rejected": len(problems), "applied_at": now}])
        keys = sorted(set(rows["patient_key"]))
        _write_outcomes(con, manifest, [manifest.patients[k] for k in keys], keys)
    return FollowupApplication(rows.height, len(problems), already_applied=False)


def _first_value(con: duckdb.DuckDBPyConnection, query: str, parameters: list[object]) -> object:
    """The first column of the one row an aggregate query returns."""
    row = con.execute(query, parameters).fetchone()
    if row is None:
        raise ValueError(f"the query returned no row: {query}")
    return row[0]
