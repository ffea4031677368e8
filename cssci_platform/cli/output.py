"""What `cssci` prints: the consoles, exit codes, patient progress, the home summary and the comparison table."""

from __future__ import annotations

import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from cssci_platform.lib.profiles import CLUSTER_FILE_ENV, PROFILE_ENV, WAREHOUSE_SERVER_ENV

if TYPE_CHECKING:
    from rich.progress import TaskID

REDIRECTED_WIDTH = 10_000  # output to a file or pipe is never cut or wrapped: a reader scrolls, a script parses it


def _console(stderr: bool = False) -> Console:
    """A terminal gets rich's usual console; a file or pipe one so wide that no line, table cell or path is cut or
    wrapped (rich would otherwise use 80 columns and cut table cells with '…'). $COLUMNS, when set, still wins."""
    console = Console(stderr=stderr)
    if console.is_terminal or os.environ.get("COLUMNS"):
        return console
    return Console(stderr=stderr, width=REDIRECTED_WIDTH, soft_wrap=True)


console = _console()
errors = _console(stderr=True)
USER_ERROR_EXIT = 2  # the input is wrong (a file, a config, an option): fix it and run again
FAILURE_EXIT = 1  # the run failed (disk, lock, a step): the message names the root cause
INTERRUPTED_EXIT = 130
LOCAL_ONLY = "127.0.0.1"  # the UIs serve patient data: only this machine reaches them unless the user says otherwise


def rule(title: str) -> None:
    """A section heading: rich's full-width rule on a terminal, a short one in a file."""
    if console.is_terminal:
        console.rule(title)
    else:
        console.print(f"──── {title} ────")


class StageBars:
    """A progress bar per stage of a command, fed from its runs' events: finished (failed), remaining, elapsed and
    ETA; a patient that fails or is quarantined is printed (with the reason) as it happens. Use as a context manager;
    `stage` starts the next bar (the finished ones stay on screen), `units` sets the current stage's counts."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        counts = TextColumn("{task.completed:.0f} finished ({task.fields[failed]} failed), "
                            "{task.fields[remaining]} remaining")
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(), counts, TimeElapsedColumn(),
                                 TextColumn("ETA"), TimeRemainingColumn(), console=console)
        self.task: TaskID | None = None
        self.name = ""
        self.patients_done = self.patients_failed = self.patients_total = 0

    def __enter__(self) -> StageBars:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def stage(self, name: str) -> None:
        """A new stage: its heading now, its bar once it reports counts."""
        self.name, self.task = name, None
        self.progress.console.print(f"──── {name} ────")

    def units(self, done: int, failed: int, total: int) -> None:
        if self.task is None:
            self.task = self.progress.add_task(self.name[:40], total=total, failed=0, remaining=total)
        self.progress.update(self.task, completed=done, total=total, failed=failed, remaining=total - done)

    def message(self, text: str) -> None:
        self.progress.console.print(text)

    def pending_patients(self, pending: int, total: int) -> None:
        """Before the patients run: how many will (a resumed command skips those whose latest run succeeded)."""
        self.patients_done = self.patients_failed = 0
        self.patients_total = pending
        if pending < total:
            self.message(f"{total - pending} of {total} patients already done (their latest run succeeded): not "
                         "run again")
        self.units(0, 0, pending)

    def patient(self, outcome) -> None:
        """A patient's run ended: count it; a failed or quarantined one is printed with the reason."""
        self.patients_done += 1
        self.patients_failed += not outcome.success
        self.units(self.patients_done, self.patients_failed, max(self.patients_total, self.patients_done))
        if not outcome.success:
            what = "failed" if outcome.failed_outside_qc else "quarantined"
            self.message(f"[yellow]{what}[/] {outcome.patient_key}: {escape(outcome.reason)}")


