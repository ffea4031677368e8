"""`cssci`: the command line of the platform."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import traceback
import warnings
from contextlib import contextmanager
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.table import Table

from cssci_platform.cli import patient_runs
from cssci_platform.lib import failures
from cssci_platform.lib.study_config import (
    EXPERIMENT_ENV,
    ConfigError,
    config_notes,
    experiment_file,
    load_config,
    resource_problems,
)

# No pretty tracebacks: rich's traceback walks an exception chain without cycle detection, and Dagster's are
# cyclic (the command never ended, its memory grew by ~1 GB a minute). `main` prints one message instead.
app = typer.Typer(help="Spine MRI prognosis platform: cohorts, features and models on Dagster + DuckDB.", no_args_is_help=True,
                  pretty_exceptions_enable=False)
console = Console()
errors = Console(stderr=True)
USER_ERROR_EXIT = 2  # the input is wrong (a file, a config, an option): fix it and run again
FAILURE_EXIT = 1  # the run failed (disk, lock, a step): the message names the root cause
DEBUG_ENV = "CSSCI_DEBUG"  # set to 1 to also print the full traceback of a failed command


def main() -> None:
    """`cssci`: every failure ends the command at once with one message and a non-zero exit code, never a
    traceback (the full one goes to $CSSCI_LOG_DIR, or to the terminal with CSSCI_DEBUG=1)."""
    try:
        with patient_runs.stop_on_terminate():  # `kill` stops a command as Ctrl-C does
            app()
    except KeyboardInterrupt:
        errors.print("[red]interrupted[/]")
        sys.exit(130)
    except Exception as error:  # typer.Exit / usage errors leave through SystemExit
        sys.exit(report_failure(error))


def user_error_types() -> tuple[type[BaseException], ...]:
    from cssci_platform.lib.cohort import ManifestError

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
        path.write_text(f"cssci {' '.join(sys.argv[1:])}\n" + "".join(traceback.format_exception(error)), encoding="utf-8")
    except OSError:  # a full or read-only disk is often why we are here
        return None
    return path


@contextmanager
def writing_command(home: Path, command: str):
    """Around a command that writes to `home`: one such command per home at a time, then, before any work, the
    storage checks (warehouse writable and not locked for long, free space) and the clean-up of runs a killed
    command left STARTED."""
    with patient_runs.home_lock(home.resolve(), command), stopped_cleanly(command):
        patient_runs.check_storage()
        _fail_orphaned_runs()
        yield


INTERRUPTED_EXIT = 130


@contextmanager
def stopped_cleanly(command: str):
    """Ctrl-C or SIGTERM: say what was kept and exit 130 at once (running patients are terminated, not awaited)."""
    try:
        yield
    except KeyboardInterrupt as interrupt:
        errors.print(f"[red]stopped[/] ({interrupt or 'SIGINT'}): `{escape(command)}` was interrupted. Patients already "
                     "finished are kept; the runs it left are marked failed by the next cssci command. Run it again to "
                     "finish.", soft_wrap=True)
        raise typer.Exit(INTERRUPTED_EXIT) from None


def _fail_orphaned_runs() -> None:
    import dagster as dg

    with dg.DagsterInstance.get() as instance:
        orphaned = patient_runs.fail_orphaned_runs(instance)
    if orphaned:
        console.print(f"[yellow]marked {len(orphaned)} run(s) failed[/] whose process ended without finishing them "
                      f"(killed or crashed): {', '.join(orphaned)}")

HOME_OPTION = typer.Option(Path(".cssci"), "--home", envvar="CSSCI_HOME", help="Folder for the warehouse, image store and Dagster instance.")


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the synthetic cohort into."),
    variant: str = typer.Option("sci", help="'sci' (cervical cord injury) or 'metastasis' (multiclass primary site)."),
    protocol: str = typer.Option("demo", help="sci only: 'demo' (binary good outcome), 'ianr' (six planes, dl_rect ROI, "
                                 "IANR-SCIFRS score) or 'upper_limb' (sagittal T2, UEMS at admission and one year)."),
    patients: int = typer.Option(120, help="Development patients (metastasis: all patients)."),
    prospective: int = typer.Option(30, help="Prospective patients (sci only); their outcomes go to followup/outcomes.csv."),
    seed: int = typer.Option(7, help="Random seed; the same seed writes the same cohort."),
) -> None:
    """Write a synthetic multi-center cohort (images, masks, manifest, planted ground truth)."""
    from cssci_platform.lib.synthetic import write_metastasis_cohort, write_sci_cohort

    started = time.perf_counter()
    if variant == "sci":
        if protocol not in ("demo", "ianr", "upper_limb"):
            raise typer.BadParameter("choose 'demo', 'ianr' or 'upper_limb'", param_hint="--protocol")
        manifest = write_sci_cohort(out, n_development=patients, n_prospective=prospective, seed=seed, protocol=protocol)
    elif variant == "metastasis":
        manifest = write_metastasis_cohort(out, n_patients=patients, seed=seed)
    else:
        raise typer.BadParameter("choose 'sci' or 'metastasis'", param_hint="--variant")
    console.print(f"wrote {manifest} in {time.perf_counter() - started:.1f} s")


@app.command()
def ingest(
    manifest: Path = typer.Argument(..., exists=True, dir_okay=False, help="The cohort.yaml of your cohort."),
    home: Path = HOME_OPTION,
    workers: int = typer.Option(2, min=1, help="Patients processed in parallel (one process each)."),
) -> None:
    """Validate a cohort manifest, register its patients as partitions and materialize every patient."""
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)  # a broken manifest ends here (exit 2), before anything is written
    _check_slice_target(cohort, _home_experiment_config(home))  # else every patient would be quarantined at roi_slices
    patient_runs.configure_environment(home, manifest)
    with writing_command(home, f"cssci ingest {manifest}"):
        outcomes = _ingest_with_progress(manifest, workers)
    failed = patient_runs.outside_qc_failures(outcomes)
    if failed:
        errors.print(f"[red]error[/]: {escape(patient_runs.failure_summary(failed, len(outcomes)))}", soft_wrap=True)
        raise typer.Exit(FAILURE_EXIT)
    _summary(home, larger_cohort_hint=None)


def _check_slice_target(cohort, experiment) -> None:
    """Stop (exit 2) before any patient runs when no patient has a mask for the ROI-slice target: the experiment's
    deep.slice.sequence/roi/axis where one is active, else what the manifest declares."""
    from cssci_platform.cli.study_stages import slice_target_problem_of

    if problem := slice_target_problem_of(cohort, experiment):
        raise failures.UserError(f"{cohort.manifest_path}: {problem}")


@app.command()
def demo(
    home: Path = HOME_OPTION,
    patients: int = typer.Option(40, help="Development patients of the synthetic cohort."),
    prospective: int = typer.Option(10, help="Prospective patients of the synthetic cohort."),
    seed: int = typer.Option(7, help="Seed of the synthetic cohort."),
    workers: int = typer.Option(2, min=1, help="Patients processed in parallel."),
    backbone: str = typer.Option("resnet18", help="ResNet for the deep features (resnet18/34/50/101/152)."),
    weights: str = typer.Option("none", help="'none' (random init: no ImageNet checkpoint ships with the demo), "
                                "'imagenet' (checkpoint already in $TORCH_HOME/hub/checkpoints) or a checkpoint file."),
    classifiers: str = typer.Option("all", help="Comma-separated zoo members (LR,SVM,RandomForest,...) or 'all'."),
    cv_folds: int = typer.Option(5, min=2, help="Stratified CV folds for grid search on the training split."),
) -> None:
    """Generate the synthetic multi-center cohort and materialize every asset for it (the `demo` experiment config)."""
    overrides = [f"cohort.synthetic.patients={patients}", f"cohort.synthetic.prospective={prospective}",
                 f"cohort.synthetic.seed={seed}", f"deep.backbones=[{backbone}]", f"deep.weights={weights}",
                 f"models.cv_folds={cv_folds}"]
    if classifiers != "all":
        overrides.append(f"models.classifiers=[{classifiers}]")
    _run_config("demo", overrides, home, workers)


@app.command()
def run(
    config: str = typer.Option(..., "--config", help="A shipped config name (cssci config list) or a YAML file."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set deep.weights=none --set models.cv_folds=5."),
    home: Path | None = typer.Option(None, "--home", help="Folder for this experiment's warehouse, images and Dagster "
                                     "instance (default: .cssci/<experiment name>)."),
    workers: int = typer.Option(2, min=1, help="Patients processed in parallel."),
) -> None:
    """Materialize the whole graph for one experiment config: cohort, features, models (MLflow), report."""
    _run_config(config, overrides, home, workers)


def _run_config(name_or_path: str, overrides: list[str], home: Path | None, workers: int) -> None:
    from cssci_platform.cli.study_stages import StudyProgress, StudyStepFailed, default_home, run_study, shared_mlflow_uri

    experiment = _load_or_exit(name_or_path, overrides)
    if problems := resource_problems(experiment):  # found now, not at the deep step minutes later
        raise ConfigError(name_or_path, problems)
    mlflow_uri = None if home else shared_mlflow_uri()  # default homes share .cssci/mlflow.db; an explicit home keeps its own
    home = home or default_home(experiment)
    for note in config_notes(experiment):
        console.print(f"[yellow]note[/] {note}")
    if experiment.deep.weights == "none" and (experiment.deep.backbones or experiment.deep.fine_tuning):
        console.print("[yellow]deep.weights 'none'[/]: networks start from random weights, as asked. For transfer learning put "
                      "the torchvision ImageNet checkpoint in $TORCH_HOME/hub/checkpoints and set deep.weights: imagenet.")
    from cssci_platform.lib.selection import EmptySelectionWarning

    warnings.simplefilter("ignore", EmptySelectionWarning)  # kept in each step's report, logged to MLflow
    started, stages = time.perf_counter(), []

    def on_stage(name: str) -> None:
        stages.append((name, time.perf_counter()))
        console.rule(name)

    try:
        command = f"cssci run --config {name_or_path}"
        with patient_runs.home_lock(home.resolve(), command), stopped_cleanly(command):
            result = run_study(experiment, home, workers, StudyProgress(on_stage, _print_patient(), console.print), mlflow_uri)
    except StudyStepFailed as error:
        errors.print(f"[red]{experiment.name} failed[/]: {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(FAILURE_EXIT) from None
    console.rule("summary")
    for (name, at), (_, until) in zip(stages, [*stages[1:], ("end", time.perf_counter())]):
        console.print(f"{until - at:7.1f} s  {name}")
    console.print(f"{time.perf_counter() - started:7.1f} s  total")
    hint = None
    if experiment.cohort.synthetic is not None:
        hint = ("cssci demo --patients 200" if name_or_path == "demo"
                else f"cssci run --config {name_or_path} --set cohort.synthetic.patients=200")
    _summary(result.home, hint)
    console.print(f"study run: {result.study_run_id} (MLflow experiment '{experiment.name}')")
    if result.report:
        console.print(f"report: {result.report}")


def _print_patient():
    done = []

    def on_patient(outcome: patient_runs.PatientRunOutcome) -> None:
        done.append(outcome.patient_key)
        if outcome.success:
            console.print(f"[dim]{len(done):4d} {outcome.patient_key} done[/]")
        else:
            what = "failed" if outcome.failed_outside_qc else "quarantined"
            console.print(f"[yellow]{len(done):4d} {outcome.patient_key} {what}[/]: {escape(outcome.reason)}")

    return on_patient


def _load_or_exit(name_or_path: str, overrides: list[str]):
    try:
        return load_config(name_or_path, overrides)
    except ConfigError as error:
        errors.print(f"[red]{escape(str(error))}[/]", soft_wrap=True)
        raise typer.Exit(USER_ERROR_EXIT) from None


def _ingest_with_progress(manifest: Path, workers: int) -> list[patient_runs.PatientRunOutcome]:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cssci_platform.lib.cohort import load_cohort

    total = len(load_cohort(manifest).patients)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("patients", total=total)

        def on_patient(outcome: patient_runs.PatientRunOutcome) -> None:
            progress.advance(task)
            if not outcome.success:
                what = "failed" if outcome.failed_outside_qc else "quarantined"
                progress.console.print(f"[yellow]{what}[/] {outcome.patient_key}: {escape(outcome.reason)}")

        outcomes = patient_runs.ingest_cohort(manifest, workers, on_patient)
    console.print(f"{total} patients processed in {time.perf_counter() - started:.1f} s")
    return outcomes


def _write_report(experiment: str) -> None:
    config = patient_runs.experiment_run_config(["evaluation_report"])
    config["ops"].setdefault("evaluation_report", {"config": {}})["config"]["experiment"] = experiment
    result = patient_runs.run_job("report_job", config)
    if not result.success:
        console.print(f"[red]report failed[/]: {patient_runs.first_failure(result)}")
        raise typer.Exit(1)
    [event] = result.get_asset_materialization_events()
    console.print(f"report: {event.event_specific_data.materialization.metadata['report'].value}")


@app.command()
def report(home: Path = HOME_OPTION, experiment: str | None = typer.Option(None, help="MLflow experiment / modeling run "
                                                                              "to report (default: the home's experiment, else demo).")) -> None:
    """Write the self-contained HTML study report (Table 1, performance, ROC, DeLong, calibration, DCA, nomogram)."""
    patient_runs.configure_environment(home)
    with writing_command(home, "cssci report"):
        _write_report(experiment or _home_experiment(home))


def _home_experiment(home: Path) -> str:
    """The experiment of an experiment home (`.cssci/<experiment>`, written by `cssci run`), else `demo`."""
    return patient_runs.home_experiment_name(home.resolve()) or "demo"


def _summary(home: Path, larger_cohort_hint: str | None) -> None:
    from cssci_platform.lib.warehouse import connect

    warehouse = Path(os.environ["CSSCI_WAREHOUSE"])
    with connect(warehouse, read_only=True) as con:
        status = con.execute("SELECT status, count(*) FROM patient_status GROUP BY status ORDER BY status").fetchall()
        per_patient = con.execute(
            "SELECT median(n)::BIGINT FROM (SELECT count(*) AS n FROM radiomics_features GROUP BY patient_key)"
        ).fetchone()[0]
        issues = con.execute("SELECT patient_key, stage, code, message FROM qc_issues WHERE severity = 'error' ORDER BY 1").fetchall()
        champions = con.execute(
            "SELECT t.signature, t.result_name, t.model_version, t.cv_auc_mean, r.value, n.value FROM trained_models t "
            "LEFT JOIN model_results r ON r.run_id = t.run_id AND r.role = 'test' AND r.metric IN ('auc', 'auc_macro_ovr') "
            "LEFT JOIN model_results n ON n.run_id = t.run_id AND n.role = 'test' AND n.metric = 'n' "
            "WHERE t.champion ORDER BY t.signature").fetchall() if _has_table(con, "trained_models") else []
        embedded = con.execute("SELECT count(DISTINCT patient_key), count(*), any_value(len(embedding)), "
                               "string_agg(DISTINCT backbone || ' (' || weights_id || ')', ', ') FROM embeddings").fetchone()
    table = Table(title="cohort")
    table.add_column("status")
    table.add_column("patients", justify="right")
    for name, count in status:
        table.add_row(name, str(count))
    console.print(table)
    console.print(f"radiomics feature values per patient (median): {per_patient}")
    console.print(f"deep features: {embedded[0]} patients, {embedded[1]} slice embeddings of {embedded[2]} values, {embedded[3]}")
    if champions:
        models = Table(title="champions (registered in MLflow, alias 'champion'; chosen by CV AUC on training folds)")
        for column in ("signature", "model", "version", "CV AUC", "test AUC", "test n"):
            models.add_column(column)
        for signature, name, version, cv_auc, test_auc, test_n in champions:
            models.add_row(signature, name, str(version), f"{cv_auc:.3f}", "-" if test_auc is None else f"{test_auc:.3f}",
                           "-" if test_n is None else f"{test_n:.0f}")
        console.print(models)
        if larger_cohort_hint:
            console.print(f"A small synthetic test set gives wide AUC intervals; run `{larger_cohort_hint}` for stabler figures.")
    console.print(f"QC errors: {len(issues)}" + ("  (details: cssci qc)" if issues else ""))
    for key, stage, code, message in issues:
        console.print(f"[red]QC[/] {key} [{stage}/{code}] {message}")
    console.print(
        f"warehouse: {warehouse}\n"
        f"explore:   duckdb {warehouse} -c \"SELECT * FROM patient_status\"\n"
        f"UI:        make ui   (or: cssci ui --home {home})  then open http://127.0.0.1:3000\n"
        f"MLflow:    mlflow ui --host {LOCAL_ONLY} --backend-store-uri {os.environ['CSSCI_MLFLOW_URI']}"
    )


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


@app.command()
def qc(home: Path = HOME_OPTION, patient: str | None = typer.Option(None, help="Only this patient.")) -> None:
    """List QC issues recorded in the warehouse."""
    from cssci_platform.lib.warehouse import table_frame

    patient_runs.configure_environment(home)
    sql = "SELECT patient_key, stage, severity, code, message, fix FROM qc_issues"
    frame = table_frame(Path(os.environ["CSSCI_WAREHOUSE"]), sql + (" WHERE patient_key = ?" if patient else "") + " ORDER BY 1, 2",
                        [patient] if patient else None)
    table = Table(*frame.columns)
    for row in frame.iter_rows():
        table.add_row(*[str(v) for v in row])
    console.print(table if frame.height else "no QC issues")


@app.command()
def predict(
    patient_dir: Path = typer.Option(..., "--patient-dir", exists=True, file_okay=False,
                                     help="One patient's folder: patient.csv/json (manifest columns, paths relative to it), images, masks."),
    home: Path = HOME_OPTION,
    experiment: str | None = typer.Option(None, help="MLflow experiment whose champions score the patient (default: the "
                                          "home's experiment, else demo)."),
    out: Path = typer.Option(Path("prediction"), help="Folder for derived files and Grad-CAM PNGs."),
) -> None:
    """Score one patient with every signature's champion (MLflow registry), outside Dagster."""
    from cssci_platform.lib.model_tracking import TrackingConfig
    from cssci_platform.cli.predict import PredictionError, predict_patient_dir

    patient_runs.configure_environment(home)
    manifest = os.environ.get("CSSCI_MANIFEST")  # set by the user, or remembered by `cssci ingest` / `cssci demo`
    if not manifest:
        raise typer.BadParameter("no cohort manifest known: run `cssci ingest` or `cssci demo` first", param_hint="--home")
    tracking = TrackingConfig(os.environ["CSSCI_MLFLOW_URI"], experiment or _home_experiment(home))
    try:
        result = predict_patient_dir(patient_dir, Path(manifest), Path(os.environ["CSSCI_WAREHOUSE"]), tracking, out,
                                     _active_slice_config())
    except PredictionError as error:  # the patient's folder or the study's models: the message says what to fix
        errors.print(f"[red]cannot score {patient_dir}[/]: {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(USER_ERROR_EXIT) from None
    table = Table("signature", "probabilities", "risk group", "top classes", "model", "version", title=f"patient {result.patient_key}")
    for champion, name, version in result.scores:
        probabilities = ", ".join(f"{c}: {p:.3f}" for c, p in champion.probabilities.items())
        table.add_row(champion.signature, probabilities, champion.risk_group, ", ".join(champion.top_classes), name, str(version))
    console.print(table)
    for path in result.gradcams:
        console.print(f"Grad-CAM: {path}")
    for note in result.notes:
        console.print(note)


def _active_experiment_config():
    """The experiment config the home's jobs run with (`CSSCI_EXPERIMENT_CONFIG`, set from `<home>/experiment.yaml` by
    `patient_runs.configure_environment`), None without one."""
    path = os.environ.get(EXPERIMENT_ENV)
    return load_config(path) if path else None


def _home_experiment_config(home: Path):
    """The experiment config `patient_runs.configure_environment(home)` will activate, read before it writes anything."""
    path = os.environ.get(EXPERIMENT_ENV) or (experiment_file(home) if experiment_file(home).exists() else None)
    return load_config(path) if path else None


def _active_slice_config():
    """The ROI-slice settings the study's roi_slices ran with: the experiment's `deep.slice`, else the defaults."""
    from cssci_platform.defs.embeddings.config import RoiSlicesConfig

    experiment = _active_experiment_config()
    return RoiSlicesConfig(**experiment.deep.slice.model_dump()) if experiment else RoiSlicesConfig()


LOCAL_ONLY = "127.0.0.1"  # the UIs serve patient data: only this machine reaches them unless the user says otherwise


def ui_command(host: str, port: int) -> list[str]:
    """`dagster dev` on the project's workspace, its webserver bound to `host`:`port`."""
    return [sys.executable, "-m", "dagster", "dev", "-w", str(patient_runs.PROJECT_ROOT / "workspace.yaml"), "-h", host, "-p", str(port)]


@app.command()
def ui(home: Path = HOME_OPTION, manifest: Path | None = typer.Option(None, help="cohort.yaml (default: keep CSSCI_MANIFEST)"),
       config: str | None = typer.Option(None, "--config", help="Experiment config: its home and its settings as the jobs' "
                                         "launchpad defaults (default: the home's experiment.yaml, if any)."),
       host: str = typer.Option(LOCAL_ONLY, help="Address the UI listens on: 127.0.0.1 = this machine only; 0.0.0.0 "
                                "exposes it to the network (no login: put it behind an authenticating proxy)."),
       port: int = typer.Option(3000, help="Port of the UI.")) -> None:
    """Start the Dagster UI on this project's instance (dagster dev -w workspace.yaml), on 127.0.0.1 unless --host."""
    if config is not None:
        from cssci_platform.cli.study_stages import default_home

        experiment = _load_or_exit(config, [])
        home = home if home != Path(".cssci") else default_home(experiment)
        if not experiment_file(home).exists():
            console.print(f"[red]{home} has no {experiment_file(home).name}[/]: run `cssci run --config {config}` first")
            raise typer.Exit(1)
        os.environ[EXPERIMENT_ENV] = str(experiment_file(home).resolve())
    patient_runs.configure_environment(home, manifest)
    _fail_orphaned_runs()  # the UI shows runs a killed command left STARTED as failed
    console.print(f"Dagster UI: http://{host}:{port}" + ("" if host == LOCAL_ONLY else "  [yellow](reachable from the network)[/]"))
    raise typer.Exit(subprocess.call(ui_command(host, port), cwd=patient_runs.PROJECT_ROOT))


config_app = typer.Typer(help="Experiment configs: list the shipped protocols, show or validate a config.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list() -> None:
    """The shipped protocol configs."""
    from cssci_platform.lib.study_config import shipped_configs

    table = Table("name", "description", "file")
    for name, path in shipped_configs().items():
        table.add_row(name, load_config(path).description, str(path))
    console.print(table)


@config_app.command("show")
def config_show(
    config: str = typer.Argument(..., help="A shipped config name or a YAML file."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set models.cv_folds=5."),
    dagster: bool = typer.Option(False, "--dagster", help="Print the Dagster run config of each job instead."),
) -> None:
    """Print the resolved config (every default filled in), or the Dagster run config it becomes."""
    import yaml

    from cssci_platform.lib.study_config import dump_config, run_config

    experiment = _load_or_exit(config, overrides)
    if not dagster:
        print(dump_config(experiment), end="")
        return
    from cssci_platform.defs.embeddings.jobs import FINE_TUNING_ASSETS
    from cssci_platform.defs.ingest.jobs import PATIENT_ASSETS
    from cssci_platform.defs.models.jobs import MODELING_ASSETS

    jobs = {"patient_features_job": PATIENT_ASSETS, "center_embeddings_job": ["center_embeddings"],
            "fine_tuning_job": FINE_TUNING_ASSETS, "modeling_job": MODELING_ASSETS, "report_job": ["evaluation_report"]}
    print(yaml.safe_dump({job: run_config(experiment, assets) for job, assets in jobs.items()}, sort_keys=False, width=120), end="")


@config_app.command("validate")
def config_validate(
    configs: list[str] = typer.Argument(..., help="Shipped config names or YAML files."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key before validating."),
) -> None:
    """Check configs: schema, allowed values, and (for a manifest cohort) the sequences, ROIs and variables it names."""
    from cssci_platform.lib.cohort import ManifestError
    from cssci_platform.lib.study_config import cohort_problems, cohort_spec

    failed = 0
    for name in configs:
        try:
            experiment = load_config(name, overrides)
            if problems := resource_problems(experiment):
                raise ConfigError(name, problems)
            problems = cohort_problems(experiment, cohort_spec(experiment))
            if problems:
                raise ConfigError(f"{name} (against its cohort)", problems)
            console.print(f"[green]valid[/] {name} ({experiment.name})")
            for note in config_notes(experiment):
                console.print(f"  [yellow]note[/] {note}")
        except (ConfigError, ManifestError) as error:
            failed += 1
            errors.print(f"[red]{escape(str(error))}[/]", soft_wrap=True)
    raise typer.Exit(USER_ERROR_EXIT if failed else 0)


@app.command()
def compare(
    run_a: str = typer.Argument(..., help="Study run id, or experiment name (its latest study run); ':<mode>' selects a mode, "
                                "e.g. demo:leakage_safe."),
    run_b: str = typer.Argument(..., help="The second run, same forms, e.g. demo:paper_faithful."),
    mlflow_uri: str | None = typer.Option(None, envvar="CSSCI_MLFLOW_URI", help="MLflow tracking URI (default: .cssci/mlflow.db)."),
    csv: Path | None = typer.Option(None, help="Also write the table as CSV."),
) -> None:
    """Two study runs (modes, protocols, cohorts) side by side: CV, test and validation metrics per model."""
    from cssci_platform.lib.study_runs import RunReference, StudyRunNotFound, compare_runs, model_metrics, resolve_study_run
    from cssci_platform.cli.study_stages import shared_mlflow_uri

    uri = mlflow_uri or shared_mlflow_uri()
    frames = []
    for label, text in (("A", run_a), ("B", run_b)):
        reference = RunReference.parse(text)
        try:
            study = resolve_study_run(uri, reference)
            frames.append(model_metrics(uri, study, reference.mode))
        except StudyRunNotFound as error:
            console.print(f"[red]{text}[/]: {error}")
            raise typer.Exit(1) from None
        started = time.strftime("%Y-%m-%d %H:%M", time.localtime(study.info.start_time / 1000))
        console.print(f"{label} = {text}: study run {study.info.run_id} (config {study.data.tags.get('config_name')}, {started})")
    table_frame = compare_runs(frames[0], frames[1], "A", "B")
    console.print(_comparison_table(table_frame, f"{run_a} (A) vs {run_b} (B)"))
    console.print("Point estimates from each run's MLflow metrics; the CIs and DeLong tests are in each run's report.")
    if csv is not None:
        table_frame.to_csv(csv, index=False)
        console.print(f"written {csv}")


def _comparison_table(frame, title: str) -> Table:
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
            long.add_row(*[str(row[k]) if index == 0 else "" for k in keys], metric, _cell(row[f"{metric} A"], f"{metric} A"),
                         _cell(row[f"{metric} B"], f"{metric} B"), "" if delta is None else _cell(delta, f"{metric} B-A"),
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


if __name__ == "__main__":
    main()
