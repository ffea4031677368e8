"""`cssci ingest`, `qc`, `report` and `predict`: commands on the cohort of one home and its study.

A home's study is its `experiment.yaml` (written by `cssci run`; for a bare manifest, `cssci ingest` writes the
default study of `home.default_study`), made active through CSSCI_EXPERIMENT_CONFIG for every run these start.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from cssci_platform.cli.guards import load_or_exit, writing_command
from cssci_platform.cli.home import activate_study, configure_environment
from cssci_platform.cli.output import FAILURE_EXIT, USER_ERROR_EXIT, StageBars, console, errors, print_summary
from cssci_platform.cli.study_commands import HOME_OPTION, WORKERS_OPTION
from cssci_platform.lib import failures

if TYPE_CHECKING:  # dagster, torch and sklearn load only when a command runs (`cssci --help` stays fast)
    from cssci_platform.cli.patient_runs import PatientRunOutcome
    from cssci_platform.lib.study_config import StudyConfig


def ingest(
    manifest: Path = typer.Argument(..., exists=True, dir_okay=False, help="The cohort.yaml of your cohort."),
    home: Path = HOME_OPTION,
    workers: int | None = WORKERS_OPTION,
) -> None:
    """Validate a cohort manifest, register its patients as partitions and materialize every patient (with the home's
    study settings; a home without a study gets the default one for this manifest)."""
    from cssci_platform.cli import patient_runs
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)  # a broken manifest ends here (exit 2), before anything is written
    _check_slice_target(cohort, home_study(home))  # else every patient would be quarantined at roi_slices
    configure_environment(home, manifest)
    activate_study(home, manifest)
    with writing_command(home, f"cssci ingest {manifest}", starts_runs=True):
        outcomes = _ingest_with_progress(manifest, workers)
    failed = patient_runs.outside_qc_failures(outcomes)
    if failed:
        errors.print(f"[red]error[/]: {escape(patient_runs.failure_summary(failed, len(outcomes)))}", soft_wrap=True)
        raise typer.Exit(FAILURE_EXIT)
    print_summary(home, larger_cohort_hint=None)


def home_study(home: Path) -> StudyConfig | None:
    """The study a command on `home` will activate (CSSCI_EXPERIMENT_CONFIG, else the home's experiment.yaml), read
    before anything is written; None for a home without one."""
    from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file, load_config

    path = os.environ.get(EXPERIMENT_ENV) or (experiment_file(home) if experiment_file(home).exists() else None)
    return load_config(path) if path else None


def _check_slice_target(cohort, experiment: StudyConfig | None) -> None:
    """Stop (exit 2) before any patient runs when no patient has a mask for the ROI-slice target: the study's
    deep.slice.sequence/roi/axis where one is active, else what the manifest declares."""
    from cssci_platform.cli.study_stages import slice_target_problem_of

    if problem := slice_target_problem_of(cohort, experiment):
        raise failures.UserError(f"{cohort.manifest_path}: {problem}")


def _ingest_with_progress(manifest: Path, workers: int | None) -> list[PatientRunOutcome]:
    """Every patient not yet done, as runs through the home's instance, with a progress bar (finished, failed,
    remaining, ETA) and each failed or quarantined patient printed as its run ends."""
    from cssci_platform.cli import patient_runs
    from cssci_platform.cli.study_stages import default_workers

    started = time.perf_counter()
    with StageBars() as bars:
        bars.stage("patients: manifest, scans, channels, radiomics, ROI slices")
        outcomes = patient_runs.ingest_cohort(manifest, workers or default_workers(), bars.patient,
                                              on_pending=bars.pending_patients)
    console.print(f"{len(outcomes)} patients processed in {time.perf_counter() - started:.1f} s")
    return outcomes


def _active_study(home: Path, experiment: str | None) -> StudyConfig:
    """The home's study (activated; a bare home gets the default study of its manifest), with `experiment` as its
    name when given; exit 2 when the home has neither a study nor a manifest."""
    path = activate_study(home, Path(os.environ["CSSCI_MANIFEST"]) if os.environ.get("CSSCI_MANIFEST") else None)
    if path is None:
        raise typer.BadParameter("no study and no cohort manifest known for this home: run `cssci ingest`, `cssci run` "
                                 "or `cssci demo` first", param_hint="--home")
    return load_or_exit(path, [f"name={experiment}"] if experiment else [])


def report(home: Path = HOME_OPTION,
           experiment: str | None = typer.Option(None, help="MLflow experiment / modeling run to report (default: the "
                                                 "home's study name).")) -> None:
    """Write the self-contained HTML study report (Table 1, performance, ROC, DeLong, calibration, DCA, nomogram)."""
    import dagster as dg

    from cssci_platform.cli.dagster_runs import IN_PROCESS, study_overrides
    from cssci_platform.cli.instance_runs import instance_session
    from cssci_platform.cli.study_stages import report_path_of

    configure_environment(home)
    _active_study(home, experiment)  # an unknown home stops here
    with writing_command(home, "cssci report"), dg.DagsterInstance.get() as instance, \
            instance_session(instance) as session:
        ended = session.run("report_job", run_config={**IN_PROCESS, **study_overrides(
            [f"name={experiment}"] if experiment else [])})
        path = report_path_of(instance, ended.run_id) if ended.success else None
    if path is None:
        console.print(f"[red]report failed[/]: {escape(ended.failure)}")
        raise typer.Exit(1)
    console.print(f"report: {path}")


def qc(home: Path = HOME_OPTION, patient: str | None = typer.Option(None, help="Only this patient.")) -> None:
    """List QC issues recorded in the warehouse."""
    from cssci_platform.lib.queries.summary import qc_issues
    from cssci_platform.lib.warehouse import connect

    configure_environment(home)
    with connect(Path(os.environ["CSSCI_WAREHOUSE"]), read_only=True) as con:
        frame = qc_issues(con, patient)
    table = Table(*frame.columns)
    for row in frame.iter_rows():
        table.add_row(*[str(v) for v in row])
    console.print(table if frame.height else "no QC issues")


def predict(
    patient_dir: Path = typer.Option(..., "--patient-dir", exists=True, file_okay=False,
                                     help="One patient's folder: patient.csv/json (manifest columns, paths relative "
                                     "to it), images, masks."),
    home: Path = HOME_OPTION,
    experiment: str | None = typer.Option(None, help="MLflow experiment whose champions score the patient "
                                          "(default: the home's study name)."),
    out: Path = typer.Option(Path("prediction"), help="Folder for derived files and Grad-CAM PNGs."),
) -> None:
    """Score one patient with every signature's champion (MLflow registry), outside Dagster, with the study's
    settings."""
    from cssci_platform.cli.predict import PredictionError, predict_patient_dir

    configure_environment(home)
    manifest = os.environ.get("CSSCI_MANIFEST")  # set by the user, or remembered by `cssci ingest` / `cssci demo`
    if not manifest:
        raise typer.BadParameter("no cohort manifest known: run `cssci ingest` or `cssci demo` first",
                                 param_hint="--home")
    study = _active_study(home, experiment)
    try:
        result = predict_patient_dir(patient_dir, study, Path(manifest), Path(os.environ["CSSCI_WAREHOUSE"]),
                                     os.environ["CSSCI_MLFLOW_URI"], out)
    except PredictionError as error:  # the patient's folder or the study's models: the message says what to fix
        errors.print(f"[red]cannot score {patient_dir}[/]: {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(USER_ERROR_EXIT) from None
    table = Table("signature", "probabilities", "risk group", "top classes", "model", "version",
                  title=f"patient {result.patient_key}")
    for champion, name, version in result.scores:
        probabilities = ", ".join(f"{c}: {p:.3f}" for c, p in champion.probabilities.items())
        table.add_row(champion.signature, probabilities, champion.risk_group, ", ".join(champion.top_classes), name,
                      str(version))
    console.print(table)
    for path in result.gradcams:
        console.print(f"Grad-CAM: {path}")
    for note in result.notes:
        console.print(note)
