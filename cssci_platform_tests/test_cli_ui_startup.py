"""`cssci ui` starts without a page of repeated warnings (issue 16, CLI). A real `dagster dev` on a free port, its
output captured until the webserver answers.

Measured before the fix: 93 lines, 91 of them the same `dagster.components.core.component_tree` WARNING ("The code
location name 'main' configured on this project does not match the name 'cssci_platform.definitions' ...": dg derives
the project's name from the checkout folder when pyproject's [tool.dg.project] has no code_location_name), and
click's SupersessionWarning for `dagster dev` (silenced by cssci ui through PYTHONWARNINGS)."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import urllib.request
from collections import Counter

import pytest

from cssci_platform.cli.home import PROJECT_ROOT

STARTUP_SECONDS = 300  # `dagster dev` takes 40-90 s to serve on the shared 2-core machine
LOCATION_NAME_SET = "code_location_name" in tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["tool"][
    "dg"]["project"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _serving(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def startup_output(tmp_path_factory) -> list[str]:
    """The lines `cssci ui` prints from its start until its UI answers (and a few seconds more)."""
    home, port = tmp_path_factory.mktemp("ui_home"), _free_port()
    log = home / "ui.log"
    environment = {name: value for name, value in os.environ.items()
                   if not name.startswith(("CSSCI_", "DAGSTER_", "PYTHONWARNINGS"))}
    command = [sys.executable, "-m", "cssci_platform.cli.main", "ui", "--home", str(home), "--port", str(port)]
    with open(log, "w", encoding="utf-8") as handle:
        ui = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT, env=environment,
                              start_new_session=True)
        try:
            deadline = time.monotonic() + STARTUP_SECONDS
            while not _serving(port) and time.monotonic() < deadline and ui.poll() is None:
                time.sleep(1)
            assert _serving(port), f"the UI did not answer in {STARTUP_SECONDS} s:\n{log.read_text()}"
            time.sleep(5)  # what the daemon and code server print right after
        finally:
            os.killpg(ui.pid, signal.SIGTERM)  # cssci and the dagster processes it started (its own session)
            try:
                ui.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(ui.pid, signal.SIGKILL)
                ui.wait()
    return log.read_text(encoding="utf-8").splitlines()


def _without_timestamp(line: str) -> str:
    return re.sub(r"\x1b\[[0-9;]*m", "", re.sub(r"^\S*\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \+\d{4}\S* - ", "", line))


def test_the_ui_starts_without_superseded_command_warnings(startup_output: list[str]) -> None:
    assert not [line for line in startup_output if "SupersessionWarning" in line or "dev_command" in line]


@pytest.mark.xfail(not LOCATION_NAME_SET, strict=True,
                   reason="needs code_location_name = \"cssci_platform.definitions\" under [tool.dg.project] in "
                   "pyproject.toml (not the CLI's file; requested in /tmp/briefs/U2_api.md)")
def test_the_ui_starts_without_a_page_of_repeated_warnings(startup_output: list[str]) -> None:
    repeated = {line: n for line, n in Counter(map(_without_timestamp, startup_output)).items() if n > 2}
    assert not repeated, f"{sum(repeated.values())} repeated lines: {list(repeated)[:3]}"
    assert len(startup_output) < 20, "\n".join(startup_output)
