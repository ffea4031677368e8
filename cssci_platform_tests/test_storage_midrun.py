"""The warehouse's disk turns read-only in the middle of an ingest: the patients after it fail with that cause
(a failure outside QC, which fails the command), and none of them leaves a half-written row."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from cssci_platform import runner
from cssci_platform.lib.synthetic import write_sci_cohort

PATIENT_TABLES = ("scans", "qc_issues", "preprocessed_channels", "preprocessed_masks", "radiomics_features", "roi_slices")


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real file system of its own (tmpfs), so that it can be made read-only even for root."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here (needs root with CAP_SYS_ADMIN)")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture
def restored_environment() -> Iterator[None]:
    saved = dict(os.environ)  # configure_environment sets the CSSCI_* variables and DAGSTER_HOME
    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "DAGSTER_HOME", "CSSCI_MLFLOW_URI", "CSSCI_EXPERIMENT_CONFIG",
                 "CSSCI_LOG_DIR", "CSSCI_MANIFEST"):
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def test_a_warehouse_turned_read_only_mid_run_fails_the_rest_with_that_cause(tmp_path: Path, small_disk: Path,
                                                                              restored_environment: None) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=3, n_prospective=0, seed=5)
    warehouse = small_disk / "warehouse.duckdb"
    os.environ["CSSCI_WAREHOUSE"] = str(warehouse)
    runner.configure_environment(tmp_path / "home", manifest)
    outcomes: list[runner.PatientRunOutcome] = []

    def on_patient(outcome: runner.PatientRunOutcome) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 1:
            subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True, capture_output=True)

    runner.ingest_cohort(manifest, 1, on_patient)
    first, *rest = outcomes
    assert first.success and len(rest) == 2
    assert all(o.failed_outside_qc and "the file system is read-only" in o.reason for o in rest), [o.reason for o in rest]
    summary = runner.failure_summary(runner.outside_qc_failures(outcomes), len(outcomes))
    assert summary.startswith("2 of 3 patients failed for a reason other than QC") and "read-only" in summary
    with duckdb.connect(str(warehouse), read_only=True) as con:
        for table in PATIENT_TABLES:
            keys = {k for (k,) in con.execute(f"SELECT DISTINCT patient_key FROM {table}").fetchall()}
            assert keys <= {first.patient_key}, table
        assert con.execute("SELECT count(*) FROM radiomics_features WHERE patient_key = ?", [first.patient_key]).fetchone()[0] > 0
