"""`python -m cssci_platform.cli.daemon_guard COMMAND...`: runs the Dagster daemon, or the code server, a `cssci`
command starts, so that it and every process it starts (the run workers) end with that command.

The guard leads a session (process group) of its own, so a Ctrl-C in the terminal reaches only the command, which
cancels its runs itself. The kernel sends the guard SIGTERM when the command that started it dies, even by SIGKILL
(PR_SET_PDEATHSIG, set by the guard as it starts); the command's own stop is SIGTERM too. On the command's stop the
guard asks the daemon to stop, then kills whatever is left of its group; when the command died it kills the group at
once (a run worker still executing: the next command marks that run failed and runs its patient again).
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

PARENT_ENV = "CSSCI_DAEMON_PARENT"  # the pid of the command that started the guard
REMOVE_ENV = "CSSCI_GUARD_REMOVES"  # a private folder of the command's to remove as the guard ends (the code server's)
STOP_GRACE_SECONDS = 20.0
POLL_SECONDS = 0.05  # a stop or the end of what it guards is seen this soon (a command waits for both of its guards)


def start_guarded(command: list[str], log: Path, cwd: Path, environment: dict[str, str] | None = None,
                  unset: tuple[str, ...] = ()) -> subprocess.Popen:
    """Start `command` under a guard of its own (its own session), output appended to `log`: it ends with this
    process, the command that starts it. `environment`: variables added for the guard and the command; `unset`: this
    process's variables they do not get."""
    log.parent.mkdir(parents=True, exist_ok=True)
    inherited = {name: value for name, value in os.environ.items() if name not in unset}
    with log.open("ab") as output:
        return subprocess.Popen([sys.executable, "-m", "cssci_platform.cli.daemon_guard", *command], cwd=cwd,
                                stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**inherited, **(environment or {}), PARENT_ENV: str(os.getpid())})


def end_with_parent(parent: int) -> None:
    """Have Linux send this process SIGTERM when the command `parent` dies, even by SIGKILL (PR_SET_PDEATHSIG); if
    it already died, stop now."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)
    if os.getppid() != parent:
        sys.exit(0)


def main(command: list[str]) -> int:
    parent = int(os.environ.get(PARENT_ENV) or os.getppid())
    end_with_parent(parent)
    stop = False

    def on_stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    daemon = subprocess.Popen(command)
    while daemon.poll() is None and not stop and os.getppid() == parent:
        time.sleep(POLL_SECONDS)
    time.sleep(POLL_SECONDS)  # a SIGTERM sent as the command died: let getppid() show it
    orphaned = os.getppid() != parent  # the command died (PR_SET_PDEATHSIG's SIGTERM, or seen here): no grace
    if daemon.poll() is None and not orphaned:
        daemon.terminate()
        try:
            daemon.wait(timeout=STOP_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if folder := os.environ.get(REMOVE_ENV):  # also when the command was killed and could not remove it itself
        shutil.rmtree(folder, ignore_errors=True)
    os.killpg(0, signal.SIGKILL)  # the code server and run workers the daemon left; this guard too
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
