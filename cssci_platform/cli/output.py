"""What `cssci` prints: the consoles, exit codes, patient progress, the home summary and the comparison table."""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

console = Console()
errors = Console(stderr=True)
USER_ERROR_EXIT = 2  # the input is wrong (a file, a config, an option): fix it and run again
FAILURE_EXIT = 1  # the run failed (disk, lock, a step): the message names the root cause
INTERRUPTED_EXIT = 130
LOCAL_ONLY = "127.0.0.1"  # the UIs serve patient data: only this machine reaches them unless the user says otherwise


def patient_printer():
    """A callback printing each finished patient: done, quarantined (with the reason) or failed."""
    from cssci_platform.cli.patient_runs import PatientRunOutcome

    done = []

    def on_patient(outcome: PatientRunOutcome) -> None:
        done.append(outcome.patient_key)
        if outcome.success:
            console.print(f"[dim]{len(done):4d} {outcome.patient_key} done[/]")
        else:
            what = "failed" if outcome.failed_outside_qc else "quarantined"
            console.print(f"[yellow]{len(done):4d} {outcome.patient_key} {what}[/]: {escape(outcome.reason)}")

    return on_patient


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
        if larger_cohort_hint:
            console.print(f"A small synthetic test set gives wide AUC intervals; run `{larger_cohort_hint}` for "
                          "stabler figures.")
    console.print(f"QC errors: {len(issues)}" + ("  (details: cssci qc)" if issues else ""))
    for key, stage, code, message in issues:
        console.print(f"[red]QC[/] {key} [{stage}/{code}] {message}")
    console.print(
        f"warehouse: {warehouse}\n"
        f"explore:   duckdb {warehouse} -c \"SELECT * FROM patient_status\"\n"
        f"UI:        make ui   (or: cssci ui --home {home})  then open http://127.0.0.1:3000\n"
        f"MLflow:    mlflow ui --host {LOCAL_ONLY} --backend-store-uri {os.environ['CSSCI_MLFLOW_URI']}"
    )


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
