"""The Celery app a `cssci worker` runs (`celery -A cssci_platform.cli.celery_app worker`): dagster-celery's step
task on the cluster's broker, the one the step executor sends steps to (defs/executors.py). Imported by the worker
only, after `cssci worker` has set the home's environment.

A step is acknowledged when it ends, not when a worker takes it (`task_acks_late`), and given back to the broker
when the worker process executing it dies (`task_reject_on_worker_lost`): another worker executes it again. Every
step writes its rows by replacing a patient's, a center's or a unit's rows, so a step executed twice leaves the same
tables. With Redis, a step whose whole worker machine vanished is given back after the broker's visibility timeout
(`broker_transport_options.visibility_timeout`, Celery's default one hour).
"""

import os
from pathlib import Path
from typing import Any

from celery.signals import task_prerun
from dagster_celery.executor import CeleryExecutor
from dagster_celery.make_app import make_app
from dagster_celery.tasks import create_task

from cssci_platform.cli.home import configure_environment
from cssci_platform.lib.profiles import CELERY_BROKER_ENV

_broker = os.environ[CELERY_BROKER_ENV]
app = make_app(CeleryExecutor.for_cli(broker=_broker, backend=_broker).app_args())
app.conf.task_acks_late = True
app.conf.task_reject_on_worker_lost = True
execute_plan = create_task(app)


@task_prerun.connect
def _home_settings(**_: Any) -> None:
    """The home's settings as they are when a step starts: a worker usually starts before `cssci run` writes the
    cohort's manifest (`current_manifest`), which steps read from CSSCI_MANIFEST."""
    configure_environment(Path(os.environ["CSSCI_HOME"]))
