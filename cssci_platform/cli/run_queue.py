"""The run queue a command keeps while no Dagster daemon heartbeats on its home: Dagster's own queued-run coordinator
(`QueuedRunCoordinatorDaemon`: the home's `concurrency.runs` limits and pools, the run launcher) and run monitoring
(`MonitoringDaemon`: runs stuck starting or canceling, dead run workers, the concurrency slots of ended runs),
iterated in a thread of the command on the command's workspace.

These are the two daemons of `dagster-daemon run` a command needs. Running them in the command instead of a daemon
process of its own saves that process's start (~2 s of CPU on a 2-core machine while the command and its code server
start, ~0.5 s at the stop), and the coordinator looks at the queue as soon as the command queued a run (`wake`), not
at its next tick (the dequeue interval, 1 s). The home's sensors and schedules are not ticked by a command: they run
under `cssci ui` (its daemon) or a deployed `dagster-daemon`, as before a command only did while it ran.

Dagster's daemons log to the `dagster.daemon` loggers: here into the home's `dagster-daemon.log`, not the terminal.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dagster._core.workspace.context import WorkspaceProcessContext
    from dagster._daemon.daemon import IntervalDaemon

DAEMON_LOGGER = "dagster.daemon"  # the parent of every Dagster daemon's logger (`get_default_daemon_logger`)
STOP_TIMEOUT_SECONDS = 60.0  # an iteration launching runs (a gRPC call per run) ends well within this


class CommandRunQueue:
    """Dequeues and launches the instance's queued runs (and monitors its runs) from a thread, between `start` and
    `stop`; `wake` makes it look at the queue at once."""

    def __init__(self, process_context: WorkspaceProcessContext, log: Path) -> None:
        from dagster._daemon.daemon import MonitoringDaemon
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon

        instance = process_context.instance
        self._context = process_context
        self._log = log
        self._coordinator = QueuedRunCoordinatorDaemon(
            interval_seconds=instance.run_coordinator.dequeue_interval_seconds)  # type: ignore[attr-defined]
        self._monitoring = (MonitoringDaemon(interval_seconds=instance.run_monitoring_poll_interval_seconds)
                            if instance.run_monitoring_enabled else None)
        self._woken = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="cssci-run-queue", daemon=True)
        self._handler: logging.Handler | None = None

    def start(self) -> None:
        self._handler = _log_daemons_to(self._log)
        self._coordinator.__enter__()
        if self._monitoring is not None:
            self._monitoring.__enter__()
        self._thread.start()

    def wake(self) -> None:
        """Look at the queue now (a run was just queued)."""
        self._woken.set()

    def stop(self) -> None:
        self._stopping.set()
        self._woken.set()
        self._thread.join(timeout=STOP_TIMEOUT_SECONDS)
        for daemon in (self._coordinator, self._monitoring):
            if daemon is not None:
                daemon.__exit__(None, None, None)
        if self._handler is not None:
            _stop_logging_to(self._handler)
            self._handler = None

    def _loop(self) -> None:
        next_monitoring = 0.0
        while not self._stopping.is_set():
            self._woken.clear()  # a wake from here on (a run queued during this iteration) ends the wait below
            self._iterate(self._coordinator)
            if self._monitoring is not None and time.monotonic() >= next_monitoring:
                self._iterate(self._monitoring)
                next_monitoring = time.monotonic() + self._monitoring.interval_seconds
            self._woken.wait(timeout=self._coordinator.interval_seconds)

    def _iterate(self, daemon: IntervalDaemon) -> None:
        """One iteration, as `dagster-daemon run` does it: its errors logged, the next one still made."""
        from dagster._utils.error import SerializableErrorInfo

        try:
            for result in daemon.run_iteration(self._context):
                if isinstance(result, SerializableErrorInfo):
                    logging.getLogger(DAEMON_LOGGER).error("%s: %s", daemon.daemon_type(), result.to_string())
        except Exception:  # noqa: BLE001 - one failed look at the queue must not end the command's run queue
            logging.getLogger(DAEMON_LOGGER).exception("%s iteration failed", daemon.daemon_type())


def _log_daemons_to(log: Path) -> logging.Handler:
    log.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(log, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logger = logging.getLogger(DAEMON_LOGGER)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # the command's terminal shows its own progress, not the daemons' lines
    return handler


def _stop_logging_to(handler: logging.Handler) -> None:
    logger = logging.getLogger(DAEMON_LOGGER)
    logger.removeHandler(handler)
    if not logger.handlers:
        logger.propagate = True
    handler.close()
