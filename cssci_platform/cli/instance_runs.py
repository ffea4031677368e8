"""Patients through the home's Dagster instance (issue 18, "runs through the instance"): each patient's partition of
`patient_features_job` is a run submitted to the instance's run queue (QueuedRunCoordinator; `max_concurrent_runs`
from dagster.yaml), dequeued and launched by the Dagster daemon (DefaultRunLauncher: one process per run), exactly
as a run launched from the UI's launchpad. The command starts a daemon for its lifetime when none heartbeats on the
instance (`cssci ui` / `dagster dev` run one), follows its runs' statuses and events, cancels them on Ctrl-C, and
skips the patients whose latest run already succeeded (running the same command again resumes).

Not yet the CLI's path: `patient_runs.run_patients` still runs patients in its own process pool (see the O1 report).
"""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg

from cssci_platform.cli.dagster_runs import QUIET_RUN_CONFIG, first_failure_of_events
from cssci_platform.cli.home import PROJECT_ROOT
from cssci_platform.cli.orphaned_runs import HOST_TAG, PID_TAG, process_alive
from cssci_platform.cli.patient_runs import PatientRunOutcome, recorded_qc_errors

PATIENT_JOB = "patient_features_job"
PARTITION_TAG = "dagster/partition"
WORKSPACE_FILE = PROJECT_ROOT / "workspace.yaml"
# A patient run executes its steps in the run's own process: parallelism is across patients (runs), bounded by the
# run queue's max_concurrent_runs; a process per step would only add start-up cost (PyRadiomics is single-threaded).
PATIENT_RUN_EXECUTION: dict[str, dict] = {"execution": {"config": {"in_process": {}}}}
POLL_SECONDS = 1.0
CANCEL_WAIT_SECONDS = 30.0
DAEMON_HEARTBEAT_TOLERANCE = 15  # beyond the daemon's 30 s heartbeat interval
WORKER_ENDED = re.compile(r"Run execution process for \S+ (was terminated by signal[^.]*)")
WORKER_STARTED = re.compile(r"Started process for run \(pid: (\d+)\)")


@contextmanager
def home_workspace(instance: dg.DagsterInstance) -> Iterator:
    """The code location of workspace.yaml (cssci_platform.definitions), loaded as the UI and the daemon load it."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(WORKSPACE_FILE)])) as process_context:
        yield process_context.create_request_context()


def submit_run(instance: dg.DagsterInstance, workspace, job_name: str, run_config: dict,
               tags: dict[str, str]) -> str:
    """Create a run of `job_name` from the workspace's code location and submit it to the instance's run coordinator
    (what `dagster job launch` and the launchpad do); returns the run id."""
    from dagster._cli.job import _create_run

    [location_name] = workspace.code_location_names
    location = workspace.get_code_location(location_name)
    repository = next(iter(location.get_repositories().values()))
    remote_job = repository.get_full_job(job_name)
    run = _create_run(instance=instance, code_location=location, remote_repo=repository, remote_job=remote_job,
                      run_config=run_config, tags=tags, op_selection=None, run_id=None)
    return instance.submit_run(run.run_id, workspace).run_id


def daemon_alive(instance: dg.DagsterInstance) -> bool:
    """Whether a Dagster daemon heartbeats on the instance (one of `cssci ui`, `dagster dev`, or another command)."""
    from dagster._daemon.controller import all_daemons_live

    return all_daemons_live(instance, heartbeat_tolerance_seconds=DAEMON_HEARTBEAT_TOLERANCE)


class DaemonKeeper:
    """Keeps a daemon dequeuing and launching the queued runs: the one already heartbeating, else one started here
    (`dagster-daemon run` on workspace.yaml, log in CSSCI_LOG_DIR) and stopped by `stop`. `ensure` is called while
    runs are followed, so a daemon that stops heartbeating (a `cssci ui` closed meanwhile) is replaced."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.process: subprocess.Popen | None = None

    def ensure(self) -> None:
        if self.process is not None and self.process.poll() is None:
            return
        if self.process is None and daemon_alive(self.instance):
            return
        log = Path(os.environ.get("CSSCI_LOG_DIR") or ".") / "dagster-daemon.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as output:
            self.process = subprocess.Popen([sys.executable, "-m", "dagster._daemon", "run", "-w",
                                             str(WORKSPACE_FILE)], cwd=PROJECT_ROOT, stdout=output,
                                            stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """Stop the daemon started here, and forget its heartbeats (the next command must not take it as alive)."""
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.instance.wipe_daemon_heartbeats()


@contextmanager
def daemon_running(instance: dg.DagsterInstance) -> Iterator[DaemonKeeper]:
    """A daemon launching the queued runs while the block runs (see `DaemonKeeper`)."""
    keeper = DaemonKeeper(instance)
    keeper.ensure()
    try:
        yield keeper
    finally:
        keeper.stop()


def latest_patient_run(instance: dg.DagsterInstance, patient_key: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=PATIENT_JOB, tags={PARTITION_TAG: patient_key}), limit=1)
    return runs[0] if runs else None


def patients_to_run(instance: dg.DagsterInstance, patient_keys: list[str]) -> list[str]:
    """The patients whose latest patient run did not succeed (none, failed, canceled): what a resumed command runs."""
    def done(key: str) -> bool:
        run = latest_patient_run(instance, key)
        return run is not None and run.status == dg.DagsterRunStatus.SUCCESS

    return [key for key in patient_keys if not done(key)]


