"""Drive the Dagster graph from the command line: environment, partition registration, patient runs.

Every run goes through the same Dagster instance (`DAGSTER_HOME`) that `dagster dev` shows, so runs
started here appear in the UI with their materializations, checks and metadata.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import dagster as dg

from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_DEFAULTS = {  # relative to CSSCI_HOME
    "CSSCI_WAREHOUSE": "warehouse.duckdb",
    "CSSCI_IMAGE_STORE": "image_store",
    "DAGSTER_HOME": "dagster_home",
}


def configure_environment(home: Path, manifest: Path | None = None) -> dict[str, str]:
    """Set the CSSCI_* variables (keeping any the user already set) and prepare DAGSTER_HOME."""
    home = home.resolve()
    values = {name: os.environ.get(name) or str(home / relative) for name, relative in ENV_DEFAULTS.items()}
    values["CSSCI_MLFLOW_URI"] = os.environ.get("CSSCI_MLFLOW_URI") or f"sqlite:///{home / 'mlflow.db'}"
    values["MLFLOW_DISABLE_TELEMETRY"] = os.environ.get("MLFLOW_DISABLE_TELEMETRY") or "true"  # no network at run time
    remembered = home / "current_manifest"
    if manifest is not None:
        values["CSSCI_MANIFEST"] = str(manifest.resolve())
        home.mkdir(parents=True, exist_ok=True)
        remembered.write_text(values["CSSCI_MANIFEST"], encoding="utf-8")
    elif not os.environ.get("CSSCI_MANIFEST") and remembered.exists():
        values["CSSCI_MANIFEST"] = remembered.read_text(encoding="utf-8").strip()
    experiment = experiment_file(home)  # written by `cssci run`: the jobs' defaults in the UI
    if not os.environ.get(EXPERIMENT_ENV) and experiment.exists():
        values[EXPERIMENT_ENV] = str(experiment)
    os.environ.update(values)
    dagster_home = Path(values["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", instance_yaml)
    return values


def load_definitions() -> dg.Definitions:
    from cssci_platform.definitions import defs

    return defs()


QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}  # events still go to the instance


def materialize_manifest(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    job = load_definitions().resolve_job_def("cohort_manifest_job")
    return job.execute_in_process(run_config=QUIET_RUN_CONFIG, instance=instance, raise_on_error=True)


GPU_POOL = "gpu"


def reserve_gpu_pool(instance: dg.DagsterInstance, slots: int = 1) -> None:
    """One GPU step at a time across runs (`pool="gpu"` assets), unless the user already set a limit."""
    if GPU_POOL not in instance.event_log_storage.get_concurrency_keys():
        instance.event_log_storage.set_concurrency_slots(GPU_POOL, slots)


def register_partitions(instance: dg.DagsterInstance, patients: list[str], centers: list[str]) -> int:
    from cssci_platform.defs.partitions import centers_partitions, patients_partitions

    new = [p for p in patients if not instance.has_dynamic_partition(patients_partitions.name, p)]
    instance.add_dynamic_partitions(patients_partitions.name, new)
    instance.add_dynamic_partitions(centers_partitions.name, [c for c in centers
                                                             if not instance.has_dynamic_partition(centers_partitions.name, c)])
    return len(new)


@dataclass(frozen=True)
class PatientRunOutcome:
    patient_key: str
    success: bool
    run_id: str
    failed_checks: tuple[str, ...]
    error: str = ""

    @property
    def reason(self) -> str:
        """Why the patient was quarantined: the failed checks, else the first line of the step error."""
        return ", ".join(self.failed_checks) or self.error.splitlines()[0][:160]


def experiment_run_config(assets: list[str]) -> dict:
    """Quiet loggers plus the active experiment config's blocks for `assets` (`EXPERIMENT_ENV`)."""
    from cssci_platform.defs.experiment_jobs import with_experiment_config

    return with_experiment_config(assets, QUIET_RUN_CONFIG)


def run_job(job_name: str, run_config: dict, partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    """Run one job of the definitions in this process on the home's Dagster instance."""
    job = load_definitions().resolve_job_def(job_name)
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(run_config={**QUIET_RUN_CONFIG, **run_config}, partition_key=partition_key,
                                      instance=instance, raise_on_error=False)


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    """The first failed step's message of a run, or where to look when no step failed (e.g. a failed check)."""
    errors = [e.message for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    return errors[0] if errors else "see the run in the Dagster UI"


def run_patient(patient_key: str) -> PatientRunOutcome:
    """Materialize one patient's partition of the patient job in this process (used by worker processes)."""
    from cssci_platform.defs.ingest.jobs import PATIENT_ASSETS

    result = run_job("patient_features_job", experiment_run_config(PATIENT_ASSETS), partition_key=patient_key)
    failed = tuple(
        f"{e.asset_check_evaluation_data.asset_check_key.name}"
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
    )
    error = "" if result.success else first_failure(result)
    return PatientRunOutcome(patient_key, result.success and not failed, result.run_id, failed, error)


def run_patients(patient_keys: list[str], workers: int) -> Iterator[PatientRunOutcome]:
    """Run patients in `workers` processes (PyRadiomics is single-threaded; parallelism is across patients)."""
    if workers <= 1:
        yield from (run_patient(key) for key in patient_keys)
        return
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        futures = [pool.submit(run_patient, key) for key in patient_keys]
        for future in as_completed(futures):
            yield future.result()


def embed_centers(centers: list[str], run_config: dict) -> dict[str, bool]:
    """Materialize `center_embeddings` for each center in this process (torch uses every core itself)."""
    return {center: run_job("center_embeddings_job", run_config, partition_key=center).success for center in centers}


def ingest_cohort(manifest: Path, workers: int, on_patient: Callable[[PatientRunOutcome], None]) -> list[PatientRunOutcome]:
    """Validate the manifest, register its patients and centers as partitions, and run every patient."""
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)
    with dg.DagsterInstance.get() as instance:
        reserve_gpu_pool(instance)
        materialize_manifest(instance)
        register_partitions(instance, sorted(cohort.patients), sorted({p.center for p in cohort.patients.values()
                                                                       if p.center in cohort.spec.centers}))
    outcomes = []
    for outcome in run_patients(sorted(cohort.patients), workers):
        on_patient(outcome)
        outcomes.append(outcome)
    return outcomes