def print_summary(home: Path, larger_cohort_hint: str | None) -> None:
    """The home after a command: patients per status, features, champions, QC errors, where to look next."""
    from cssci_platform.lib.queries import summary
    from cssci_platform.lib.warehouse import connect

    warehouse = Path(os.environ["CSSCI_WAREHOUSE"])
    with connect(warehouse, read_only=True) as con:
        status = summary.patients_per_status(con)
        per_patient = summary.radiomics_values_per_patient(con)
        issues = summary.qc_errors(con)
        champions = summary.champion_summaries(con)
        embedded = summary.embedding_coverage(con)
    table = Table(title="cohort")
    table.add_column("status")
    table.add_column("patients", justify="right")
    for name, count in status:
        table.add_row(name, str(count))
    console.print(table)
    console.print(f"radiomics feature values per patient (median): {per_patient}")
    console.print(f"deep features: {embedded.patients} patients, {embedded.slices} slice embeddings of "
                  f"{embedded.values_per_slice} values, {embedded.networks}")
    if champions:
        models = Table(title="champions (registered in MLflow, alias 'champion'; chosen by CV AUC on training folds)")
        for column in ("signature", "model", "version", "CV AUC", "test AUC", "test n"):
            models.add_column(column)
        for champion in champions:
            models.add_row(champion.signature, champion.model, str(champion.version), f"{champion.cv_auc:.3f}",
                           "-" if champion.test_auc is None else f"{champion.test_auc:.3f}",
                           "-" if champion.test_n is None else f"{champion.test_n:.0f}")
        console.print(models)
        if larger_cohort_hint and _small_test_set(champions):
            console.print(f"A small synthetic test set gives wide AUC intervals; run `{escape(larger_cohort_hint)}` "
                          "for stabler figures.")
    qc_details, *explore_and_servers = next_steps(home, warehouse, os.environ["CSSCI_MLFLOW_URI"])
    console.print(f"QC errors: {len(issues)}" + (f"  (details: {escape(qc_details.command)})" if issues else ""))
    for key, stage, code, message in issues:
        console.print(f"[red]QC[/] {escape(f'{key} [{stage}/{code}] {message}')}")
    console.print(f"warehouse: {escape(str(warehouse))}")
    for step in explore_and_servers:
        if not step.command:  # a server that runs already
            console.print(f"{step.what + ':':10} open {step.then_open}")
            continue
        console.print(f"{step.what + ':':10} {escape(step.command)}" + (f"\n{'':10} then open {step.then_open}"
                                                                       if step.then_open else ""))


@dataclass(frozen=True)
class NextStep:
    """A command the summary suggests, printed so that it runs as it is (copy, paste, enter)."""

    what: str
    command: str  # "" where nothing needs starting (a server that runs already: open `then_open`)
    then_open: str = ""  # the page to open once it runs (a server)


UI_PORT = 3000
MLFLOW_PORT = 5000
EXPLORE_SQL = "SELECT * FROM patient_status"


def cssci_program() -> list[str]:
    """How to start `cssci` as this process was started: the `cssci` script of this Python's environment (a shell
    without the environment activated has no `cssci` on its PATH), else `python -m cssci_platform.cli.main`."""
    script = Path(sys.executable).parent / "cssci"
    return [str(script)] if script.is_file() else [sys.executable, "-m", "cssci_platform.cli.main"]


def next_steps(home: Path, warehouse: Path, mlflow_uri: str) -> list[NextStep]:
    """What to run next, each as a complete command line: QC details, the warehouse in SQL (no duckdb CLI ships
    with the platform: this Python's duckdb module), the Dagster UI, the MLflow UI on this home's store (opened on
    the study's experiment in MLflow's classic machine-learning view)."""
    home = home.resolve()
    mlflow = Path(sys.executable).parent / "mlflow"
    mlflow_command = [str(mlflow) if mlflow.is_file() else "mlflow", "ui", "--backend-store-uri", mlflow_uri,
                      "--host", LOCAL_ONLY, "--port", str(MLFLOW_PORT)]
    served = mlflow_uri.startswith(("http://", "https://"))  # a tracking server (cluster profile): open it
    return [
        NextStep("QC", shlex.join([*cssci_program(), "qc", "--home", str(home)])),
        NextStep("explore", shlex.join(explore_command(home, warehouse))),
        NextStep("UI", shlex.join([*cssci_program(), "ui", "--home", str(home), "--port", str(UI_PORT)]),
                 f"http://{LOCAL_ONLY}:{UI_PORT}"),
        NextStep("MLflow", "" if served else shlex.join(mlflow_command),
                 _mlflow_page(home, mlflow_uri, mlflow_uri if served else f"http://{LOCAL_ONLY}:{MLFLOW_PORT}")),
    ]


