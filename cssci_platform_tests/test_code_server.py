"""The code server a command starts (`cli/code_server.py`): stopped with its guard, fork server and socket folder when
the command's block ends, at once even before it answers; its run workers' fork server preloads them."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from cssci_platform.cli import code_server

pytestmark = pytest.mark.timeout(300)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _group(pgid: int) -> list[int]:
    """The live processes of process group `pgid` (a guard leads its own)."""
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append(int(entry.name))
    return members


def test_a_code_server_stopped_before_it_answers_is_stopped_at_once_with_its_folder(tmp_path: Path) -> None:
    with code_server.code_server(tmp_path) as starting:
        guard = starting.process.pid
        assert _alive(guard) and starting.folder.is_dir()
        stopping = time.monotonic()
    # still importing, it cannot answer a shutdown request: its group killed (before: waited for 10 s, then terminated)
    assert time.monotonic() - stopping < code_server.SHUTDOWN_WAIT_SECONDS
    assert starting.process.poll() is not None
    assert not _group(guard), "the guard's group (the server, its fork server) outlived the block"
    assert not starting.folder.exists()


def _fork_servers(guard: int) -> list[int]:
    return [pid for pid in _group(guard) if b"multiprocessing.forkserver" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def _ignores_sigterm(pid: int) -> bool:
    status = Path(f"/proc/{pid}/status").read_text()
    ignored = int(next(line for line in status.splitlines() if line.startswith("SigIgn:")).split()[1], 16)
    return bool(ignored >> (15 - 1) & 1)


def test_a_code_server_stopped_while_it_loads_the_definitions_is_stopped_at_once(tmp_path: Path) -> None:
    # Before: from ~1 s after it started until it answered, the server ignores SIGTERM (Dagster's `api grpc` does
    # while it loads the definitions) and a shutdown request waits until it answers, so a command stopped then waited
    # for the whole load (the full suite on a loaded machine: over 10 s, then its guard's 20-s grace). A server that
    # does not answer yet has started no run worker: its whole group is killed at once. Compared with the same load
    # left to finish on this machine now (a second server), the stop must take a small part of it.
    with code_server.code_server(tmp_path) as starting:
        _wait_until_loading(starting)
        loading = time.monotonic()
        starting.serving()
        load = time.monotonic() - loading
    with code_server.code_server(tmp_path) as starting:
        _wait_until_loading(starting)
        stopping = time.monotonic()
    stop = time.monotonic() - stopping
    assert stop < load / 3, f"the stop took {stop:.2f} s, the rest of a load {load:.2f} s: it waited for the load"
    deadline = time.monotonic() + 10  # a killed process leaves the table once the kernel has reaped it
    while _group(starting.process.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _group(starting.process.pid) and not starting.folder.exists()


def _wait_until_loading(starting: code_server.StartingCodeServer) -> None:
    """Until the server ignores SIGTERM, before it answers (it loads the definitions)."""
    server = _server_process(starting.process.pid)
    deadline = time.monotonic() + 60
    while not _ignores_sigterm(server):
        assert time.monotonic() < deadline, "the server never ignored SIGTERM"
        time.sleep(0.01)
    assert not code_server.answers(starting.server.socket)


def test_a_code_server_serves_beside_a_fork_server_that_preloads_the_run_workers(tmp_path: Path) -> None:
    with code_server.code_server(tmp_path) as starting:
        server = starting.serving()
        assert code_server.answers(server.socket)
        deadline = time.monotonic() + 120
        while not (fork_servers := _fork_servers(starting.process.pid)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert fork_servers, "no fork server started beside the code server"
        assert code_server.RUN_WORKER_PRELOAD.encode() in Path(f"/proc/{fork_servers[0]}/cmdline").read_bytes()
    assert not _group(starting.process.pid) and not starting.folder.exists()
    assert not code_server.answers(server.socket)
    assert os.path.exists(tmp_path / "dagster-code-server.log")


def _environment(pid: int) -> dict[str, str]:
    entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(entry.decode().split("=", 1) for entry in entries if b"=" in entry)


def _server_process(guard: int) -> int:
    """The code server the guard runs (its child whose command line is the server module)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pid in _group(guard):
            if pid != guard and code_server.SERVER_MODULE.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
        time.sleep(0.05)
    raise AssertionError("the code server process did not start")


def test_a_command_that_ends_before_its_first_run_leaves_no_early_code_server(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from cssci_platform.cli import instance_runs

    monkeypatch.setenv("CSSCI_LOG_DIR", str(tmp_path))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    with instance_runs.starting_early():
        [early] = instance_runs._early_servers
        guard = early.process.pid
        # the code server never opens the instance (a new home's storage is created by the command meanwhile: two
        # processes creating it at once leave it unreadable)
        assert "DAGSTER_HOME" not in _environment(_server_process(guard))
    assert instance_runs._early_servers == []
    assert not _group(guard), "the early code server outlived the command"
    assert not early.folder.exists()
    assert not (tmp_path / "dagster_home").exists(), "something opened the instance before the command did"
