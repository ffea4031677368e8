"""`cssci ui` (the Dagster UI on a home), `cssci worker` (a Celery worker of the cluster profile) and `cssci compare`
(two study runs from the MLflow store)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import typer
from rich.markup import escape

from cssci_platform.cli.code_server import WORKSPACE_FILE
from cssci_platform.cli.guards import announce_orphaned_runs, load_or_exit
from cssci_platform.cli.home import PROJECT_ROOT, activate_study, configure_environment
from cssci_platform.cli.output import LOCAL_ONLY, comparison_table, console
from cssci_platform.cli.study_commands import HOME_OPTION
from cssci_platform.lib.failures import UserError
from cssci_platform.lib.profiles import DEFAULT_CELERY_QUEUE, GPU_CELERY_QUEUE

# `dagster dev` warns once per start that `dg dev` supersedes it; we start it on our workspace.yaml on purpose
SUPERSEDED_WARNING_FILTER = "ignore:Function `dev_command` is superseded"


def ui_command(host: str, port: int) -> list[str]:
    """`dagster dev` on the project's workspace, its webserver bound to `host`:`port`."""
    return [sys.executable, "-m", "dagster", "dev", "-w", str(WORKSPACE_FILE), "-h", host, "-p", str(port)]


def quiet_ui_warnings() -> None:
    """Silence, for `dagster dev` and the processes it starts, the warnings that say nothing to a user."""
    os.environ["PYTHONWARNINGS"] = ",".join(filter(None, [os.environ.get("PYTHONWARNINGS"), SUPERSEDED_WARNING_FILTER]))


def ui(home: Path = HOME_OPTION,
       manifest: Path | None = typer.Option(None, help="cohort.yaml (default: keep CSSCI_MANIFEST)"),
       config: str | None = typer.Option(None, "--config", help="Experiment config whose home the UI opens; its runs "
                                         "read that home's experiment.yaml (default: the --home's, if any)."),
       host: str = typer.Option(LOCAL_ONLY, help="Address the UI listens on: 127.0.0.1 = this machine only; 0.0.0.0 "
                                "exposes it to the network (no login: put it behind an authenticating proxy)."),
       port: int = typer.Option(3000, help="Port of the UI.")) -> None:
    """Start the Dagster UI on this project's instance (dagster dev -w workspace.yaml), on 127.0.0.1 unless --host."""
    # Its runs read the home's study (CSSCI_EXPERIMENT_CONFIG); a home with a manifest but no study gets the default
    # study of that manifest. One run's settings change in the launchpad: resources.study.config.overrides.
    from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file

    if config is not None:
        from cssci_platform.cli.study_stages import default_home

        experiment = load_or_exit(config, [])
        home = home if home != Path(".cssci") else default_home(experiment)
        if not experiment_file(home).exists():
            console.print(f"[red]{home} has no {experiment_file(home).name}[/]: run `cssci run --config {config}` "
                          "first")
            raise typer.Exit(1)
        os.environ[EXPERIMENT_ENV] = str(experiment_file(home).resolve())
    configure_environment(home, manifest)
    try:
        activate_study(home, Path(os.environ["CSSCI_MANIFEST"]) if os.environ.get("CSSCI_MANIFEST") else None)
    except UserError as error:  # the UI still opens: runs that need the study say it is missing
        console.print(f"[yellow]note[/] {escape(str(error))}")
    announce_orphaned_runs()  # the UI shows runs a killed command left STARTED as failed
    exposed = "" if host == LOCAL_ONLY else "  [yellow](reachable from the network)[/]"
    console.print(f"Dagster UI: http://{host}:{port}{exposed}")
    quiet_ui_warnings()
    raise typer.Exit(subprocess.call(ui_command(host, port), cwd=PROJECT_ROOT))


def worker(home: Path = HOME_OPTION,
           queues: str = typer.Option(DEFAULT_CELERY_QUEUE, help="Comma-separated Celery queues this worker takes "
                                      f"steps from: {DEFAULT_CELERY_QUEUE} (every step without a queue) and/or "
                                      f"{GPU_CELERY_QUEUE} (center embeddings, fine-tuning: start GPU machines with "
                                      f"--queues {GPU_CELERY_QUEUE} or {DEFAULT_CELERY_QUEUE},{GPU_CELERY_QUEUE})."),
           concurrency: int = typer.Option(1, min=1, help="Steps this worker executes at once (processes)."),
           name: str | None = typer.Option(None, help="Worker name (default: cssci-<pid>); shown in each step's "
                                           "'Executing steps ... in celery worker' event.")) -> None:
    """A Celery worker of the cluster profile: executes the steps of patients, center embeddings, fine-tuning and the
    zoo's fit units that commands and the UI of this home send to the cluster's broker (CSSCI_PROFILE=cluster with
    celery_broker in CSSCI_CLUSTER_FILE). Start it on each machine with the same code, the home's folders at the same
    paths (a shared folder) and the same cluster file; stop it with Ctrl-C (it finishes its running steps)."""
    from cssci_platform.cli.celery_app import worker_app
    from cssci_platform.defs.executors import celery_broker
    from cssci_platform.lib.profiles import active_profile
    from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file

    configure_environment(home)
    broker = celery_broker()
    if broker is None:
        raise UserError("cssci worker executes the steps of the cluster profile's Celery broker: set "
                        "CSSCI_PROFILE=cluster and celery_broker in the cluster file (README, 'Cluster profile')")
    # the home's study, also when `cssci run` writes it after the worker started (read when each step starts); the
    # worker reads the home's other settings again before each step (celery_app)
    os.environ.setdefault(EXPERIMENT_ENV, str(experiment_file(home.resolve())))
    worker_name = f"{name or f'cssci-{os.getpid()}'}@%h"
    console.print(f"Celery worker {worker_name} on queues {queues} ({concurrency} at once)")
    servers = active_profile().servers
    assert servers is not None, "celery_broker() is set only in the cluster profile"
    app = worker_app(broker, home.resolve(), servers.celery_visibility_timeout_s)
    app.worker_main(["worker", "--queues", queues, "--concurrency", str(concurrency), "--hostname", worker_name,
                     "--loglevel", "INFO"])


def compare(
    run_a: str = typer.Argument(..., help="Study run id, or experiment name (its latest study run); ':<mode>' "
                                "selects a mode, e.g. demo:leakage_safe."),
    run_b: str = typer.Argument(..., help="The second run, same forms, e.g. demo:paper_faithful."),
    mlflow_uri: str | None = typer.Option(None, envvar="CSSCI_MLFLOW_URI",
                                          help="MLflow tracking URI (default: .cssci/mlflow.db)."),
    csv: Path | None = typer.Option(None, help="Also write the table as CSV."),
) -> None:
    """Two study runs (modes, protocols, cohorts) side by side: CV, test and validation metrics per model."""
    from cssci_platform.cli.study_stages import shared_mlflow_uri
    from cssci_platform.lib.study_runs import (
        RunReference,
        StudyRunNotFound,
        compare_runs,
        model_metrics,
        resolve_study_run,
    )

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
        config = study.data.tags.get("config_name")
        console.print(f"{label} = {text}: study run {study.info.run_id} (config {config}, {started})")
    table_frame = compare_runs(frames[0], frames[1], "A", "B")
    console.print(comparison_table(table_frame, f"{run_a} (A) vs {run_b} (B)"))
    console.print("Point estimates from each run's MLflow metrics; the CIs and DeLong tests are in each run's report.")
    if csv is not None:
        table_frame.to_csv(csv, index=False)
        console.print(f"written {csv}")
