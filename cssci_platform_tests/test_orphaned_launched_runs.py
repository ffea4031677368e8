"""Runs a killed command left on the instance (issue 18): a launched run whose worker process is gone is marked
FAILURE, a queued run whose submitting command is gone is canceled, and the runs of live processes are left alone.
Real Dagster instance, real (ended and live) processes."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import dagster as dg
import pytest

from cssci_platform.cli import orphaned_runs


@pytest.fixture
def instance(tmp_path: Path):
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n", encoding="utf-8")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        yield instance


def _ended_process_tags() -> dict[str, str]:
    """`process_tags()` of a process that has ended."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    tags = {orphaned_runs.PID_TAG: str(process.pid), orphaned_runs.HOST_TAG: orphaned_runs.socket.gethostname(),
            orphaned_runs.PROCESS_START_TAG: orphaned_runs.process_start(process.pid)}
    process.wait()
    return tags


def _queued_run(instance: dg.DagsterInstance, tags: dict[str, str]) -> dg.DagsterRun:
    """A run waiting on the run queue (a queued run names the code location the daemon would launch it from)."""
    from dagster._core.remote_origin import RegisteredCodeLocationOrigin, RemoteJobOrigin, RemoteRepositoryOrigin

    origin = RemoteJobOrigin(RemoteRepositoryOrigin(RegisteredCodeLocationOrigin("cssci_platform.definitions"),
                                                    "__repository__"), "patient_features_job")
    return instance.add_run(dg.DagsterRun(job_name="patient_features_job", status=dg.DagsterRunStatus.QUEUED,
                                          tags=tags, remote_job_origin=origin))


def _as_submitter(tags: dict[str, str]) -> dict[str, str]:
    return {orphaned_runs.SUBMITTER_TAGS[name]: value for name, value in tags.items()}


def _launched_run(instance: dg.DagsterInstance, worker_pid: int) -> dg.DagsterRun:
    run = instance.add_run(dg.DagsterRun(job_name="patient_features_job", status=dg.DagsterRunStatus.STARTED,
                                         tags=orphaned_runs.submitter_tags()))
    instance.report_engine_event(f"Started process for run (pid: {worker_pid}).", run)
    return run


def test_runs_whose_worker_or_submitter_is_gone_are_ended_and_live_ones_kept(instance: dg.DagsterInstance) -> None:
    gone = _ended_process_tags()
    dead_worker = _launched_run(instance, int(gone[orphaned_runs.PID_TAG]))
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            live_worker = _launched_run(instance, live.pid)
            orphan_queued = _queued_run(instance, _as_submitter(gone))
            own_queued = _queued_run(instance, orphaned_runs.submitter_tags())
            ui_queued = _queued_run(instance, {})  # launched from the UI: no submitter
            ended = orphaned_runs.fail_orphaned_runs(instance)
        finally:
            live.kill()
    assert sorted(ended) == sorted([dead_worker.run_id, orphan_queued.run_id])

    def status(run: dg.DagsterRun) -> dg.DagsterRunStatus:
        found = instance.get_run_by_id(run.run_id)
        assert found is not None
        return found.status

    assert status(dead_worker) == dg.DagsterRunStatus.FAILURE
    assert status(orphan_queued) == dg.DagsterRunStatus.CANCELED
    assert [status(r) for r in (live_worker, own_queued, ui_queued)] == [
        dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.QUEUED, dg.DagsterRunStatus.QUEUED]


def test_a_reused_pid_is_not_taken_for_the_runs_worker(instance: dg.DagsterInstance) -> None:
    # The worker's pid now belongs to a process that started after the run's worker did: that worker is gone.
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as later:
        try:
            run = instance.add_run(dg.DagsterRun(job_name="patient_features_job", status=dg.DagsterRunStatus.STARTED))
            instance.report_engine_event(f"Started process for run (pid: {later.pid}).", run)
            entry = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ENGINE_EVENT)[0]
            assert orphaned_runs.worker_alive(instance, run)  # the process started before the event
            old = dg.EventLogEntry(error_info=None, level=entry.level, user_message=entry.user_message,
                                   run_id=run.run_id, timestamp=entry.timestamp - 3600,
                                   dagster_event=entry.dagster_event)
            older_run = instance.add_run(dg.DagsterRun(job_name="patient_features_job",
                                                       status=dg.DagsterRunStatus.STARTED))
            instance.store_event(old._replace(run_id=older_run.run_id))
            assert not orphaned_runs.worker_alive(instance, older_run)  # its event predates the process
        finally:
            later.kill()


def _count_worker_event_reads(instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each read of a run's engine events (where its worker's pid is found), by run id (a spy on Dagster's method)."""
    reads: list[str] = []
    all_logs = instance.all_logs

    def counted(run_id: str, of_type=None):  # noqa: ANN001, ANN202 - Dagster's signature
        if of_type == dg.DagsterEventType.ENGINE_EVENT:
            reads.append(run_id)
        return all_logs(run_id, of_type=of_type)

    monkeypatch.setattr(instance, "all_logs", counted)
    return reads


def test_following_a_started_run_reads_its_workers_pid_once_and_still_sees_it_die(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A command following its runs (`InstanceSession.follow`, every 0.5 s) read each started run's engine events
    twice per poll to find its worker's pid, which never changes once written: 5.3 of the 25 s of CPU the command
    itself used in the suite's 30-patient `cssci demo` (py-spy). It is read once per run now; a worker that dies
    is still seen, and its run marked failed, at the next poll."""
    from cssci_platform.cli.instance_runs import POLL_SECONDS, InstanceSession

    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as worker:
        run = _launched_run(instance, worker.pid)
        reads = _count_worker_event_reads(instance, monkeypatch)
        ended: list[dg.DagsterRun] = []
        killer = threading.Timer(8 * POLL_SECONDS, worker.kill)
        killer.start()
        try:
            InstanceSession(instance).follow([run.run_id], ended.append)
        finally:
            killer.cancel()
            worker.kill()
    assert [r.run_id for r in ended] == [run.run_id] and ended[0].status == dg.DagsterRunStatus.FAILURE
    assert f"pid {worker.pid}" in _failure_message(instance, run.run_id)
    assert reads.count(run.run_id) == 1, f"{len(reads)} reads of the run's engine events over ~9 polls"


def _failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    failures = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return " ".join(entry.message or "" for entry in failures)
