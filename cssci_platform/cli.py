"""`cssci`: the command line of the platform."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from cssci_platform import runner

app = typer.Typer(help="Spine MRI prognosis platform: cohorts, features and models on Dagster + DuckDB.", no_args_is_help=True)
console = Console()

HOME_OPTION = typer.Option(Path(".cssci"), "--home", envvar="CSSCI_HOME", help="Folder for the warehouse, image store and Dagster instance.")


@app.command("demo-data")
def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the synthetic cohort into."),
    variant: str = typer.Option("sci", help="'sci' (cervical cord injury, binary outcome) or 'metastasis' (multiclass primary site)."),
    patients: int = typer.Option(120, help="Development patients (metastasis: all patients)."),
    prospective: int = typer.Option(30, help="Prospective patients (sci only); their outcomes go to followup/outcomes.csv."),
    seed: int = typer.Option(7, help="Random seed; the same seed writes the same cohort."),
) -> None:
    """Write a synthetic multi-center cohort (images, masks, manifest, planted ground truth)."""
    from cssci_platform.lib.synthetic import write_metastasis_cohort, write_sci_cohort

    started = time.perf_counter()
    if variant == "sci":
        manifest = write_sci_cohort(out, n_development=patients, n_prospective=prospective, seed=seed)
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
    runner.configure_environment(home, manifest)
    _ingest_with_progress(manifest, workers)
    _summary(home)


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
    """Generate the synthetic multi-center cohort and materialize every asset for it."""
    from cssci_platform.lib.synthetic import write_sci_cohort

    data_dir = home.resolve() / f"demo_cohort_n{patients}_p{prospective}_s{seed}"
    manifest = data_dir / "cohort.yaml"
    if not manifest.exists():
        console.rule("1/6 synthetic cohort")
        started = time.perf_counter()
        write_sci_cohort(data_dir, n_development=patients, n_prospective=prospective, seed=seed)
        console.print(f"{patients + prospective} patients written to {data_dir} in {time.perf_counter() - started:.1f} s")
    else:
        console.print(f"reusing the synthetic cohort in {data_dir}")
    runner.configure_environment(home, manifest)
    console.rule("2/6 manifest, scans, channels, radiomics, ROI slices")
    _ingest_with_progress(manifest, workers)
    console.rule("3/6 deep features per center")
    _embed_with_progress(manifest, backbone, weights)
    console.rule("4/6 signatures x classifiers x modes (MLflow)")
    _model_with_progress(classifiers, cv_folds)
    console.rule("5/6 study report")
    _write_report("demo")
    console.rule("6/6 summary")
    _summary(home)


def _ingest_with_progress(manifest: Path, workers: int) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from cssci_platform.lib.cohort import load_cohort

    total = len(load_cohort(manifest).patients)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console) as progress:
        task = progress.add_task("patients", total=total)

        def on_patient(outcome: runner.PatientRunOutcome) -> None:
            progress.advance(task)
            if not outcome.success:
                reason = ", ".join(outcome.failed_checks) or outcome.error.splitlines()[0][:160]
                progress.console.print(f"[yellow]quarantined[/] {outcome.patient_key}: {reason}")

        runner.ingest_cohort(manifest, workers, on_patient)
    console.print(f"{total} patients processed in {time.perf_counter() - started:.1f} s")


def _embed_with_progress(manifest: Path, backbone: str, weights: str) -> None:
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)
    centers = sorted({p.center for p in cohort.patients.values() if p.center in cohort.spec.centers})
    if weights == "none":
        console.print(f"[yellow]{backbone} with weights 'none'[/]: randomly initialised, as asked (--weights). For "
                      "transfer learning put the torchvision ImageNet checkpoint in $TORCH_HOME/hub/checkpoints and "
                      "pass --weights imagenet.")
    started = time.perf_counter()
    config = {"ops": {"center_embeddings": {"config": {"backbones": [backbone], "weights": weights}}}}
    for center, success in runner.embed_centers(centers, config).items():
        console.print(f"{center}: {'embedded' if success else '[red]failed[/] (see the run in the Dagster UI)'}")
    console.print(f"{len(centers)} centers embedded in {time.perf_counter() - started:.1f} s")


def _model_with_progress(classifiers: str, cv_folds: int) -> None:
    from cssci_platform.lib.classifiers import CLASSIFIER_NAMES

    chosen = list(CLASSIFIER_NAMES) if classifiers == "all" else [c.strip() for c in classifiers.split(",")]
    unknown = sorted(set(chosen) - set(CLASSIFIER_NAMES))
    if unknown:
        raise typer.BadParameter(f"unknown classifiers {unknown}; choose from {list(CLASSIFIER_NAMES)}", param_hint="--classifiers")
    from cssci_platform.lib.selection import EmptySelectionWarning

    warnings.simplefilter("ignore", EmptySelectionWarning)  # kept in each step's report, logged to MLflow
    started = time.perf_counter()
    config = {"ops": {"trained_models": {"config": {"classifiers": chosen, "cv_folds": cv_folds}}}}
    result = runner.run_modeling(config)
    if not result.success:
        errors = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        console.print(f"[red]modeling failed[/]: {errors[0] if errors else 'see the run in the Dagster UI'}")
        raise typer.Exit(1)
    console.print(f"models trained and tracked in {time.perf_counter() - started:.1f} s")


def _write_report(experiment: str) -> None:
    result = runner.run_report(experiment)
    if not result.success:
        errors = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        console.print(f"[red]report failed[/]: {errors[0] if errors else 'see the run in the Dagster UI'}")
        raise typer.Exit(1)
    [event] = result.get_asset_materialization_events()
    console.print(f"report: {event.event_specific_data.materialization.metadata['report'].value}")


@app.command()
def report(home: Path = HOME_OPTION, experiment: str = typer.Option("demo", help="MLflow experiment / modeling run to report.")) -> None:
    """Write the self-contained HTML study report (Table 1, performance, ROC, DeLong, calibration, DCA, nomogram)."""
    runner.configure_environment(home)
    _write_report(experiment)


def _summary(home: Path) -> None:
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
        console.print("A demo-sized test set gives wide AUC intervals; run `cssci demo --patients 200` for stabler figures.")
    console.print(f"QC errors: {len(issues)}" + ("  (details: cssci qc)" if issues else ""))
    for key, stage, code, message in issues:
        console.print(f"[red]QC[/] {key} [{stage}/{code}] {message}")
    console.print(
        f"warehouse: {warehouse}\n"
        f"explore:   duckdb {warehouse} -c \"SELECT * FROM patient_status\"\n"
        f"UI:        make ui   (or: cssci ui --home {home})  then open http://localhost:3000\n"
        f"MLflow:    mlflow ui --backend-store-uri {os.environ['CSSCI_MLFLOW_URI']}"
    )


def _has_table(con, name: str) -> bool:
    return bool(con.execute("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]).fetchone()[0])


@app.command()
def qc(home: Path = HOME_OPTION, patient: str | None = typer.Option(None, help="Only this patient.")) -> None:
    """List QC issues recorded in the warehouse."""
    from cssci_platform.lib.warehouse import table_frame

    runner.configure_environment(home)
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
    experiment: str = typer.Option("demo", help="MLflow experiment whose champions score the patient."),
    out: Path = typer.Option(Path("prediction"), help="Folder for derived files and Grad-CAM PNGs."),
) -> None:
    """Score one patient with every signature's champion (MLflow registry), outside Dagster."""
    from cssci_platform.lib.model_tracking import TrackingConfig
    from cssci_platform.prediction import PredictionError, predict_patient_dir

    values = runner.configure_environment(home)
    if not values.get("CSSCI_MANIFEST"):
        raise typer.BadParameter("no cohort manifest known: run `cssci ingest` or `cssci demo` first", param_hint="--home")
    tracking = TrackingConfig(os.environ["CSSCI_MLFLOW_URI"], experiment)
    try:
        result = predict_patient_dir(patient_dir, Path(values["CSSCI_MANIFEST"]), Path(os.environ["CSSCI_WAREHOUSE"]), tracking, out)
    except PredictionError as error:
        console.print(f"[red]cannot score {patient_dir}[/]: {error}")
        raise typer.Exit(1) from None
    table = Table("signature", "probabilities", "risk group", "top classes", "model", "version", title=f"patient {result.patient_key}")
    for champion, name, version in result.scores:
        probabilities = ", ".join(f"{c}: {p:.3f}" for c, p in champion.probabilities.items())
        table.add_row(champion.signature, probabilities, champion.risk_group, ", ".join(champion.top_classes), name, str(version))
    console.print(table)
    for path in result.gradcams:
        console.print(f"Grad-CAM: {path}")
    for note in result.notes:
        console.print(note)


@app.command()
def ui(home: Path = HOME_OPTION, manifest: Path | None = typer.Option(None, help="cohort.yaml (default: keep CSSCI_MANIFEST)")) -> None:
    """Start the Dagster UI on this project's instance (dagster dev -w workspace.yaml)."""
    runner.configure_environment(home, manifest)
    command = [sys.executable, "-m", "dagster", "dev", "-w", str(runner.PROJECT_ROOT / "workspace.yaml")]
    raise typer.Exit(subprocess.call(command, cwd=runner.PROJECT_ROOT))


if __name__ == "__main__":
    app()
