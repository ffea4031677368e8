"""A run whose `cssci` process was killed (SIGKILL) does not stay STARTED for ever: the next command marks it failed,
and leaves the runs of live processes alone."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from cssci_platform.cli import orphaned_runs

SLOW_RUN = textwrap.dedent("""
    import time
    import dagster as dg
    from cssci_platform.cli import orphaned_runs

    @dg.op
    def wait_long() -> None:
        print("started", flush=True)
        time.sleep(300)

    @dg.job
    def slow_job():
        wait_long()

    with dg.DagsterInstance.get() as instance:
        slow_job.execute_in_process(instance=instance, tags=orphaned_runs.process_tags())
""")


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    return home


def start_slow_run() -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-c", SLOW_RUN], stdout=subprocess.PIPE, text=True, env=os.environ.copy()
    )
    assert process.stdout is not None and process.stdout.readline().strip() == "started"
    return process


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen]]:
    started: list[subprocess.Popen] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def run_of(instance: dg.DagsterInstance, pid: int) -> dg.DagsterRun:
    [run] = [r for r in instance.get_runs() if r.tags.get(orphaned_runs.PID_TAG) == str(pid)]
    return run


def test_a_killed_commands_run_is_marked_failed_and_a_live_ones_is_left(dagster_home: Path, processes: list) -> None:
    killed, alive = start_slow_run(), start_slow_run()
    processes += [killed, alive]
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    with dg.DagsterInstance.get() as instance:
        assert run_of(instance, killed.pid).status == dg.DagsterRunStatus.STARTED  # what Dagster alone leaves
        failed = orphaned_runs.fail_orphaned_runs(instance)
        assert failed == [run_of(instance, killed.pid).run_id]
        assert run_of(instance, killed.pid).status == dg.DagsterRunStatus.FAILURE
        assert run_of(instance, alive.pid).status == dg.DagsterRunStatus.STARTED
        messages = [
            e.message for e in instance.all_logs(failed[0]) if e.is_dagster_event and e.dagster_event.is_run_failure
        ]
        assert any(f"pid {killed.pid}" in m and "ended without finishing it" in m for m in messages)
        assert orphaned_runs.fail_orphaned_runs(instance) == []  # once


def test_a_reused_pid_does_not_keep_a_dead_run_alive() -> None:
    tags = orphaned_runs.process_tags()
    assert orphaned_runs.process_alive(tags)
    if not orphaned_runs.process_start(os.getpid()):
        pytest.skip("no /proc: process start times are unknown here")
    assert not orphaned_runs.process_alive({**tags, orphaned_runs.PROCESS_START_TAG: "1"})  # same pid, another process


def test_a_killed_process_not_yet_reaped_counts_as_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        tags = {
            orphaned_runs.PID_TAG: str(child.pid),
            orphaned_runs.HOST_TAG: orphaned_runs.process_tags()[orphaned_runs.HOST_TAG],
            orphaned_runs.PROCESS_START_TAG: orphaned_runs.process_start(child.pid),
        }
        assert orphaned_runs.process_alive(tags)
        os.kill(child.pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while orphaned_runs.process_alive(tags) and time.monotonic() < deadline:  # a zombie until we wait() for it
            time.sleep(0.1)
        assert not orphaned_runs.process_alive(tags)
    finally:
        child.kill()
        child.wait(timeout=10)


def test_the_next_cssci_command_marks_the_killed_run_failed(
    dagster_home: Path, processes: list, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cssci_platform.cli import main as cli_main
    from cssci_platform.cli import server_commands

    killed = start_slow_run()
    processes.append(killed)
    os.kill(killed.pid, signal.SIGKILL)
    killed.wait(timeout=30)
    monkeypatch.setattr(
        server_commands.subprocess, "call", lambda command, cwd=None: 0
    )  # `cssci ui` without the webserver
    for name in (
        "CSSCI_WAREHOUSE",
        "CSSCI_IMAGE_STORE",
        "CSSCI_MLFLOW_URI",
        "CSSCI_MANIFEST",
        "CSSCI_LOG_DIR",
        "MLFLOW_DISABLE_TELEMETRY",
        "CSSCI_EXPERIMENT_CONFIG",
    ):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # restored after the command sets them
    result = CliRunner().invoke(cli_main.app, ["ui", "--home", str(tmp_path / "home")])
    assert result.exit_code == 0, result.output
    with dg.DagsterInstance.get() as instance:
        run = run_of(instance, killed.pid)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert (
        f"marked 1 run(s) failed whose process ended without finishing them (killed or crashed): {run.run_id}"
        in " ".join(result.output.split())
    )
