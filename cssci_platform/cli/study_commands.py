"""`cssci demo-data`, `cssci demo` and `cssci run`: a whole study from one config, end to end."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import typer
from rich.markup import escape

from cssci_platform.cli.guards import load_or_exit, stopped_cleanly
from cssci_platform.cli.home import home_lock
from cssci_platform.cli.output import FAILURE_EXIT, console, errors, patient_printer, print_summary, rule

HOME_OPTION = typer.Option(Path(".cssci"), "--home", envvar="CSSCI_HOME",
                           help="Folder for the warehouse, image store and Dagster instance.")


def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the synthetic cohort into."),
    variant: str = typer.Option("sci", help="'sci' (cervical cord injury) or 'metastasis' (multiclass primary site)."),
    protocol: str = typer.Option("demo", help="sci only: 'demo' (binary good outcome), 'ianr' (six planes, dl_rect "
                                 "ROI, IANR-SCIFRS score) or 'upper_limb' (sagittal T2, UEMS at admission and one "
                                 "year)."),
    patients: int = typer.Option(120, help="Development patients (metastasis: all patients)."),
    prospective: int = typer.Option(30, help="Prospective patients (sci only); their outcomes go to "
                                    "followup/outcomes.csv."),
    seed: int = typer.Option(7, help="Random seed; the same seed writes the same cohort."),
) -> None:
    """Write a synthetic multi-center cohort (images, masks, manifest, planted ground truth)."""
    from cssci_platform.lib.synthetic import write_metastasis_cohort, write_sci_cohort

    started = time.perf_counter()
    if variant == "sci":
        if protocol not in ("demo", "ianr", "upper_limb"):
            raise typer.BadParameter("choose 'demo', 'ianr' or 'upper_limb'", param_hint="--protocol")
        manifest = write_sci_cohort(out, n_development=patients, n_prospective=prospective, seed=seed,
                                    protocol=protocol)
    elif variant == "metastasis":
        manifest = write_metastasis_cohort(out, n_patients=patients, seed=seed)
    else:
        raise typer.BadParameter("choose 'sci' or 'metastasis'", param_hint="--variant")
    console.print(f"wrote {manifest} in {time.perf_counter() - started:.1f} s")


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
    run_config_file("demo", overrides, home, workers)


def run(
    config: str = typer.Option(..., "--config", help="A shipped config name (cssci config list) or a YAML file."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set deep.weights=none --set "
                                        "models.cv_folds=5."),
    home: Path | None = typer.Option(None, "--home", help="Folder for this experiment's warehouse, images and Dagster "
                                     "instance (default: .cssci/<experiment name>)."),
    workers: int = typer.Option(2, min=1, help="Patients processed in parallel."),
) -> None:
    """Materialize the whole graph for one experiment config: cohort, features, models (MLflow), report."""
    run_config_file(config, overrides, home, workers)


def run_config_file(name_or_path: str, overrides: list[str], home: Path | None, workers: int) -> None:
    """The study of a config file with `overrides` (resolved into the home's experiment.yaml, which every step of the
    run reads through the `study` resource), then its summary."""
    from cssci_platform.cli.study_stages import (
        StudyProgress,
        StudyStepFailed,
        default_home,
        run_study,
        shared_mlflow_uri,
    )
    from cssci_platform.lib.study_config import ConfigError, config_notes, resource_problems

    experiment = load_or_exit(name_or_path, overrides)
    if problems := resource_problems(experiment):  # found now, not at the deep step minutes later
        raise ConfigError(name_or_path, problems)
    # default homes share .cssci/mlflow.db; an explicit home keeps its own
    mlflow_uri = None if home else shared_mlflow_uri()
    home = home or default_home(experiment)
    for note in config_notes(experiment):
        console.print(f"[yellow]note[/] {note}")
    if experiment.deep.weights == "none" and (experiment.deep.backbones or experiment.deep.fine_tuning):
        console.print("[yellow]deep.weights 'none'[/]: networks start from random weights, as asked. For transfer "
                      "learning put the torchvision ImageNet checkpoint in $TORCH_HOME/hub/checkpoints and set "
                      "deep.weights: imagenet.")
    from cssci_platform.lib.selection import EmptySelectionWarning

    warnings.simplefilter("ignore", EmptySelectionWarning)  # kept in each step's report, logged to MLflow
    started, stages = time.perf_counter(), []

    def on_stage(name: str) -> None:
        stages.append((name, time.perf_counter()))
        rule(name)

    try:
        command = f"cssci run --config {name_or_path}"
        with home_lock(home.resolve(), command), stopped_cleanly(command):
            progress = StudyProgress(on_stage, patient_printer(), console.print)
            result = run_study(experiment, home, workers, progress, mlflow_uri)
    except StudyStepFailed as error:
        errors.print(f"[red]{experiment.name} failed[/]: {escape(str(error))}", soft_wrap=True)
        raise typer.Exit(FAILURE_EXIT) from None
    rule("summary")
    for (name, at), (_, until) in zip(stages, [*stages[1:], ("end", time.perf_counter())]):
        console.print(f"{until - at:7.1f} s  {name}")
    console.print(f"{time.perf_counter() - started:7.1f} s  total")
    hint = None
    if experiment.cohort.synthetic is not None:
        hint = ("cssci demo --patients 200" if name_or_path == "demo"
                else f"cssci run --config {name_or_path} --set cohort.synthetic.patients=200")
    print_summary(result.home, hint)
    console.print(f"study run: {result.study_run_id} (MLflow experiment '{experiment.name}')")
    if result.report:
        console.print(f"report: {result.report}")
