"""Which failed patients fail the command: those that failed outside QC, never a quarantined patient."""

from __future__ import annotations

from pathlib import Path

import pytest

from cssci_platform.cli import patient_runs
from cssci_platform.lib.warehouse import connect, replace_rows


def outcome(
    key: str, success: bool = False, checks: tuple[str, ...] = (), error: str = ""
) -> patient_runs.PatientRunOutcome:
    return patient_runs.PatientRunOutcome(key, success, f"run-{key}", checks, error)


def test_failures_outside_qc_are_those_without_a_failed_check_or_a_recorded_qc_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    warehouse = tmp_path / "warehouse.duckdb"
    monkeypatch.setenv("CSSCI_WAREHOUSE", str(warehouse))
    with connect(warehouse) as con:
        replace_rows(
            con,
            "qc_issues",
            {"patient_key": "P3"},
            [
                {
                    "patient_key": "P3",
                    "stage": "preprocess",
                    "code": "empty_mask",
                    "message": "mask empty after resampling",
                    "severity": "error",
                }
            ],
        )
    outcomes = [
        outcome("P1", success=True),
        outcome("P2", checks=("patient_qc",), error="check failed"),
        outcome("P3", error="patient 'P3' is quarantined: [preprocess] mask empty after resampling"),
        outcome("P4", error="radiomics_features: the disk is full: cannot write /srv/warehouse.duckdb"),
    ]
    assert [o.patient_key for o in patient_runs.outside_qc_failures(outcomes)] == ["P4"]
    summary = patient_runs.failure_summary(patient_runs.outside_qc_failures(outcomes), len(outcomes))
    assert summary == (
        "1 of 4 patients failed for a reason other than QC (P4): radiomics_features: the disk is full: "
        "cannot write /srv/warehouse.duckdb"
    )


def test_an_unreadable_warehouse_counts_every_unexplained_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "warehouse.duckdb"
    folder.mkdir()
    monkeypatch.setenv("CSSCI_WAREHOUSE", str(folder))
    assert [
        o.patient_key for o in patient_runs.outside_qc_failures([outcome("P1", error="x"), outcome("P2", error="y")])
    ] == ["P1", "P2"]
