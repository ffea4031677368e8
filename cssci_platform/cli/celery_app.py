"""The Celery app a `cssci worker` runs: dagster-celery's step task on the cluster's broker, the one the step
executor sends steps to (defs/executors.py), built when the worker starts (nothing is read at import).

A step is acknowledged when it ends, not when a worker takes it (`task_acks_late`), and given back to the broker
when the worker process executing it dies (`task_reject_on_worker_lost`): another worker executes it again. Every
step writes its rows by replacing a patient's, a center's or a unit's rows, so a step executed twice leaves the same
tables. With Redis, a step whose whole worker machine vanished is given back after the broker's visibility timeout
(`broker_transport_options.visibility_timeout`, Celery's default one hour).
"""

from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import task_prerun
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from cssci_platform.cli.home import configure_environment


def worker_app(broker: str, home: Path) -> Celery:
    """The app with the step task, on `broker` (also the result backend), for the steps of `home`."""
    app = make_app(CeleryExecutor.for_cli(broker=broker, backend=broker).app_args())
    app.conf.task_acks_late = True
    app.conf.task_reject_on_worker_lost = True
    create_task(app)

    def home_settings(**_: Any) -> None:
        """The home's settings as they are when a step starts: a worker usually starts before `cssci run` writes
        the cohort's manifest (`current_manifest`), which steps read from CSSCI_MANIFEST."""
        configure_environment(home)

    task_prerun.connect(home_settings, weak=False)
    return app
