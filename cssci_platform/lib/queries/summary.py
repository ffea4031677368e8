"""What the command line prints about a home: patient status counts, features, champions, QC issues.

Each read tolerates a warehouse where the step that writes its table has not run yet (an empty answer), because
`cssci ingest` prints the summary before any modelling.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl

from cssci_platform.lib.queries.catalog import has_table

PATIENTS_PER_STATUS = "SELECT status, count(*) FROM patient_status GROUP BY status ORDER BY status"
RADIOMICS_VALUES_PER_PATIENT = ("SELECT median(n)::BIGINT FROM (SELECT count(*) AS n FROM radiomics_features "
                                "GROUP BY patient_key)")
EMBEDDING_COVERAGE = ("SELECT count(DISTINCT patient_key), count(*), any_value(len(embedding)), "
                      "string_agg(DISTINCT backbone || ' (' || weights_id || ')', ', ') FROM embeddings")
CHAMPIONS = (
    "SELECT t.signature, t.result_name, t.model_version, t.cv_auc_mean, r.value, n.value FROM trained_models t "
    "LEFT JOIN model_results r ON r.run_id = t.run_id AND r.role = 'test' AND r.metric IN ('auc', 'auc_macro_ovr') "
    "LEFT JOIN model_results n ON n.run_id = t.run_id AND n.role = 'test' AND n.metric = 'n' "
    "WHERE t.champion ORDER BY t.signature")
QC_ERRORS = "SELECT patient_key, stage, code, message FROM qc_issues WHERE severity = 'error' ORDER BY 1"
QC_ISSUES = "SELECT patient_key, stage, severity, code, message, fix FROM qc_issues"
QUARANTINED_AMONG = ("SELECT DISTINCT patient_key FROM qc_issues WHERE severity = 'error' "
                     "AND list_contains(?, patient_key)")
PATIENT_QC_ERRORS = ("SELECT stage, code, message, fix FROM qc_issues WHERE patient_key = ? AND severity = 'error' "
                     "ORDER BY stage, code")


@dataclass(frozen=True)
class ChampionSummary:
    """One signature's champion as `cssci` prints it (test AUC and n: None where the split has no test set)."""

    signature: str
    model: str
    version: int
    cv_auc: float
    test_auc: float | None
    test_n: float | None


@dataclass(frozen=True)
class EmbeddingCoverage:
    patients: int
    slices: int
    values_per_slice: int | None
    networks: str | None  # 'resnet18 (imagenet), ...'


def _one_row(con: duckdb.DuckDBPyConnection, sql: str, parameters: list | None = None) -> tuple:
    """The single row an aggregate query returns."""
    row = con.execute(sql, parameters or []).fetchone()
    assert row is not None, "an aggregate query returns one row"
    return row


def patients_per_status(con: duckdb.DuckDBPyConnection) -> list[tuple[str, int]]:
    """(status, number of patients) in status order, [] before any patient ran."""
    return [(status, count) for status, count in con.execute(PATIENTS_PER_STATUS).fetchall()] \
        if has_table(con, "patient_status") else []


def radiomics_values_per_patient(con: duckdb.DuckDBPyConnection) -> int | None:
    """The median number of radiomics feature values per patient (None without any)."""
    return _one_row(con, RADIOMICS_VALUES_PER_PATIENT)[0] if has_table(con, "radiomics_features") else None


def embedding_coverage(con: duckdb.DuckDBPyConnection) -> EmbeddingCoverage:
    """How many patients and ROI-slice embeddings the deep features cover, and by which networks."""
    if not has_table(con, "embeddings"):
        return EmbeddingCoverage(0, 0, None, None)
    patients, slices, values, networks = _one_row(con, EMBEDDING_COVERAGE)
    return EmbeddingCoverage(patients, slices, values, networks)


def champion_summaries(con: duckdb.DuckDBPyConnection) -> list[ChampionSummary]:
    """Each signature's champion with its CV AUC and test AUC/n, [] before any model was trained."""
    if not has_table(con, "trained_models"):
        return []
    return [ChampionSummary(*row) for row in con.execute(CHAMPIONS).fetchall()]


def qc_errors(con: duckdb.DuckDBPyConnection) -> list[tuple[str, str, str, str]]:
    """(patient_key, stage, code, message) of every QC error, by patient."""
    return con.execute(QC_ERRORS).fetchall() if has_table(con, "qc_issues") else []


def qc_issues(con: duckdb.DuckDBPyConnection, patient_key: str | None = None) -> pl.DataFrame:
    """Every QC issue (errors and warnings), optionally of one patient, by patient and stage."""
    where, parameters = (" WHERE patient_key = ?", [patient_key]) if patient_key else ("", [])
    return con.execute(f"{QC_ISSUES}{where} ORDER BY 1, 2", parameters).pl()


def quarantined_among(con: duckdb.DuckDBPyConnection, patient_keys: list[str]) -> set[str]:
    """Which of `patient_keys` have a QC error recorded."""
    return {key for (key,) in con.execute(QUARANTINED_AMONG, [patient_keys]).fetchall()}


def patient_qc_errors(con: duckdb.DuckDBPyConnection, patient_key: str) -> list[tuple[str, str, str, str]]:
    """(stage, code, message, fix) of the patient's QC errors, by stage and code."""
    return con.execute(PATIENT_QC_ERRORS, [patient_key]).fetchall()