def patient_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> PatientRunOutcome:
    """What a finished patient run did, from its event log: the failed checks (with the patient's QC errors), else
    the root cause of its first failed step, as `patient_runs.run_patient` reports an in-process run."""
    types = {dg.DagsterEventType.ASSET_CHECK_EVALUATION, dg.DagsterEventType.STEP_FAILURE,
             dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
    events = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=types) if e.dagster_event]
    failed = tuple(e.asset_check_evaluation_data.asset_check_key.name for e in events
                   if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.asset_check_evaluation_data.passed)
    success = run.status == dg.DagsterRunStatus.SUCCESS
    error = "" if success else first_failure_of_events(events, run_failure(events, run.status))
    key = run.tags[PARTITION_TAG]
    qc_errors = recorded_qc_errors(key) if failed else ()
    return PatientRunOutcome(key, success and not failed, run.run_id, failed, error, qc_errors)


def run_failure(events: list, status: dg.DagsterRunStatus) -> str:
    """Why a run without a failed step ended: its worker's death as the code server saw it ('Run execution process
    ... was terminated by signal 9 (SIGKILL)'), else the run failure's message, else where to look."""
    messages = [(e.event_type, e.message or "") for e in events]
    for event_type, message in messages:
        if event_type == dg.DagsterEventType.ENGINE_EVENT and WORKER_ENDED.search(message):
            return "its run worker ended: " + WORKER_ENDED.search(message).group(1)  # type: ignore[union-attr]
    failures = [m for t, m in messages if t == dg.DagsterEventType.RUN_FAILURE and m and not m.startswith("This run")]
    return failures[0] if failures else f"the run ended {status.value}: see it in the Dagster UI"


def cancel_runs(instance: dg.DagsterInstance, run_ids: list[str], wait: float = CANCEL_WAIT_SECONDS) -> list[str]:
    """Stop the runs among `run_ids` not finished: cancel the queued ones, terminate the started ones (a run still
    STARTING is terminated once its worker runs), waiting up to `wait` seconds for them to end; a run that has not
    ended by then is marked canceled. Returns the ids it stopped."""
    stopped: set[str] = set()
    deadline = time.monotonic() + wait
    while live := [r for r in map(instance.get_run_by_id, run_ids) if r is not None and not r.is_finished]:
        if time.monotonic() > deadline:
            for run in live:
                instance.report_run_canceled(run, f"not stopped within {wait:.0f} s of the cssci command's Ctrl-C / "
                                                  "SIGTERM; marked canceled")
            break
        for run in live:
            stopped.add(run.run_id)
            if run.status == dg.DagsterRunStatus.QUEUED:
                instance.run_coordinator.cancel_run(run.run_id)
            elif run.status == dg.DagsterRunStatus.STARTED:
                instance.run_launcher.terminate(run.run_id)
        time.sleep(POLL_SECONDS / 2)
    return sorted(stopped)


def run_worker_pid(instance: dg.DagsterInstance, run_id: str) -> int | None:
    """The pid of the process executing the run (its 'Started process for run (pid: N)' engine event), None before
    the run has started one."""
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        if match := WORKER_STARTED.search(entry.message or ""):
            return int(match.group(1))
    return None


def fail_if_worker_died(instance: dg.DagsterInstance, run_id: str) -> bool:
    """Mark FAILURE a started run whose worker process is gone (SIGKILL, out of memory): the default run launcher
    cannot see it, so the run would stay STARTED for ever. True when it did."""
    run = instance.get_run_by_id(run_id)
    if run is None or run.status != dg.DagsterRunStatus.STARTED:
        return False
    pid = run_worker_pid(instance, run_id)
    if pid is None or process_alive({PID_TAG: str(pid), HOST_TAG: socket.gethostname()}):
        return False
    if (instance.get_run_by_id(run_id) or run).is_finished:  # it ended between the two reads
        return False
    instance.report_run_failed(run, f"its run worker (pid {pid}) ended without finishing it (killed, or out of "
                                    "memory); run the command again")
    return True


def follow_runs(instance: dg.DagsterInstance, run_ids: list[str], on_outcome: Callable[[PatientRunOutcome], None],
                daemon: DaemonKeeper | None = None) -> list[PatientRunOutcome]:
    """Wait for `run_ids` to finish, reporting each patient as its run ends (failures as they happen)."""
    waiting, outcomes = list(run_ids), []
    while waiting:
        if daemon is not None:
            daemon.ensure()
        for run_id in list(waiting):
            fail_if_worker_died(instance, run_id)
            run = instance.get_run_by_id(run_id)
            if run is not None and run.is_finished:
                waiting.remove(run_id)
                outcome = patient_outcome(instance, run)
                on_outcome(outcome)
                outcomes.append(outcome)
        if waiting:
            time.sleep(POLL_SECONDS)
    return outcomes


def run_patients_on_instance(instance: dg.DagsterInstance, patient_keys: list[str],
                             on_outcome: Callable[[PatientRunOutcome], None] = lambda outcome: None
                             ) -> list[PatientRunOutcome]:
    """Submit a run per patient not yet done to the instance's queue, have a daemon launch them, and report each as
    it ends. Ctrl-C (KeyboardInterrupt) cancels every run this call submitted that has not finished, then
    propagates. Patients whose latest run succeeded are not run again (their outcome is not reported)."""
    pending = patients_to_run(instance, patient_keys)
    if not pending:
        return []
    submitted: list[str] = []
    with home_workspace(instance) as workspace, daemon_running(instance) as daemon:
        try:
            for key in pending:
                submitted.append(submit_run(instance, workspace, PATIENT_JOB, {**QUIET_RUN_CONFIG,
                                                                               **PATIENT_RUN_EXECUTION},
                                            {PARTITION_TAG: key}))
            return follow_runs(instance, submitted, on_outcome, daemon)
        except BaseException:  # cancelled while the daemon's code server (which runs them) still answers
            cancel_runs(instance, submitted)
            raise
