"""`cssci demo-data`, `cssci demo` and `cssci run`: a whole study from one config, end to end."""

from __future__ import annotations

import shlex
import time
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from cssci_platform.cli.guards import load_or_exit, stopped_cleanly
from cssci_platform.cli.home import home_lock
from cssci_platform.cli.output import (
    FAILURE_EXIT,
    StageBars,
    console,
    cssci_program,
    errors,
    print_summary,
    rule,
)

if TYPE_CHECKING:
    from cssci_platform.lib.study_config.model import SyntheticCohort

SHIPPED_DEFAULT = "the cohort.synthetic of the protocol's shipped config, e.g. `cssci config show demo`"
WORKERS_OPTION = typer.Option(
    None, "--workers", min=1, help="Dagster runs executed at once (patients, centers, prospective scorings; default: "
    "the core count). Every unit of work is a run submitted to the home's Dagster instance and launched from its "
    "run queue, one process per run; this sets the run queue's limit, concurrency.runs.max_concurrent_runs in "
    "the home's dagster_home/dagster.yaml (a daemon already running, e.g. `cssci ui`'s, keeps the limit it started "
    "with). The modelling run's fit units run side by side under its multiprocess executor.")
HOME_OPTION = typer.Option(Path(".cssci"), "--home", envvar="CSSCI_HOME",
                           help="Folder for the warehouse, image store and Dagster instance.")


def demo_data(
    out: Path = typer.Argument(..., help="Folder to write the synthetic cohort into."),
    variant: str = typer.Option("sci", help="'sci' (cervical cord injury) or 'metastasis' (multiclass primary site)."),
    protocol: str = typer.Option("demo", help="sci only: 'demo' (binary good outcome), 'ianr' (six planes, dl_rect "
                                 "ROI, IANR-SCIFRS score) or 'upper_limb' (sagittal T2, UEMS at admission and one "
                                 "year)."),
    patients: int | None = typer.Option(None, min=1, help="Development patients (metastasis: all patients) "
                                        f"(default: {SHIPPED_DEFAULT})."),
    prospective: int | None = typer.Option(None, min=0, help="Prospective patients (sci only); their outcomes go to "
                                           f"followup/outcomes.csv (default: {SHIPPED_DEFAULT})."),
    seed: int | None = typer.Option(None, help=f"Random seed; the same seed writes the same cohort (default: "
                                    f"{SHIPPED_DEFAULT})."),
) -> None:
    """Write a synthetic multi-center cohort (images, masks, manifest, planted ground truth); by default the very
    cohort `cssci demo` (protocol demo) or `cssci run --config <the protocol's config>` writes."""
    from cssci_platform.cli.study_stages import write_synthetic_cohort

    started = time.perf_counter()
    if variant not in ("sci", "metastasis"):
        raise typer.BadParameter("choose 'sci' or 'metastasis'", param_hint="--variant")
    if variant == "sci" and protocol not in ("demo", "ianr", "upper_limb"):
        raise typer.BadParameter("choose 'demo', 'ianr' or 'upper_limb'", param_hint="--protocol")
    base = shipped_synthetic_cohort("metastasis" if variant == "metastasis" else protocol)
    given = {"patients": patients, "prospective": prospective, "seed": seed}
    synthetic = base.model_copy(update={key: value for key, value in given.items() if value is not None})
    manifest = write_synthetic_cohort(synthetic, out)
    console.print(f"wrote {manifest} ({synthetic.patients} + {synthetic.prospective} prospective patients, seed "
                  f"{synthetic.seed}) in {time.perf_counter() - started:.1f} s")


def shipped_synthetic_cohort(protocol: str) -> SyntheticCohort:
    """The synthetic cohort of the shipped config of `protocol` (demo: the `demo` config behind `cssci demo`), so that
    `cssci demo-data` and `cssci demo` / `cssci run` write the same cohort by default."""
    from cssci_platform.lib.study_config import load_config, shipped_configs

    for name in sorted(shipped_configs(), key=lambda name: name != "demo"):  # `demo` first: the demo protocol's own
        synthetic = load_config(name).cohort.synthetic
        if synthetic is not None and synthetic.protocol == protocol:
            return synthetic
    raise typer.BadParameter(f"no shipped config writes a synthetic '{protocol}' cohort", param_hint="--protocol")


