"""Every unit of work the command line starts is a run submitted to the home's Dagster instance (issue 18, "runs
through the instance"): created from workspace.yaml's code location and put on the instance's run queue
(QueuedRunCoordinator: `concurrency.runs.max_concurrent_runs` and `run_queue` from the home's dagster.yaml),
dequeued and launched by Dagster's queued-run coordinator (DefaultRunLauncher: one process per run, the job's own
executor), exactly as a run launched from the UI's launchpad.

One `InstanceSession` per command: on first use it loads the workspace (the command's code server) and, unless a
daemon already heartbeats on the instance (`cssci ui`, `dagster dev`), keeps the run queue itself
(`run_queue.CommandRunQueue`: Dagster's coordinator and run monitoring in a thread); follows its runs' statuses and
events; and on Ctrl-C / SIGTERM cancels the runs it submitted (queued: canceled, started: terminated). Its code server
and the run workers it started die with the command, even when the command is killed (SIGKILL): the next command
marks the runs whose worker is gone as failed (`orphaned_runs.fail_orphaned_runs`) and runs again what did not
succeed.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import dagster as dg
import yaml

from cssci_platform.cli.code_server import WORKSPACE_FILE, StartingCodeServer, code_server, start_code_server
from cssci_platform.cli.dagster_runs import QUIET_RUN_CONFIG, error_root_cause, first_failure_of_events
from cssci_platform.cli.guards import stop_on_terminate
from cssci_platform.cli.orphaned_runs import (
    RunWorker,
    daemon_alive,
    run_worker,
    run_worker_pid,
    submitter_tags,
    worker_alive,
)
from cssci_platform.cli.run_queue import CommandRunQueue

PARTITION_TAG = "dagster/partition"
POLL_SECONDS = 0.5  # the slowest poll of the runs a command follows
FIRST_POLL_SECONDS = 0.05  # the first poll after a submission, a run's new status or a run's last patient
POLL_BACKOFF = 1.5  # each poll without news waits this much longer, up to POLL_SECONDS
EVENT_PAGE = 500  # events read per query while following a run
TERMINATE_GRACE_SECONDS = 5.0  # a started run asked to stop gets this long before its worker is killed
CANCEL_WAIT_SECONDS = 10.0
# The run queue's dequeue interval (Dagster's default is 5 s): each run would wait that long after the previous one.
DEQUEUE_SETTINGS = {"dequeue_interval_seconds": 1, "dequeue_use_threads": True}
WORKER_ENDED = re.compile(r"Run execution process for \S+ (was terminated by signal[^.]*)")
RUN_EVENTS = {dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.STEP_START,
              dg.DagsterEventType.STEP_OUTPUT, dg.DagsterEventType.ASSET_CHECK_EVALUATION,
              dg.DagsterEventType.ASSET_OBSERVATION}  # a patient batch run's per-patient outcome


@dataclass(frozen=True)
class RunEnded:
    """A finished run: its success, and otherwise the root cause of its first failure (one line)."""

    run_id: str
    job_name: str
    partition: str | None
    success: bool
    failure: str = ""

    @property
    def subject(self) -> str:
        return f"{self.job_name} ({self.partition})" if self.partition else self.job_name


def write_run_queue_limit(dagster_home: Path, max_concurrent_runs: int) -> None:
    """Set the home's run queue: `concurrency.runs.max_concurrent_runs` (what `--workers` sets: how many runs, e.g.
    patients, execute at once) and a 1-second dequeue interval; other settings of the home's dagster.yaml are kept."""
    path = dagster_home / "dagster.yaml"
    document = (yaml.safe_load(path.read_text(encoding="utf-8")) if path.exists() else None) or {}
    runs = document.setdefault("concurrency", {}).setdefault("runs", {})
    queue = document.setdefault("run_queue", {})
    if runs.get("max_concurrent_runs") == max_concurrent_runs and all(queue.get(k) == v
                                                                        for k, v in DEQUEUE_SETTINGS.items()):
        return
    runs["max_concurrent_runs"] = max_concurrent_runs
    queue.update(DEQUEUE_SETTINGS)
    dagster_home.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def log_folder() -> Path:
    """Where a command's run queue and code server write their logs: CSSCI_LOG_DIR (the home's logs)."""
    return Path(os.environ.get("CSSCI_LOG_DIR") or ".")


@contextmanager
def workspace_process(instance: dg.DagsterInstance, workspace_file: Path = WORKSPACE_FILE) -> Iterator:
    """The code location of `workspace_file` (workspace.yaml: cssci_platform.definitions, in a code server of its
    own, as the UI and a daemon load it; a command's: its shared code server), as Dagster's workspace process."""
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    with WorkspaceProcessContext(instance, WorkspaceFileTarget([str(workspace_file)]),
                                 code_server_log_level="WARNING") as process_context:  # no start/stop lines
        yield process_context


