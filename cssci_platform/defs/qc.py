"""Shared wiring for the blocking per-patient QC checks: issues -> qc_issues rows + check result."""

from collections.abc import Sequence

import dagster as dg
import duckdb

from cssci_platform.lib.deep.patient_slices import STAGE as SLICE_STAGE
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.quality import QcIssue
from cssci_platform.lib.queries import patients as queries
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.warehouse import WarehouseResource

# The QC stages whose recorded issues each blocking per-patient check reads: the checks of `patient_features_job` and
# the patient batch op (`ingest/patient_batch.py`) decide from the same issues.
CHECK_STAGES: dict[str, tuple[str, ...]] = {
    "patient_qc": ("manifest", "scans"),
    "roi_survives_resampling": ("preprocess",),
    "features_finite": ("radiomics",),
    "roi_slice_found": (SLICE_STAGE,),
}


def issues_markdown(issues: Sequence[QcIssue]) -> str:
    if not issues:
        return "no issues"
    rows = [(issue.severity, issue.code, issue.message, issue.fix) for issue in issues]
    return markdown_table(["severity", "code", "problem", "fix"], rows)


def record_issues(con: duckdb.DuckDBPyConnection, patient_key: str, stage: str, issues: Sequence[QcIssue]) -> None:
    """Replace this patient's issues of this stage, so a fixed problem disappears on re-materialization (on the
    connection its step writes its rows with: one warehouse connection per write phase)."""
    replace_rows(con, "qc_issues", {"patient_key": patient_key, "stage": stage}, [i.as_row() for i in issues])


def stored_issues(warehouse: WarehouseResource, patient_key: str, stages: Sequence[str]) -> list[QcIssue]:
    with warehouse.connect() as con:
        return issues_of(con, patient_key, stages)


def issues_of(con: duckdb.DuckDBPyConnection, patient_key: str, stages: Sequence[str]) -> list[QcIssue]:
    return [QcIssue(**row) for row in queries.patient_issues(con, patient_key, stages)]


def issues_of_stages(issues: Sequence[QcIssue], stages: Sequence[str]) -> list[QcIssue]:
    """The issues of `stages`, in the order `stored_issues` reads them back (stage, code)."""
    return sorted((i for i in issues if i.stage in stages), key=lambda i: (i.stage, i.code))


def qc_check_result(issues: Sequence[QcIssue]) -> dg.AssetCheckResult:
    errors = [i for i in issues if i.severity == "error"]
    return dg.AssetCheckResult(
        passed=not errors,
        severity=dg.AssetCheckSeverity.ERROR,
        description=errors[0].message if errors else None,
        metadata={"issues": dg.MetadataValue.md(issues_markdown(issues)), "error_count": len(errors)},
    )


def quarantine_guard(con: duckdb.DuckDBPyConnection, patient_key: str, upstream_stages: Sequence[str]) -> None:
    """Refuse to process a patient whose inputs failed QC (e.g. when a downstream asset is run alone); on the
    connection its step reads its inputs with."""
    errors = [i for i in issues_of(con, patient_key, upstream_stages) if i.severity == "error"]
    if errors:
        details = "; ".join(f"[{i.stage}] {i.message}" for i in errors)
        raise dg.Failure(f"patient '{patient_key}' is quarantined: {details}. Fix the input and re-materialize "
                         "patient_scans.")
