"""Runs a killed command left behind do not stay STARTED or QUEUED for ever: the next command marks FAILURE the runs
whose process is gone and cancels the queued runs whose submitting command is gone.

- A run launched through the instance (DefaultRunLauncher, one process per run) names its worker in its
  'Started process for run (pid: N)' engine event; the worker is gone when no process has that pid, or the process
  with it started after the event (a reused pid).
- A run the CLI submitted carries the command's identity (`submitter_tags`): a QUEUED run whose command is gone is
  canceled (the command that follows would otherwise find a stale run launched behind its back).
- A run executed in-process (`execute_in_process`, tests and older commands) carries its process' identity
  (`process_tags`).
Dagster's own run monitoring cannot see a dead worker of the default run launcher."""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

import dagster as dg

PID_TAG, HOST_TAG, PROCESS_START_TAG = "cssci/pid", "cssci/host", "cssci/process_start"
SUBMITTER_TAGS = {PID_TAG: "cssci/submitter_pid", HOST_TAG: "cssci/submitter_host",
                  PROCESS_START_TAG: "cssci/submitter_start"}
WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)")


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


def submitter_tags() -> dict[str, str]:
    """Tags naming the command that submitted a run to the queue (not the process that will execute it)."""
    return {SUBMITTER_TAGS[name]: value for name, value in process_tags().items()}


def submitter_alive(tags: Mapping[str, str]) -> bool:
    """Whether the command named by `submitter_tags()` still runs (True for runs submitted otherwise: the UI)."""
    own = {name: tags[tag] for name, tag in SUBMITTER_TAGS.items() if tag in tags}
    return PID_TAG not in own or process_alive(own)


def boot_time() -> float:
    """When this machine booted (seconds since the epoch), 0 where unknown."""
    try:
        for line in Path("/proc/stat").read_text(encoding="utf-8").splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return 0.0


class RunWorker(NamedTuple):
    """A launched run's worker process as its 'Started process for run (pid: N)' engine event names it (pid None
    before the run has started one) and when that event was written."""

    pid: int | None
    started_at: float


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing a launched run (its 'Started process for run (pid: N)' engine event), None
    before the run has started one."""
    return run_worker(instance, run_id).pid


def run_worker(instance: dg.DagsterInstance, run_id: str) -> RunWorker:
    """The run's worker (a read of its engine events: a caller following the run keeps it once the pid is known)."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if match := WORKER_STARTED.search(entry.message or ""):
            return RunWorker(int(match.group(1)), entry.timestamp)
    return RunWorker(None, 0.0)


def worker_alive(instance: dg.DagsterInstance, run: dg.DagsterRun, worker: RunWorker | None = None) -> bool:
    """Whether the worker process of a launched run still runs: a process with its pid exists on this host and did
    not start after the run's worker did (a reused pid). True when the run names no worker yet. `worker`: the run's
    worker as already read (`run_worker`), else it is read here."""
    pid, started_at = worker or run_worker(instance, run.run_id)
    if pid is None:
        return True
    if not process_alive({PID_TAG: str(pid), HOST_TAG: socket.gethostname()}):
        return False
    ticks, boot = process_start(pid), boot_time()
    if not ticks or not boot:
        return True
    return boot + int(ticks) / os.sysconf("SC_CLK_TCK") <= started_at + 2.0


def process_alive(tags: Mapping[str, str]) -> bool:
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
    """Mark FAILURE the runs whose process is gone (e.g. killed with SIGKILL) and cancel the queued runs whose
    submitting command is gone, which would otherwise stay STARTED / QUEUED for ever; returns their run ids."""
    active = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED,
              dg.DagsterRunStatus.QUEUED]
    ended = []
    for run in instance.get_runs(filters=dg.RunsFilter(statuses=active)):
        if run.status == dg.DagsterRunStatus.QUEUED:
            if not submitter_alive(run.tags):
                instance.report_run_canceled(run, "the cssci command that queued it ended before it was launched "
                                                  "(killed or crashed); canceled by the next cssci command")
                ended.append(run.run_id)
        elif (reason := _orphaned(instance, run)) is not None:
            instance.report_run_failed(run, f"{reason} ended without finishing it (killed or crashed); marked failed "
                                            "by the next cssci command")
            ended.append(run.run_id)
    return ended


def _orphaned(instance: dg.DagsterInstance, run: dg.DagsterRun) -> str | None:
    """Which process of an unfinished run is gone ('the process that ran it (pid N on host)'), None when it may
    still finish: an in-process run's own process, else a launched run's worker, else (a run STARTING with no
    worker) the command that submitted it while no daemon heartbeats."""
    if PID_TAG in run.tags:
        alive = process_alive(run.tags)
        return None if alive else f"the process that ran it (pid {run.tags[PID_TAG]} on {run.tags.get(HOST_TAG)})"
    worker = run_worker(instance, run.run_id)
    if worker.pid is not None:
        return None if worker_alive(instance, run, worker) else f"its run worker (pid {worker.pid})"
    if run.status == dg.DagsterRunStatus.STARTING and not submitter_alive(run.tags) and not daemon_alive(instance):
        return "the command that launched it"
    return None


DAEMON_HEARTBEAT_TOLERANCE = 15  # beyond the daemon's 30 s heartbeat interval


def daemon_record(instance: dg.DagsterInstance) -> Path:
    """Where a cssci command of an earlier version (which ran a `dagster-daemon` process while it ran) recorded that
    daemon (its `process_tags`); commands now launch their runs from a thread of their own (`cli/run_queue.py`)."""
    return Path(instance.root_directory) / "cssci_daemon.json"


def daemon_alive(instance: dg.DagsterInstance) -> bool:
    """Whether a Dagster daemon heartbeats on the instance. The heartbeats of a daemon an earlier version's command
    started and left when killed (`daemon_record`, its process gone) are stale: wiped, so that the next command
    launches its runs at once instead of waiting ~45 s for them to age."""
    from dagster._daemon.controller import all_daemons_live

    record = daemon_record(instance)
    try:
        recorded = json.loads(record.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        recorded = None
    if isinstance(recorded, dict) and not process_alive(recorded):
        instance.wipe_daemon_heartbeats()
        record.unlink(missing_ok=True)
        return False
    return all_daemons_live(instance, heartbeat_tolerance_seconds=DAEMON_HEARTBEAT_TOLERANCE)

