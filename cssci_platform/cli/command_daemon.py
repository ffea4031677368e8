"""`python -m cssci_platform.cli.command_daemon START_FILE ARGUMENTS...`: the Dagster daemon a command starts
(`dagster-daemon ARGUMENTS`, under `daemon_guard`), started beside the command's code server instead of after it: it
imports Dagster's daemon (~1 s of a 2-core machine) while that server still starts, then waits for START_FILE, which
the command creates once it has queued its first run (so the server answers, and the daemon's first look at the queue
finds that run instead of finding nothing and looking again a dequeue interval later)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cssci_platform.cli.code_server import POLL_SECONDS, STARTUP_TIMEOUT_SECONDS


def main(arguments: list[str]) -> int:
    start_file, daemon_arguments = Path(arguments[0]), arguments[1:]
    from dagster._daemon.cli import main as daemon_main

    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while not start_file.exists():
        if time.monotonic() > deadline:
            print(f"the command queued no run within {STARTUP_TIMEOUT_SECONDS:.0f} s ({start_file} absent); the "
                  "daemon did not start", file=sys.stderr)
            return 1
        time.sleep(POLL_SECONDS)
    sys.argv = ["dagster-daemon", *daemon_arguments]
    daemon_main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