def demo(
    home: Path = HOME_OPTION,
    patients: int | None = typer.Option(None, min=1, help="Development patients of the synthetic cohort (default: "
                                        "the demo config's cohort.synthetic.patients)."),
    prospective: int | None = typer.Option(None, min=0, help="Prospective patients of the synthetic cohort "
                                           "(default: the demo config's)."),
    seed: int | None = typer.Option(None, help="Seed of the synthetic cohort (default: the demo config's)."),
    workers: int | None = WORKERS_OPTION,
    backbone: str = typer.Option("resnet18", help="ResNet for the deep features (resnet18/34/50/101/152)."),
    weights: str = typer.Option("none", help="'none' (random init: no ImageNet checkpoint ships with the demo), "
                                "'imagenet' (checkpoint already in $TORCH_HOME/hub/checkpoints) or a checkpoint file."),
    classifiers: str = typer.Option("all", help="Comma-separated zoo members (LR,SVM,RandomForest,...) or 'all'."),
    cv_folds: int = typer.Option(5, min=2, help="Stratified CV folds for grid search on the training split."),
) -> None:
    """Generate the synthetic multi-center cohort and materialize every asset for it (the `demo` experiment config)."""
    cohort = {"patients": patients, "prospective": prospective, "seed": seed}
    run_config_file("demo", demo_overrides(cohort, backbone, weights, classifiers, cv_folds), home, workers)


def demo_overrides(cohort: dict[str, int | None], backbone: str, weights: str, classifiers: str,
                   cv_folds: int) -> list[str]:
    """The `--set` overrides of `cssci demo`'s options on the demo config; a cohort option left out (None) keeps the
    config's value, the one `cssci demo-data` writes too."""
    overrides = [f"cohort.synthetic.{key}={value}" for key, value in cohort.items() if value is not None]
    overrides += [f"deep.backbones=[{backbone}]", f"deep.weights={weights}", f"models.cv_folds={cv_folds}"]
    if classifiers != "all":
        overrides.append(f"models.classifiers=[{classifiers}]")
    return overrides


def run(
    config: str = typer.Option(..., "--config", help="A shipped config name (cssci config list) or a YAML file."),
    overrides: list[str] = typer.Option([], "--set", help="Override one key, e.g. --set deep.weights=none --set "
                                        "models.cv_folds=5."),
    home: Path | None = typer.Option(None, "--home", help="Folder for this experiment's warehouse, images and Dagster "
                                     "instance (default: .cssci/<experiment name>)."),
    workers: int | None = WORKERS_OPTION,
) -> None:
    """Materialize the whole graph for one experiment config: cohort, features, models (MLflow), report."""
    run_config_file(config, overrides, home, workers)


def run_config_file(name_or_path: str, overrides: list[str], home: Path | None, workers: int | None) -> None:
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

    try:
        command = f"cssci run --config {name_or_path}"
        with home_lock(home.resolve(), command), stopped_cleanly(command), StageBars() as bars:
            def on_stage(name: str) -> None:
                stages.append((name, time.perf_counter()))
                bars.stage(name)

            progress = StudyProgress(on_stage, bars.patient, bars.message, bars.units, bars.pending_patients)
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
        larger = (["demo", "--patients", "200"] if name_or_path == "demo"
                  else ["run", "--config", name_or_path, "--set", "cohort.synthetic.patients=200"])
        hint = shlex.join([*cssci_program(), *larger])
    print_summary(result.home, hint)
    console.print(f"study run: {result.study_run_id} (MLflow experiment '{experiment.name}')")
    if result.report:
        console.print(f"report: {result.report}")