@contextmanager
def home_workspace(instance: dg.DagsterInstance, workspace_file: Path = WORKSPACE_FILE) -> Iterator:
    """The workspace of `workspace_process`, for one request (what the launchpad's GraphQL calls are made on)."""
    with workspace_process(instance, workspace_file) as process_context:
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


class RunQueueKeeper:
    """Keeps the queued runs dequeued and launched: by the Dagster daemon already heartbeating on the instance (a
    `cssci ui`'s, a deployed one), else by the command's own run queue (`run_queue.CommandRunQueue`: Dagster's
    queued-run coordinator and run monitoring in a thread, on the command's workspace; its log in CSSCI_LOG_DIR),
    stopped by `stop`. `ensure` is called while runs are followed, so a daemon that stops heartbeating (a `cssci ui`
    closed meanwhile) is replaced."""

    def __init__(self, process_context) -> None:
        self.process_context = process_context
        self.queue: CommandRunQueue | None = None

    def ensure(self) -> None:
        if self.queue is not None or daemon_alive(self.process_context.instance):
            return
        self.queue = CommandRunQueue(self.process_context, log_folder() / "dagster-daemon.log")
        self.queue.start()

    def wake(self) -> None:
        """A run was queued: the command's run queue looks at once (a daemon looks at its next tick)."""
        if self.queue is not None:
            self.queue.wake()

    def stop(self) -> None:
        if self.queue is not None:
            self.queue.stop()
            self.queue = None


_early_servers: list[StartingCodeServer] = []  # at most one: the command's, until its `InstanceSession` takes it over


@contextmanager
def starting_early() -> Iterator[None]:
    """Start the command's code server now, while the command still checks its home (on a new home, creating the
    warehouse and the instance's storage takes ~0.8 s of a 2-core machine): by the command's first submission the
    server has loaded the definitions and its fork server has preloaded the run workers. The command's
    `InstanceSession` takes it over. The server never opens the instance (`code_server.INSTANCE_ENV`), which the
    command creates meanwhile. Stopped when the block ends unless taken over."""
    server = start_code_server(log_folder())
    _early_servers.append(server)
    try:
        yield
    finally:
        if server in _early_servers:
            _early_servers.remove(server)
            server.stop()


@contextmanager
def run_queue_running(instance: dg.DagsterInstance) -> Iterator[RunQueueKeeper]:
    """Queued runs launched while the block runs (see `RunQueueKeeper`), from workspace.yaml's code location."""
    with workspace_process(instance) as process_context:
        keeper = RunQueueKeeper(process_context)
        keeper.ensure()
        try:
            yield keeper
        finally:
            keeper.stop()


def run_failure(events: list, status: dg.DagsterRunStatus) -> str:
    """Why a run without a failed step ended: its worker's death as the code server saw it ('Run execution process
    ... was terminated by signal 9 (SIGKILL)'), else what its executor raised (a step's task that failed in a Celery
    worker: which step and why), else the run failure's message, else where to look."""
    messages = [(e.event_type, e.message or "") for e in events]
    for event_type, message in messages:
        if event_type == dg.DagsterEventType.ENGINE_EVENT and (found := WORKER_ENDED.search(message)):
            return "its run worker ended: " + found.group(1)
    for event in events:
        error = getattr(event.event_specific_data, "error", None)
        if event.event_type == dg.DagsterEventType.RUN_FAILURE and error is not None:
            return executor_failure(error)
    failures = [m for t, m in messages if t == dg.DagsterEventType.RUN_FAILURE and m and not m.startswith("This run")]
    return failures[0] if failures else f"the run ended {status.value}: see it in the Dagster UI"


# dagster-celery's error when a step's task failed in a worker (the task itself, not the step: e.g. refused there)
CELERY_TASK_FAILURES = "During celery execution errors occurred in workers:"
CELERY_TASK_FAILURE = re.compile(r"^\[(?P<step>[^\]]+)\]: (?:[\w.]+\.)?(?P<error>\w+: .*)$", re.MULTILINE)


def executor_failure(error) -> str:
    """The first failed Celery task's step and its error's first line ('step: Error: text'), else the root cause of
    what the executor raised."""
    info = error
    while info is not None:  # the executor's error, or one it was raised from
        if CELERY_TASK_FAILURES in info.message and (found := CELERY_TASK_FAILURE.search(info.message)):
            return f"{found.group('step')}: {found.group('error')}"
        info = info.cause or info.context
    return error_root_cause(error)


