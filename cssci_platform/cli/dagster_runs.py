"""What every run of the command line shares: the quiet run config, the study overrides a run may carry, the root
cause of a failed run (from an in-process result or from events read back from the instance), partition and pool
set-up on the home's instance. The CLI submits its runs to the instance (`instance_runs`); `run_job` /
`materialize_manifest` execute a job in this process (`execute_in_process`) and are kept for tests and benchmarks
as the serial reference.

A run gets no study settings here: its assets read them from the `study` resource (CSSCI_EXPERIMENT_CONFIG, see
`cli/home.py`). A run carries only the CLI's quiet loggers, a per-run input where a job has one (the follow-up file),
and tags: the process that runs it and, for the runs of a `cssci run`, the MLflow study run (`STUDY_TAG`).
"""

from __future__ import annotations

import dagster as dg

from cssci_platform.cli.orphaned_runs import process_tags
from cssci_platform.lib.failures import ExplainedError
from cssci_platform.lib.study_config import EXPERIMENT_ENV
from cssci_platform.lib.study_runs import STUDY_TAG

# The console shows only what the CLI prints itself (a failed step's root cause, once): Dagster's console logger
# would print each step failure's whole stack. Every event still goes to the instance (the UI shows it all).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
GPU_POOL = "gpu"
# A run whose steps follow one another executes them in its own process: a process per step (the default executor)
# would add ~3 s of start-up and imports per step. The modelling run keeps its multiprocess executor (parallel fits).
IN_PROCESS: dict[str, dict] = {"execution": {"config": {"in_process": {}}}}


class RunFailed(ExplainedError):
    """A Dagster run started by the CLI failed; the message names the job and the root cause of its first failure."""


def load_definitions() -> dg.Definitions:
    from cssci_platform.definitions import defs

    return defs()


def run_tags(study_run: str | None = None) -> dict[str, str]:
    """The process' identity, plus the MLflow study run the run belongs to (`cssci run`), which modelling reads."""
    return {**process_tags(), **({STUDY_TAG: study_run} if study_run else {})}


def study_overrides(overrides: list[str]) -> dict:
    """Run config changing study settings for one run, as the launchpad does: the `study` resource's overrides in the
    `cssci run --set` grammar ('models.cv_folds=3'); {} without any."""
    if not overrides:
        return {}
    return {"resources": {"study": {"config": {"path": {"env": EXPERIMENT_ENV}, "overrides": list(overrides)}}}}


def run_job(job_name: str, partition_key: str | None = None, run_input: dict | None = None,
            study_run: str | None = None, instance: dg.DagsterInstance | None = None) -> dg.ExecuteInProcessResult:
    """Run one job of the definitions in this process on the home's Dagster instance; `run_input`: run config of a
    job's per-run input (e.g. `{"ops": {"followup_outcomes": {"config": {"file": ...}}}}`) or `study_overrides`."""
    job = load_definitions().resolve_job_def(job_name)
    if instance is not None:
        return job.execute_in_process(run_config={**QUIET_RUN_CONFIG, **(run_input or {})}, partition_key=partition_key,
                                      instance=instance, raise_on_error=False, tags=run_tags(study_run))
    with dg.DagsterInstance.get() as home_instance:
        return run_job(job_name, partition_key, run_input, study_run, home_instance)


def materialize_manifest(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run `cohort_manifest_job`; raises `RunFailed` with the root cause (never Dagster's cyclic exception chain)."""
    result = run_job("cohort_manifest_job", instance=instance)
    if not result.success:
        raise RunFailed(f"cohort_manifest_job failed: {first_failure(result)}")
    return result


def reserve_gpu_pool(instance: dg.DagsterInstance, slots: int = 1) -> None:
    """One GPU step at a time across runs (`pool="gpu"` assets), unless the user already set a limit."""
    if GPU_POOL not in instance.event_log_storage.get_concurrency_keys():
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, slots)


def register_partitions(instance: dg.DagsterInstance, patients: list[str], centers: list[str]) -> int:
    from cssci_platform.defs.partitions import centers_partitions, patients_partitions

    new = [p for p in patients if not instance.has_dynamic_partition(patients_partitions.name, p)]
    instance.add_dynamic_partitions(patients_partitions.name, new)
    new_centers = [c for c in centers if not instance.has_dynamic_partition(centers_partitions.name, c)]
    instance.add_dynamic_partitions(centers_partitions.name, new_centers)
    return len(new)


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    """The root cause of the run's first failed step (explained when it is a storage problem: full disk,
    read-only, locked), or where to look when no step failed (e.g. a failed check)."""
    return first_failure_of_events(result.all_events)


def first_failure_of_events(events: list, without_failed_step: str = "see the run in the Dagster UI") -> str:
    """`first_failure` from a run's events (an in-process result's, or those read back from the instance);
    `without_failed_step` when no step failed."""
    failures = [e for e in events if e.event_type_value == "STEP_FAILURE"]
    if not failures:
        return without_failed_step
    data = failures[0].event_specific_data
    if data.user_failure_data is not None and data.user_failure_data.description:  # dg.Failure(description)
        return f"{failures[0].step_key}: {data.user_failure_data.description}"
    return f"{failures[0].step_key}: {error_root_cause(data.error) if data.error else failures[0].message}"


def error_root_cause(info) -> str:
    """The innermost error of a serialized Dagster error chain, without its module path ('IOException: ...')."""
    from cssci_platform.lib.failures import first_line, storage_problem

    chain = []
    while info is not None and len(chain) < 50:
        chain.append(info)
        info = info.cause or info.context
    own = [i for i in chain if not i.cls_name.startswith("Dagster")] or chain
    root = own[-1]
    message = root.message.strip()
    qualified = message.split(":", 1)[0]
    if qualified.endswith(root.cls_name):  # 'package.module.Class: text' -> 'Class: text'
        message = f"{root.cls_name}:{message.split(':', 1)[1]}"
    if root.cls_name == "WarehouseUnavailable":
        return message.split(":", 1)[1].strip()
    return storage_problem(message) or first_line(message)
