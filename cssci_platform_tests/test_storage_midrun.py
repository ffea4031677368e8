"""The warehouse's disk turns read-only or fills up during a run: the failing writes are called what they are,
the patients after it fail outside QC (which fails the command), and nothing is left half-written."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pytest

from cssci_platform.cli import patient_runs
from cssci_platform.cli.home import activate_study, configure_environment
from cssci_platform.lib.failures import describe
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import connect, replace_rows

PATIENT_TABLES = (
    "scans",
    "qc_issues",
    "preprocessed_channels",
    "preprocessed_masks",
    "radiomics_features",
    "roi_slices",
)


@contextmanager
def tmpfs(mount: Path, size: str) -> Iterator[Path]:
    """A real file system of its own, so that it can be made read-only (even for root) or full."""
    mount.mkdir()
    if subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True
    ).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with tmpfs(tmp_path / "disk", "256m") as mount:
        yield mount


def feature_rows(count: int, value: float) -> list[dict]:
    return [
        {
            "patient_key": "P1",
            "sequence": "sag_T2",
            "roi": "lesion",
            "segmentation": "primary",
            "channel": "original",
            "feature": f"feature_{i:06d}_{'x' * 40}",
            "value": value,
        }
        for i in range(count)
    ]


def test_a_write_that_fills_the_disk_is_rolled_back_and_called_a_full_disk(tmp_path: Path) -> None:
    with tmpfs(tmp_path / "disk", "8m") as disk:
        warehouse = disk / "warehouse.duckdb"
        with connect(warehouse) as con:
            replace_rows(con, "radiomics_features", {"patient_key": "P1"}, feature_rows(100, 1.0))
        (disk / "filler").write_bytes(b"0" * (shutil.disk_usage(disk).free - 1024 * 1024))  # 1 MB left
        with pytest.raises(duckdb.Error) as raised:
            with connect(warehouse) as con:
                replace_rows(con, "radiomics_features", {"patient_key": "P1"}, feature_rows(100_000, 2.0))
        assert describe(raised.value).startswith("the disk is full: cannot write") and "Free space" in describe(
            raised.value
        )
        with connect(warehouse, read_only=True) as con:  # the patient's previous rows, whole; none of the new ones
            assert con.execute("SELECT count(*), min(value), max(value) FROM radiomics_features").fetchone() == (
                100,
                1.0,
                1.0,
            )


def test_a_warehouse_turned_read_only_mid_run_fails_the_rest_with_that_cause(
    tmp_path: Path, small_disk: Path, restored_environment: None
) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=3, n_prospective=0, seed=5)
    warehouse = small_disk / "warehouse.duckdb"
    os.environ["CSSCI_WAREHOUSE"] = str(warehouse)
    configure_environment(tmp_path / "home", manifest)
    activate_study(tmp_path / "home", manifest)
    outcomes: list[patient_runs.PatientRunOutcome] = []

    def on_patient(outcome: patient_runs.PatientRunOutcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 1:
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True, capture_output=True)

    patient_runs.ingest_cohort(manifest, 1, on_patient, per_run=1)  # the next run starts after the remount
    first, *rest = outcomes
    assert first.success and len(rest) == 2
    assert all(o.failed_outside_qc and "the file system is read-only" in o.reason for o in rest), [
        o.reason for o in rest
    ]
    summary = patient_runs.failure_summary(patient_runs.outside_qc_failures(outcomes), len(outcomes))
    assert summary.startswith("2 of 3 patients failed for a reason other than QC") and "read-only" in summary
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in PATIENT_TABLES:
            keys = {k for (k,) in con.execute(f"SELECT DISTINCT patient_key FROM {table}").fetchall()}
            assert keys <= {first.patient_key}, table
        assert (
            con.execute(
                "SELECT count(*) FROM radiomics_features WHERE patient_key = ?", [first.patient_key]
            ).fetchone()[0]
            > 0
        )