def ended_run(instance: dg.DagsterInstance, run: dg.DagsterRun) -> RunEnded:
    """What a finished run did: success, or the root cause of its first failed step (else why the run failed)."""
    success = run.status == dg.DagsterRunStatus.SUCCESS
    failure = ""
    if not success:
        types = {dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE, dg.DagsterEventType.ENGINE_EVENT}
        events = [e.dagster_event for e in instance.all_logs(run.run_id, of_type=types) if e.dagster_event]
        failure = first_failure_of_events(events, run_failure(events, run.status))
    return RunEnded(run.run_id, run.job_name, run.tags.get(PARTITION_TAG), success, failure)


def cancel_runs(instance: dg.DagsterInstance, run_ids: list[str], wait: float = CANCEL_WAIT_SECONDS) -> list[str]:
    """Stop the runs among `run_ids` not finished: cancel the queued ones, ask the started ones to terminate and kill
    the worker of one still running after TERMINATE_GRACE_SECONDS; a run not ended after `wait` seconds is marked
    canceled. Returns the ids it stopped."""
    stopped: set[str] = set()
    started = time.monotonic()
    asked: set[str] = set()
    while live := [r for r in map(instance.get_run_by_id, run_ids) if r is not None and not r.is_finished]:
        waited = time.monotonic() - started
        for run in live:
            stopped.add(run.run_id)
            if run.status == dg.DagsterRunStatus.QUEUED:
                instance.run_coordinator.cancel_run(run.run_id)
            elif waited > wait:
                instance.report_run_canceled(run, f"not stopped within {wait:.0f} s of the cssci command's Ctrl-C / "
                                                  "SIGTERM; marked canceled")
            elif waited > TERMINATE_GRACE_SECONDS and (pid := run_worker_pid(instance, run.run_id)):
                _kill(pid)
            elif run.status in (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING) and run.run_id not in asked:
                asked.add(run.run_id)
                try:
                    instance.run_launcher.terminate(run.run_id)
                except Exception:  # noqa: BLE001 - the code server is gone: the worker is killed after the grace
                    pass
        time.sleep(POLL_SECONDS)
    return sorted(stopped)


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def fail_if_worker_died(instance: dg.DagsterInstance, run: dg.DagsterRun, worker: RunWorker) -> bool:
    """Mark FAILURE a started run whose worker process is gone (SIGKILL, out of memory): the default run launcher
    cannot see it, so the run would stay STARTED for ever. `run` as just read, `worker` its worker (`run_worker`).
    True when it did."""
    if run.status != dg.DagsterRunStatus.STARTED or worker.pid is None or worker_alive(instance, run, worker):
        return False
    if (instance.get_run_by_id(run.run_id) or run).is_finished:  # it ended since `run` was read
        return False
    instance.report_run_failed(run, f"its run worker (pid {worker.pid}) ended without finishing it (killed, or out "
                                    "of memory); run the command again")
    return True


