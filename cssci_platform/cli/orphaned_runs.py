"""Runs the CLI executes in its own process carry that process' identity, so a later command can mark FAILURE the
runs a killed command left STARTED (Dagster's run monitoring only watches the runs its own launcher started)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import dagster as dg

PID_TAG, HOST_TAG, PROCESS_START_TAG = "cssci/pid", "cssci/host", "cssci/process_start"


def _proc_stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...), [] where unknown; the command name may hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except OSError:
        return []


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), '' where unknown: tells a live process
    from a later one that got the same pid."""
    fields = _proc_stat(pid)
    return fields[19] if fields else ""  # field 22 (starttime)


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes a run in-process, so a later command can tell whether it died."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), PROCESS_START_TAG: process_start(os.getpid())}


def process_alive(tags: dict[str, str]) -> bool:
    """Whether the process named by `process_tags()` still runs (True when it ran on another host: cannot tell)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return True
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _proc_stat(pid)
    if fields and fields[0] == "Z":  # killed, not yet reaped by its parent
        return False
    started = tags.get(PROCESS_START_TAG, "")
    return not started or not fields or fields[19] == started


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILURE the runs this CLI started in-process whose process is gone (e.g. killed with SIGKILL), which
    would otherwise stay STARTED for ever; returns their run ids. Runs of the UI / daemon (no pid tag) are left
    to Dagster's run monitoring."""
    active = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
    orphaned = [run for run in instance.get_runs(filters=dg.RunsFilter(statuses=active))
                if PID_TAG in run.tags and not process_alive(run.tags)]
    for run in orphaned:
        process = f"pid {run.tags[PID_TAG]} on {run.tags.get(HOST_TAG)}"
        instance.report_run_failed(run, f"the process that ran it ({process}) ended without finishing it (killed or "
                                        "crashed); marked failed by the next cssci command")
    return [run.run_id for run in orphaned]
