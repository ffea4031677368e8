"""What every writing command does around its work: one command per home, storage checked first, runs a killed
command left STARTED marked failed, and a clean stop on Ctrl-C / SIGTERM."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cssci_platform.cli.home import check_storage, home_lock
from cssci_platform.cli.output import INTERRUPTED_EXIT, USER_ERROR_EXIT, console, errors

if TYPE_CHECKING:  # the study config imports the whole method (torch, sklearn): only inside commands
    from cssci_platform.lib.study_config import StudyConfig


@contextmanager
def writing_command(home: Path, command: str, starts_runs: bool = False):
    """Around a command that writes to `home`: one such command per home at a time, then, before any work, the
    storage checks (warehouse writable and not locked for long, free space) and the clean-up of runs a killed
    command left STARTED. `starts_runs`: the command submits runs, so its code server starts before those
    checks (`instance_runs.starting_early`)."""
    from cssci_platform.cli.instance_runs import starting_early

    with home_lock(home.resolve(), command), stopped_cleanly(command), \
            (starting_early() if starts_runs else nullcontext()):
        check_storage()
        announce_orphaned_runs()
        yield


@contextmanager
def stopped_cleanly(command: str):
    """Ctrl-C or SIGTERM: say what was kept and exit 130 (the command's queued runs were canceled and its started runs
    terminated by its instance session, not awaited)."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        errors.print(f"[red]stopped[/] ({interrupt or 'SIGINT'}): `{escape(command)}` was interrupted. Patients "
                     "already finished are kept; its queued runs were canceled and its running ones terminated. Run it "
                     "again to finish.", soft_wrap=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None


@contextmanager
def stop_on_terminate() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt in the main thread (as Ctrl-C), so `kill` stops a command like Ctrl-C
    does; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def announce_orphaned_runs() -> None:
    """Mark failed (and say so) the runs whose process ended without finishing them."""
    import dagster as dg

    from cssci_platform.cli.orphaned_runs import fail_orphaned_runs

    with dg.DagsterInstance.get() as instance:
        orphaned = fail_orphaned_runs(instance)
    if orphaned:
        console.print(f"[yellow]marked {len(orphaned)} run(s) failed[/] whose process ended without finishing them "
                      f"(killed or crashed): {', '.join(orphaned)}")


def load_or_exit(name_or_path: str | Path, overrides: list[str]) -> StudyConfig:
    """The study config, or exit 2 printing each problem."""
    from cssci_platform.lib.study_config import ConfigError, load_config

    try:
        return load_config(name_or_path, overrides)
    except ConfigError as error:
        errors.print(f"[red]{escape(str(error))}[/]", soft_wrap=True)
        raise typer.Exit(USER_ERROR_EXIT) from None