class InstanceSession:
    """The runs one command submits to the home's instance. The workspace and the run queue are loaded on the first
    submission (a command with nothing to run starts neither); `close` stops them."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self.submitted: list[str] = []
        self.stop_signal = ""  # SIGINT / SIGTERM received: raised as KeyboardInterrupt at the next check
        self._stack = ExitStack()
        self._workspace = None
        self._run_queue: RunQueueKeeper | None = None

    def submit(self, job_name: str, partition: str | None = None, run_config: dict | None = None,
               tags: dict[str, str] | None = None) -> str:
        """Put a run of `job_name` (for `partition`) on the run queue; returns its id."""
        self.check_stop()
        if self._workspace is None:
            early = _early_servers.pop() if _early_servers else None
            server = self._stack.enter_context(code_server(log_folder(), early)).serving()
            process_context = self._stack.enter_context(workspace_process(self.instance, server.workspace_file))
            self._run_queue = RunQueueKeeper(process_context)
            self._stack.callback(self._run_queue.stop)  # before the workspace and the server it launches runs on
            self._workspace = process_context.create_request_context()
        all_tags = {**submitter_tags(), **(tags or {}), **({PARTITION_TAG: partition} if partition else {})}
        run_id = submit_run(self.instance, self._workspace, job_name, {**QUIET_RUN_CONFIG, **(run_config or {})},
                            all_tags)
        self.submitted.append(run_id)
        assert self._run_queue is not None
        self._run_queue.ensure()
        self._run_queue.wake()
        return run_id

    def follow(self, run_ids: list[str], on_ended: Callable[[dg.DagsterRun], None],
               on_event: Callable[[dg.EventLogEntry], None] | None = None,
               ending: Callable[[str], bool] = lambda run_id: False) -> None:
        """Wait for `run_ids` to finish (runs of a killed command, queued or started, may be among them), calling
        `on_ended` with each finished run as it ends and `on_event` with each step / check event as it happens.
        Polls soon after it starts, after a run's status changes, and while `ending(run_id)` says a run has done all
        its work, then ever more slowly up to every POLL_SECONDS: a short run's end, or the end of a run that
        reported its last patient, is seen within ~0.1 s instead of half a poll interval later."""
        waiting = list(run_ids)
        cursors: dict[str, str | None] = {}  # per run, where its events were last read: each poll reads only new ones
        workers: dict[str, RunWorker] = {}  # per started run, its worker once its engine event names it
        statuses: dict[str, dg.DagsterRunStatus | None] = {}
        interval = FIRST_POLL_SECONDS / POLL_BACKOFF
        while waiting:
            self.check_stop()
            if self._run_queue is not None:
                self._run_queue.ensure()
            runs = {run.run_id: run for run in self.instance.get_runs(filters=dg.RunsFilter(run_ids=waiting))}
            for run_id in list(waiting):
                run = runs.get(run_id)
                if run is not None and run.status == dg.DagsterRunStatus.STARTED:
                    worker = workers.get(run_id) or run_worker(self.instance, run_id)
                    if worker.pid is not None:
                        workers[run_id] = worker
                    if fail_if_worker_died(self.instance, run, worker):
                        run = self.instance.get_run_by_id(run_id)
                if on_event is not None:
                    self._new_events(run_id, cursors, on_event)
                status = run.status if run is not None else None
                changed = statuses.get(run_id, dg.DagsterRunStatus.QUEUED) != status
                statuses[run_id] = status
                if run is None or run.is_finished:
                    waiting.remove(run_id)
                    if run is not None:
                        on_ended(run)
                elif changed or ending(run_id):
                    interval = FIRST_POLL_SECONDS / POLL_BACKOFF
            if waiting:
                interval = min(interval * POLL_BACKOFF, POLL_SECONDS)
                time.sleep(interval)

    def _new_events(self, run_id: str, cursors: dict[str, str | None],
                    on_event: Callable[[dg.EventLogEntry], None]) -> None:
        while True:
            page = self.instance.get_records_for_run(run_id, cursor=cursors.get(run_id), of_type=RUN_EVENTS,
                                                     limit=EVENT_PAGE)
            for record in page.records:
                on_event(record.event_log_entry)
            cursors[run_id] = page.cursor
            if not page.has_more:
                return

    def run(self, job_name: str, partition: str | None = None, run_config: dict | None = None,
            tags: dict[str, str] | None = None,
            on_event: Callable[[dg.EventLogEntry], None] | None = None) -> RunEnded:
        """Submit a run and wait for it: its success or the root cause of its failure."""
        run_id = self.submit(job_name, partition, run_config, tags)
        return self.wait(run_id, on_event) or RunEnded(run_id, job_name, partition, False,
                                                      "the run vanished from the instance")

    def wait(self, run_id: str, on_event: Callable[[dg.EventLogEntry], None] | None = None) -> RunEnded | None:
        """Wait for a submitted run: its success or the root cause of its failure; None if it vanished."""
        ended: list[RunEnded] = []
        self.follow([run_id], lambda run: ended.append(ended_run(self.instance, run)), on_event)
        return ended[0] if ended else None

    def check_stop(self) -> None:
        """Raise KeyboardInterrupt (named by the signal) once Ctrl-C or SIGTERM was received."""
        if self.stop_signal:
            raise KeyboardInterrupt(self.stop_signal)

    def cancel_unfinished(self) -> list[str]:
        """Cancel / terminate every run submitted here that has not finished (Ctrl-C, SIGTERM)."""
        return cancel_runs(self.instance, self.submitted) if self.submitted else []

    def close(self) -> None:
        self._stack.close()


@contextmanager
def instance_session(instance: dg.DagsterInstance) -> Iterator[InstanceSession]:
    """A session for one command. Ctrl-C (SIGINT) and SIGTERM are noted and raised as KeyboardInterrupt where the
    session next submits or polls (never inside a library's half-done call, e.g. a storage connection being
    closed); a second one is raised at once. An interrupted (or failed) block cancels the runs it submitted, while
    the code server that runs them still answers, before it stops."""
    session = InstanceSession(instance)
    with stop_on_terminate(), _noted_signals(session):
        try:
            yield session
        except BaseException:
            session.cancel_unfinished()
            raise
        finally:
            session.close()


@contextmanager
def _noted_signals(session: InstanceSession) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if session.stop_signal:
            raise KeyboardInterrupt(name)
        session.stop_signal = name

    previous = {number: signal.signal(number, note) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
