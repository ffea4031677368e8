"""The executor of the jobs whose steps can run on any machine: patients (`patient_batch_job`), each center's deep
features (`center_embeddings_batch_job`), the fine-tuning of networks (`fine_tuning_job`) and the zoo's fit units
(`modeling_job`).

In the `local` profile, and in the `cluster` profile without a Celery broker, each keeps its local executor. In the
`cluster` profile with `celery_broker` in the cluster file, their steps go to dagster-celery's executor: each step is
a task on the broker (Redis, which also holds the results), executed by whichever `cssci worker` takes it from its
queue; GPU steps (`GPU_QUEUE_TAGS`) go to the `gpu` queue, which only workers started with `--queues gpu` (on GPU
machines) take. Workers load the same definitions (same code, same home settings) and reach the instance's storage in
PostgreSQL, so a step's events reach the run wherever it executed. Steps pass file paths and small metadata, never
images or networks.

Which one executes a run is decided when the run starts (its executor is created in the run's process), from the
variables every `cssci` command sets from the profile (`cli.home.configure_environment`); the definitions read
nothing from the environment when they load, and the local executor's settings (run config) stay as they are.
"""

import os

import dagster as dg

from cssci_platform.lib.profiles import CELERY_BROKER_ENV, GPU_CELERY_QUEUE, PROFILE_ENV

CELERY_QUEUE_TAG = "dagster-celery/queue"  # the step tag dagster-celery routes by
GPU_QUEUE_TAGS = {CELERY_QUEUE_TAG: GPU_CELERY_QUEUE}


def celery_broker() -> str | None:
    """The Celery broker the steps go to: only in the cluster profile, where the cluster file names one."""
    if os.environ.get(PROFILE_ENV, "").strip() != "cluster":
        return None
    return os.environ.get(CELERY_BROKER_ENV) or None


def step_executor(local: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """`local` (same name, settings and requirements), whose run goes to dagster-celery's executor on the cluster's
    broker (also the result backend) instead where `celery_broker()` names one when the run starts."""
    create_local = local.executor_creation_fn
    assert create_local is not None, f"{local.name} has no executor to create"

    def create(init_context: dg.InitExecutorContext) -> dg.Executor:
        broker = celery_broker()
        if broker is None:
            return create_local(init_context)
        from dagster._core.execution.retries import RetryMode  # Dagster's own type, as dagster-celery takes it
        from dagster_celery.executor import CeleryExecutor  # imports Celery: only in the cluster profile

        retries = RetryMode.from_config(init_context.executor_config.get("retries") or {"enabled": {}})
        return CeleryExecutor(retries=retries, broker=broker, backend=broker)

    return dg.ExecutorDefinition(name=local.name, config_schema=local.config_schema, executor_creation_fn=create,
                                 description=local.description, requirements=local.get_requirements)
