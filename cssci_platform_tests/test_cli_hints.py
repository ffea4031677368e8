"""What `cssci` prints after a command (issue 16, CLI): nothing cut when the output goes to a file, and every next
step it suggests runs exactly as printed. A real home: DuckDB warehouse, sqlite MLflow store with the study's
experiment, the study file."""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cssci_platform.cli import main as cli_main
from cssci_platform.cli import server_commands
from cssci_platform.lib.model_tracking import TrackingConfig, get_or_create_experiment, sqlite_tracking_uri
from cssci_platform.lib.warehouse import append_rows, connect

LONG_MESSAGE = ("the lesion mask of sequence T2_sag covers 0 voxels after resampling to 1 mm; " * 4).strip()
STUDY = "hints_study"


@pytest.fixture(scope="module")
def home(tmp_path_factory) -> Path:
    home = tmp_path_factory.mktemp("home with space")  # paths with a space must survive copy-paste too
    with connect(home / "warehouse.duckdb") as con:
        append_rows(con, "patients", [{"patient_key": "P001", "center": "A", "cohort": "development"}])
        append_rows(con, "qc_issues", [{"patient_key": "P001", "stage": "masks", "code": "empty_mask",
                                        "message": LONG_MESSAGE, "fix": "redraw the mask", "severity": "error"}])
    get_or_create_experiment(TrackingConfig(sqlite_tracking_uri(home / "mlflow.db"), STUDY))
    (home / "experiment.yaml").write_text(f"name: {STUDY}\n", encoding="utf-8")
    return home


def _environment(home: Path) -> dict[str, str]:
    environment = {name: value for name, value in os.environ.items() if not name.startswith(("CSSCI_", "COLUMNS"))}
    return {**environment, "CSSCI_WAREHOUSE": str(home / "warehouse.duckdb"),
            "CSSCI_MLFLOW_URI": sqlite_tracking_uri(home / "mlflow.db")}


@pytest.fixture(scope="module")
def summary(home: Path, tmp_path_factory) -> str:
    """The summary every command ends with, its stdout redirected to a file as a user's `> log.txt` does."""
    out = tmp_path_factory.mktemp("out") / "summary.txt"
    script = ("from pathlib import Path; from cssci_platform.cli.output import print_summary; "
              f"print_summary(Path({str(home)!r}), None)")
    with open(out, "w", encoding="utf-8") as handle:
        subprocess.run([sys.executable, "-c", script], stdout=handle, env=_environment(home), check=True, timeout=300)
    return out.read_text(encoding="utf-8")


def _hint(summary: str, what: str) -> list[str]:
    [line] = [line for line in summary.splitlines() if line.startswith(f"{what}:")]
    return shlex.split(line.removeprefix(f"{what}:"))


def test_output_to_a_file_is_not_cut(summary: str) -> None:
    assert any(line.endswith(f"P001 [masks/empty_mask] {LONG_MESSAGE}") for line in summary.splitlines())
    assert "…" not in summary


def test_the_qc_hint_runs_and_shows_the_whole_message(summary: str, home: Path, tmp_path: Path) -> None:
    [details] = [line for line in summary.splitlines() if line.startswith("QC errors: 1")]
    command = shlex.split(details.split("(details: ", 1)[1].rstrip(")"))
    with open(tmp_path / "qc.txt", "w", encoding="utf-8") as handle:
        done = subprocess.run(command, stdout=handle, env={**_environment(home), "CSSCI_WAREHOUSE": ""}, timeout=300)
    printed = (tmp_path / "qc.txt").read_text(encoding="utf-8")
    assert done.returncode == 0, printed
    assert LONG_MESSAGE in printed and "…" not in printed


def test_the_explore_hint_runs_without_a_duckdb_cli(summary: str, home: Path) -> None:
    command = _hint(summary, "explore")
    assert command[0] == sys.executable
    done = subprocess.run(command, capture_output=True, text=True, encoding="utf-8", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "P001" in done.stdout and "quarantined" in done.stdout


def test_the_ui_hint_starts_the_dagster_ui_on_the_printed_port(summary: str, home: Path, monkeypatch) -> None:
    command = _hint(summary, "UI")
    assert Path(command[0]).is_file() and os.access(command[0], os.X_OK)
    launched: list[list[str]] = []
    monkeypatch.setattr(server_commands.subprocess, "call", lambda args, cwd=None: launched.append(args) or 0)
    for name, value in _environment(home).items():
        monkeypatch.setenv(name, value)
    for name in ("DAGSTER_HOME", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "CSSCI_EXPERIMENT_CONFIG", "CSSCI_LOG_DIR",
                 "PYTHONWARNINGS"):  # all restored after the test
        monkeypatch.delenv(name, raising=False)
    result = CliRunner().invoke(cli_main.app, command[1:])
    assert result.exit_code == 0, result.output
    assert launched[0][launched[0].index("-p") + 1] == "3000"
    assert "open http://127.0.0.1:3000" in summary


def test_the_mlflow_hint_names_an_installed_mlflow_the_home_store_and_the_classic_view(summary: str, home: Path):
    command = _hint(summary, "MLflow")
    assert Path(command[0]).is_file() and command[1] == "ui"
    options = dict(zip(command[2::2], command[3::2]))
    assert options["--backend-store-uri"] == sqlite_tracking_uri(home / "mlflow.db")
    assert (home / "mlflow.db").is_file()
    help_text = subprocess.run([command[0], "ui", "--help"], capture_output=True, text=True, encoding="utf-8",
                               timeout=120).stdout
    assert all(option in help_text for option in options)
    experiment_id = TrackingConfig(options["--backend-store-uri"], STUDY).client().get_experiment_by_name(STUDY)
    page = f"http://127.0.0.1:{options['--port']}/#/experiments/{experiment_id.experiment_id}"
    assert f"then open {page}?workflowType=machine_learning" in summary


def test_the_mlflow_hint_of_a_tracking_server_opens_the_server_instead_of_starting_a_ui(tmp_path: Path) -> None:
    # a cluster home's store is the cluster's MLflow server: `mlflow ui --backend-store-uri http://...` cannot serve it
    from cssci_platform.cli.output import next_steps

    *_, mlflow_hint = next_steps(tmp_path, tmp_path / "warehouse.duckdb", "http://127.0.0.1:5055")
    assert mlflow_hint.command == ""
    assert mlflow_hint.then_open == "http://127.0.0.1:5055/#/experiments?workflowType=machine_learning"
