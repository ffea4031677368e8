"""`cssci ui` serves patient data: it listens on 127.0.0.1 unless the user asks for another address."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cssci_platform.cli import main as cli_main
from cssci_platform.cli import server_commands


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[list[str]]]:
    commands: list[list[str]] = []
    monkeypatch.setattr(server_commands.subprocess, "call", lambda command, cwd=None: commands.append(command) or 0)
    saved = dict(os.environ)  # `cssci ui` sets the CSSCI_* variables and DAGSTER_HOME of its home
    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "DAGSTER_HOME", "CSSCI_MANIFEST", "CSSCI_MLFLOW_URI",
                 "CSSCI_EXPERIMENT_CONFIG", "CSSCI_LOG_DIR"):
        os.environ.pop(name, None)
    yield commands
    os.environ.clear()
    os.environ.update(saved)


def host_and_port(command: list[str]) -> tuple[str, str]:
    return command[command.index("-h") + 1], command[command.index("-p") + 1]


def test_the_dagster_ui_binds_to_this_machine_only_by_default(launched: list, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli_main.app, ["ui", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    [command] = launched
    assert command[1:4] == ["-m", "dagster", "dev"] and host_and_port(command) == ("127.0.0.1", "3000")


def test_exposing_the_ui_is_a_deliberate_option(launched: list, tmp_path: Path) -> None:
    arguments = ["ui", "--home", str(tmp_path / "home"), "--host", "0.0.0.0", "--port", "3100"]
    result = CliRunner().invoke(cli_main.app, arguments)
    assert result.exit_code == 0, result.output
    assert host_and_port(launched[0]) == ("0.0.0.0", "3100") and "reachable from the network" in result.output


def test_the_ui_serves_the_projects_workspace_and_instance_settings(launched: list, tmp_path: Path) -> None:
    # Before: after the drivers moved into cssci_platform/cli/, the project root was taken one folder too low, so
    # `cssci ui` pointed dagster at cssci_platform/workspace.yaml (absent) and new homes got no dagster.yaml.
    result = CliRunner().invoke(cli_main.app, ["ui", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    [command] = launched
    assert Path(command[command.index("-w") + 1]).is_file()
    assert (tmp_path / "home" / "dagster_home" / "dagster.yaml").is_file()


def test_the_ui_on_a_home_without_a_study_gives_its_runs_the_default_study_of_its_manifest(launched: list,
                                                                                         tmp_path: Path) -> None:
    from cssci_platform.lib.synthetic import write_sci_cohort

    manifest = write_sci_cohort(tmp_path / "cohort", n_development=1, n_prospective=0, seed=3)
    result = CliRunner().invoke(cli_main.app, ["ui", "--home", str(tmp_path / "home"), "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    study = (tmp_path / "home" / "experiment.yaml").resolve()
    assert study.is_file() and os.environ["CSSCI_EXPERIMENT_CONFIG"] == str(study)  # what `dagster dev` inherits
