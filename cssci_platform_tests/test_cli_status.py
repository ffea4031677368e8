"""`cssci status`: the cohort overview of a home, read from its real warehouse; a home without one gets exit 2 and
what to run."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from cssci_platform.cli import output
from cssci_platform.cli.status_command import status
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.cohort_tables import write_manifest_tables
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import append_rows, connect


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_sci_cohort(tmp_path_factory.mktemp("cohort"), n_development=3, n_prospective=2, seed=3)


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command()(status)
    app.command("noop")(lambda: None)  # two commands: typer keeps `status` as a subcommand name
    return app


def _home_with_warehouse(home: Path, manifest: Path) -> list[str]:
    cohort = load_cohort(manifest)
    keys = sorted(cohort.patients)
    with connect(home / "warehouse.duckdb") as con:
        write_manifest_tables(con, cohort)
        append_rows(con, "qc_issues", [{"patient_key": keys[0], "stage": "scans", "code": "unreadable_file",
                                        "message": "cannot read", "fix": "re-export", "file": "x.nii.gz",
                                        "severity": "error"}])
        append_rows(con, "trained_models", [
            {"result_name": "Rad_LR", "signature": "Rad", "classifier": "LR", "mode": "leakage_safe", "run_id": "r",
             "registered_model": "cssci.home.Rad.leakage_safe", "model_version": "1", "champion": True,
             "created_at": datetime.now() - timedelta(hours=5, minutes=3)}])
        append_rows(con, "validation_metrics", [
            {"registered_model": "cssci.home.Rad.leakage_safe", "model_version": "1", "signature": "Rad",
             "n_patients": 12, "metric": "auc", "value": 0.41, "test_auc_low": 0.62, "below_test_ci": True,
             "computed_at": datetime.now()}])
    return keys


def test_status_prints_the_cohort_overview_of_the_home(manifest: Path, tmp_path: Path, restored_environment,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    # the CLI's console takes its width when first imported; a test that set $COLUMNS earlier in this worker would
    # leave it narrow and rich would wrap the table's cells (a user's file or pipe gets REDIRECTED_WIDTH)
    monkeypatch.setattr(output.console, "width", output.REDIRECTED_WIDTH)
    keys = _home_with_warehouse(tmp_path, manifest)
    (tmp_path / "image_store" / "qc_montages").mkdir(parents=True)
    (tmp_path / "image_store" / "qc_montages" / f"{keys[1]}.png").write_bytes(b"png")
    cohort = load_cohort(manifest)
    result = CliRunner().invoke(_app(), ["status", "--home", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    quarantined = cohort.patients[keys[0]]
    assert any(line.split() == ["│", quarantined.center, "│", quarantined.cohort, "│", "quarantined", "│",
                                "registered", "│", "1", "│"] for line in lines), result.output
    development = sum(p.cohort == "development" for p in cohort.patients.values())
    outcome = next(iter(cohort.spec.outcomes))
    assert any(line.split() == ["│", outcome, "│", "development", "│", str(development), "│", str(development), "│"]
               for line in lines), result.output
    champion = next(line for line in lines if "cssci.home.Rad.leakage_safe" in line)
    assert "5 h 3 min" in champion and "AUC 0.410 on 12 patients BELOW the test CI low 0.620" in champion
    assert "Inbox arrivals waiting" in result.output and str(tmp_path / "warehouse.duckdb") in result.output
    assert f"QC montages (one PNG per patient): 1 in {tmp_path / 'image_store' / 'qc_montages'};" in result.output


def test_status_of_a_home_without_a_warehouse_says_what_to_run(tmp_path: Path, restored_environment) -> None:
    result = CliRunner().invoke(_app(), ["status", "--home", str(tmp_path / "empty")])
    assert result.exit_code != 0
    message = str(result.exception)
    assert f"no warehouse at {tmp_path / 'empty' / 'warehouse.duckdb'}" in message and "cssci ingest" in message
    assert not (tmp_path / "empty" / "warehouse.duckdb").exists()  # looking never creates one