def explore_command(home: Path, warehouse: Path) -> list[str]:
    """A Python one-liner that prints EXPLORE_SQL's answer: the local DuckDB file through this Python's duckdb
    module; in the cluster profile the PostgreSQL warehouse through the platform's connection, with the servers read
    from the cluster file (so no password is printed) by the profile's variables set on the command line."""
    # JSON strings are Python strings in double quotes: the shell command needs no escaped single quotes
    if not os.environ.get(WAREHOUSE_SERVER_ENV):
        return [sys.executable, "-c", f"import duckdb; duckdb.connect({json.dumps(str(warehouse))}, read_only=True)"
                f".sql({json.dumps(EXPLORE_SQL)}).show(max_rows=100, max_width=250)"]
    query = ("from pathlib import Path; import polars as pl; from cssci_platform.cli.home import configure_environment;"
             " from cssci_platform.lib.warehouse import table_frame; pl.Config.set_tbl_rows(100); "
             f"configure_environment(Path({json.dumps(str(home))})); "
             f"print(table_frame(Path({json.dumps(str(warehouse))}), {json.dumps(EXPLORE_SQL)}))")
    profile = [f"{PROFILE_ENV}=cluster", f"{CLUSTER_FILE_ENV}={os.environ.get(CLUSTER_FILE_ENV, '')}"]
    return ["env", *profile, sys.executable, "-c", query]


def _mlflow_page(home: Path, mlflow_uri: str, server: str) -> str:
    """The study's experiment page on `server`, in the classic ML view (MLflow 3's UI opens the GenAI view unless
    told)."""
    from cssci_platform.cli.home import home_experiment_name
    from cssci_platform.lib.model_tracking import existing_experiment_id, experiment_page_url

    name = home_experiment_name(home)
    return experiment_page_url(server, existing_experiment_id(mlflow_uri, name) if name else None)


def comparison_table(frame, title: str) -> Table:
    """One row per model when that fits the terminal; otherwise one row per model and metric (A, B, B-A)."""
    wide = Table(*frame.columns, title=title)
    for row in frame.itertuples(index=False):
        wide.add_row(*[_cell(v, c) for v, c in zip(row, frame.columns)])
    if Measurement.get(console, console.options.update(max_width=10_000), wide).maximum <= console.width:
        return wide
    keys = [c for c in frame.columns if not c.endswith((" A", " B", " B-A"))]
    metrics = [c[:-2] for c in frame.columns if c.endswith(" A")]
    long = Table(*keys, "metric", "A", "B", "B-A", title=title)
    for _, row in frame.iterrows():
        for index, metric in enumerate(metrics):
            delta = row.get(f"{metric} B-A")
            values = [_cell(row[f"{metric} A"], f"{metric} A"), _cell(row[f"{metric} B"], f"{metric} B"),
                      "" if delta is None else _cell(delta, f"{metric} B-A")]
            long.add_row(*[str(row[k]) if index == 0 else "" for k in keys], metric, *values,
                         end_section=index == len(metrics) - 1)
    return long


def _cell(value: object, column: str) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if not isinstance(value, float):
        return str(value)
    if column.endswith("B-A"):
        return f"{value:+.3f}"
    return f"{value:.0f}" if " n " in f" {column} " else f"{value:.3f}"


def _small_test_set(champions: list) -> bool:
    """Whether a champion was tested on fewer patients than the report needs to state its numbers without a warning
    (`lib.report.tables.MIN_TEST_PATIENTS`): then a larger synthetic cohort is worth suggesting."""
    from cssci_platform.lib.report.tables import MIN_TEST_PATIENTS

    return any(c.test_n is not None and c.test_n < MIN_TEST_PATIENTS for c in champions)
