"""The Celery app a `cssci worker` runs: dagster-celery's step task on the cluster's broker, the one the step
executor sends steps to (defs/executors.py), built when the worker starts (nothing is read at import).

A step is acknowledged when it ends, not when a worker takes it (`task_acks_late`), and given back to the broker
when the worker process executing it dies (`task_reject_on_worker_lost`): another worker executes it again. Every
step writes its rows by replacing a patient's, a center's or a unit's rows, so a step executed twice leaves the same
tables. With Redis, a step whose whole worker vanished (machine lost, worker killed) is given back after the broker's
visibility timeout (the cluster file's `celery_visibility_timeout_s`, default one hour), checked by the other workers
every 10 s. A worker reserves no step beyond those it executes (prefetch 1 with late acknowledgement): a step waiting
in a busy worker's reservation would otherwise count against the timeout and be given to another worker too.
"""

from pathlib import Path
from typing import Any

import yaml
from celery import Celery
from celery.signals import task_prerun
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import unpack_value
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from cssci_platform.cli.home import ENV_DEFAULTS, configure_environment
from cssci_platform.lib.failures import ExplainedError
from cssci_platform.lib.profiles import DEFAULT_VISIBILITY_TIMEOUT_S


class StepOfAnotherHome(ExplainedError):
    """A step whose run belongs to another home than the worker's."""


def worker_app(broker: str, home: Path, visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S) -> Celery:
    """The app with the step task, on `broker` (also the result backend), for the steps of `home` only."""
    app = make_app(CeleryExecutor.for_cli(broker=broker, backend=broker).app_args())
    app.conf.task_acks_late = True
    app.conf.task_reject_on_worker_lost = True
    app.conf.worker_prefetch_multiplier = 1
    app.conf.broker_transport_options = {**(app.conf.broker_transport_options or {}),
                                         "visibility_timeout": visibility_timeout_s}
    task = create_task(app)
    execute_step = task.run

    def execute_step_of_this_home(execute_step_args_packed: dict, executable_dict: dict) -> Any:
        check_step_home(execute_step_args_packed, home / ENV_DEFAULTS["DAGSTER_HOME"])
        return execute_step(execute_step_args_packed=execute_step_args_packed, executable_dict=executable_dict)

    task.run = execute_step_of_this_home

    def home_settings(**_: Any) -> None:
        """The home's settings as they are when a step starts: a worker usually starts before `cssci run` writes
        the cohort's manifest (`current_manifest`), which steps read from CSSCI_MANIFEST."""
        configure_environment(home)

    task_prerun.connect(home_settings, weak=False)
    return app


def check_step_home(execute_step_args_packed: dict, dagster_home: Path) -> None:
    """Refuse a step whose run was created by another home's instance (its artifact storage is that home's
    dagster_home): executed here it would read and write this worker's home (warehouse, manifest, study), not its
    own. Two homes must not share a broker (a Redis database each), and a worker must be started with the --home of
    the commands whose steps it takes."""
    args = unpack_value(execute_step_args_packed, as_type=ExecuteStepArgs)
    storage = args.instance_ref.local_artifact_storage_data if args.instance_ref is not None else None
    base_dir = (yaml.safe_load(storage.config_yaml) or {}).get("base_dir") if storage is not None else None
    if base_dir is None or Path(base_dir).resolve() != dagster_home.resolve():
        raise StepOfAnotherHome(
            f"step {', '.join(args.step_keys_to_execute or [])} of run {args.run_id} belongs to the instance in "
            f"{base_dir}, and this worker serves the home whose instance is {dagster_home}: start a worker with "
            "that home's --home, and give each home a broker of its own (celery_broker: its own Redis database)")
