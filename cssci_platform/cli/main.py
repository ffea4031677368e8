"""`cssci`: the command line of the platform. Each command lives in the module of its kind; this module registers
them and turns every failure into one message and an exit code. Command modules import the method (dagster, mlflow,
torch, the study config) only inside their commands, so `cssci --help` answers at once (test_cli_speed.py).

- `study_commands`: demo-data, demo, run (a whole study from one config; stages in `study_stages`)
- `cohort_commands`: ingest, qc, report, predict (the cohort and study of one home)
- `status_command`: status (the cohort overview of one home)
- `config_commands`: config list/show/validate
- `server_commands`: ui, worker (the cluster profile's Celery worker), compare
- support: `home` (stores, study file, lock, storage checks), `guards`, `instance_runs` (every unit of work a run
  submitted to the home's instance, launched from its run queue: `run_queue`), `code_server` (under `daemon_guard`),
  `patient_runs`, `dagster_runs`, `orphaned_runs`, `output`
"""

from __future__ import annotations

import gc
import os
import sys
import time
import traceback
from pathlib import Path

import typer
from rich.markup import escape

from cssci_platform.cli import cohort_commands, server_commands, status_command, study_commands
from cssci_platform.cli.config_commands import config_app
from cssci_platform.cli.guards import stop_on_terminate
from cssci_platform.cli.output import FAILURE_EXIT, USER_ERROR_EXIT, errors
from cssci_platform.lib import failures

# No pretty tracebacks: rich's traceback walks an exception chain without cycle detection, and Dagster's are
# cyclic (the command never ended, its memory grew by ~1 GB a minute). `main` prints one message instead.
app = typer.Typer(help="Spine MRI prognosis platform: cohorts, features and models on Dagster + DuckDB.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
app.command("demo-data")(study_commands.demo_data)
app.command()(cohort_commands.ingest)
app.command()(study_commands.demo)
app.command()(study_commands.run)
app.command()(cohort_commands.report)
app.command()(cohort_commands.qc)
app.command()(status_command.status)
app.command()(cohort_commands.predict)
app.command()(server_commands.ui)
app.command()(server_commands.worker)
app.add_typer(config_app, name="config")
app.command()(server_commands.compare)

DEBUG_ENV = "CSSCI_DEBUG"  # set to 1 to also print the full traceback of a failed command


def main() -> None:
    """`cssci`: every failure ends the command at once with one message and a non-zero exit code, never a
    traceback (the full one goes to $CSSCI_LOG_DIR, or to the terminal with CSSCI_DEBUG=1)."""
    try:
        with stop_on_terminate():  # `kill` stops a command as Ctrl-C does
            app()
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as error:  # typer.Exit / usage errors leave through SystemExit
        sys.exit(report_failure(error))
    finally:
        # The command has written and closed what it made. Python's last garbage collection as it exits would walk
        # every object Dagster and the method loaded (0.6-0.8 s of a 2-core machine after `cssci ingest`,
        # benchmarks/command_exit.py); frozen, they are left to the operating system. Exit handlers still run.
        gc.freeze()


def user_error_types() -> tuple[type[BaseException], ...]:
    from cssci_platform.lib.cohort import ManifestError
    from cssci_platform.lib.study_config import ConfigError

    return (ConfigError, ManifestError, failures.UserError)


def report_failure(error: BaseException) -> int:
    """Print what went wrong (user errors: the message as it is; other errors: the explained root cause) and
    return the exit code."""
    user_error = next((e for e in failures.exception_chain(error) if isinstance(e, user_error_types())), None)
    message = str(user_error) if user_error is not None else failures.describe(error)
    errors.print(f"[red]error[/]: {escape(message)}", soft_wrap=True)
    if user_error is None:
        log = _write_traceback(error)
        errors.print(f"full traceback: {log}" if log else f"set {DEBUG_ENV}=1 for the full traceback")
    if os.environ.get(DEBUG_ENV) == "1":
        traceback.print_exception(error)  # the standard formatter stops at a cycle
    return USER_ERROR_EXIT if user_error is not None else FAILURE_EXIT


def _write_traceback(error: BaseException) -> Path | None:
    folder = os.environ.get("CSSCI_LOG_DIR")
    if not folder:
        return None
    path = Path(folder) / f"cssci-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}.log"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        command = f"cssci {' '.join(sys.argv[1:])}\n"
        path.write_text(command + "".join(traceback.format_exception(error)), encoding="utf-8")
    except OSError:  # a full or read-only disk is often why we are here
        return None
    return path


if __name__ == "__main__":
    main()
