"""The per-stage eligibility rules on a small DuckDB file: which QC errors exclude a patient at which stage."""

from __future__ import annotations

import pytest

from cssci_platform.lib.queries.eligibility import (
    eligible_for_embeddings,
    eligible_for_feature_matrix,
    eligible_for_networks,
    eligible_for_splits,
    eligible_patients,
)
from cssci_platform.lib.warehouse import connect, replace_rows

# patient -> (QC stage, severity) of its one recorded issue; "clean" has none
ISSUES = {
    "manifest_error": ("manifest", "error"),
    "scan_error": ("scans", "error"),
    "slice_error": ("roi_slices", "error"),
    "embedding_error": ("embeddings", "error"),
    "scan_warning": ("scans", "warning"),
}


@pytest.fixture
def con(tmp_path):
    with connect(tmp_path / "warehouse.duckdb") as con:
        replace_rows(con, "patients", {}, [{"patient_key": key, "center": "A"} for key in ["clean", *ISSUES]])
        replace_rows(con, "qc_issues", {}, [
            {"patient_key": key, "stage": stage, "code": "c", "message": "m", "fix": "f", "file": "",
             "severity": severity}
            for key, (stage, severity) in ISSUES.items()])
        yield con


def test_splits_are_excluded_only_by_manifest_errors(con):
    assert eligible_for_splits(con) == ["clean", "embedding_error", "scan_error", "scan_warning", "slice_error"]


def test_embeddings_ignore_their_own_stage_errors_so_a_rerun_can_clear_them(con):
    assert eligible_for_embeddings(con) == ["clean", "embedding_error", "scan_warning"]


def test_networks_and_feature_matrix_need_no_error_at_any_stage(con):
    assert eligible_for_networks(con) == ["clean", "scan_warning"]
    assert eligible_for_feature_matrix(con) == ["clean", "scan_warning"]


def test_a_patient_missing_from_the_manifest_table_is_never_eligible(con):
    replace_rows(con, "patients", {"patient_key": "clean"}, [])
    assert "clean" not in eligible_patients(con, "feature_matrix")


def test_an_unknown_stage_is_refused_by_name(con):
    with pytest.raises(ValueError, match="unknown stage 'radiomics'"):
        eligible_patients(con, "radiomics")
