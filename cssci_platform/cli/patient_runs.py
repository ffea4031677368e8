"""Drive the Dagster graph from the command line: environment, partition registration, patient runs.

Every run goes through the same Dagster instance (`DAGSTER_HOME`) that `dagster dev` shows, so runs
started here appear in the UI with their materializations, checks and metadata.
"""

from __future__ import annotations

import fcntl  # POSIX only, like the Linux/macOS hosts this platform runs on
import os
import shutil
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import dagster as dg

from cssci_platform.lib.failures import ExplainedError
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
    values["CSSCI_MLFLOW_URI"] = (os.environ.get("CSSCI_MLFLOW_URI") or remembered_mlflow_uri(home)
                                  or f"sqlite:///{home / 'mlflow.db'}")
    values["CSSCI_LOG_DIR"] = os.environ.get("CSSCI_LOG_DIR") or str(home / "logs")  # full tracebacks of failed commands
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


def mlflow_uri_file(home: Path) -> Path:
    """Where `cssci run` records the MLflow store of an experiment home (experiment homes share `.cssci/mlflow.db`,
    one level up), so every later command on that home (`predict`, `report`, `ui`) finds it from the home alone."""
    return home / "mlflow_uri"


def remember_mlflow_uri(home: Path, uri: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    mlflow_uri_file(home).write_text(uri, encoding="utf-8")


def remembered_mlflow_uri(home: Path) -> str | None:
    """The MLflow store recorded in `home` by `cssci run`, None where none was recorded."""
    path = mlflow_uri_file(home)
    return (path.read_text(encoding="utf-8").strip() or None) if path.is_file() else None


def home_experiment_name(home: Path) -> str | None:
    """The experiment an experiment home belongs to (the `name` of its `experiment.yaml`), None for a plain home."""
    import yaml

    path = experiment_file(home)
    if not path.is_file():
        return None
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document.get("name") if isinstance(document, dict) else None


MIN_FREE_MB_ENV = "CSSCI_MIN_FREE_MB"
MIN_FREE_MB = 200.0  # below this, a run would fail half-way on a full disk: refuse before any patient
PREFLIGHT_LOCK_WAIT = 15.0  # seconds a command waits at start for another process' warehouse lock


class HomeBusy(ExplainedError):
    """Another `cssci` command is writing to the same home."""


@contextmanager
def home_lock(home: Path, command: str) -> Iterator[None]:
    """Hold `<home>/cssci.lock` for the command's lifetime; a second writing command on the same home is refused
    with the first one's pid, command and start time. The OS releases the lock when the process ends (even on
    SIGKILL), so a crash never leaves a stale lock."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "cssci.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise HomeBusy(f"another cssci command is using {home}: {holder}. Wait for it to finish (or stop it), or "
                           "give this one another --home.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} `{command}` since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_storage() -> None:
    """Before any work: the warehouse opens for writing (within PREFLIGHT_LOCK_WAIT s) and every folder of the home
    has CSSCI_MIN_FREE_MB free. Raises `WarehouseUnavailable` / `StorageFull` naming the cause."""
    from cssci_platform.lib.warehouse import connect, lock_wait_seconds

    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "DAGSTER_HOME"):
        check_free_space(Path(os.environ[name]))
    with connect(Path(os.environ["CSSCI_WAREHOUSE"]), lock_wait=min(lock_wait_seconds(), PREFLIGHT_LOCK_WAIT)):
        pass


class StorageFull(ExplainedError):
    """Too little free disk space to start."""


def check_free_space(path: Path) -> None:
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        minimum = float(os.environ.get(MIN_FREE_MB_ENV) or MIN_FREE_MB)
    except ValueError:
        raise StorageFull(f"{MIN_FREE_MB_ENV}={os.environ[MIN_FREE_MB_ENV]!r} is not a number of megabytes") from None
    free = shutil.disk_usage(existing).free / 1e6
    if free < minimum:
        raise StorageFull(f"the disk is full: {free:.0f} MB free on the disk holding {path} (at least {minimum:.0f} MB "
                          f"needed to start; {MIN_FREE_MB_ENV} sets it). Free space there or move CSSCI_HOME to a larger "
                          "disk; nothing was started.")


def load_definitions() -> dg.Definitions:
    from cssci_platform.definitions import defs

    return defs()


# The console shows only what the CLI prints itself (a failed step's root cause, once): Dagster's console logger
# would print each step failure's whole stack. Every event still goes to the instance (the UI shows it all).
QUIET_RUN_CONFIG = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


class RunFailed(ExplainedError):
    """A Dagster run started by the CLI failed; the message names the job and the root cause of its first failure."""


def materialize_manifest(instance: dg.DagsterInstance) -> dg.ExecuteInProcessResult:
    """Run `cohort_manifest_job`; raises `RunFailed` with the root cause (never Dagster's cyclic exception chain)."""
    job = load_definitions().resolve_job_def("cohort_manifest_job")
    result = job.execute_in_process(run_config=QUIET_RUN_CONFIG, instance=instance, raise_on_error=False, tags=process_tags())
    if not result.success:
        raise RunFailed(f"cohort_manifest_job failed: {first_failure(result)}")
    return result


PID_TAG, HOST_TAG, PROCESS_START_TAG = "cssci/pid", "cssci/host", "cssci/process_start"


def _proc_stat(pid: int) -> list[str]:
    """Fields 3.. of /proc/<pid>/stat (state, ppid, ...), [] where unknown; the command name may hold spaces."""
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()
    except OSError:
        return []


def process_start(pid: int) -> str:
    """When process `pid` started (clock ticks since boot, from /proc), '' where unknown: tells a live process
    from a later one that got the same pid."""
    fields = _proc_stat(pid)
    return fields[19] if fields else ""  # field 22 (starttime)


def process_tags() -> dict[str, str]:
    """Tags naming the process that executes a run in-process, so a later command can tell whether it died."""
    return {PID_TAG: str(os.getpid()), HOST_TAG: socket.gethostname(), PROCESS_START_TAG: process_start(os.getpid())}


def process_alive(tags: dict[str, str]) -> bool:
    """Whether the process named by `process_tags()` still runs (True when it ran on another host: cannot tell)."""
    if tags.get(HOST_TAG) != socket.gethostname() or not tags.get(PID_TAG, "").isdigit():
        return True
    pid = int(tags[PID_TAG])
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, another user's
    fields = _proc_stat(pid)
    if fields and fields[0] == "Z":  # killed, not yet reaped by its parent
        return False
    started = tags.get(PROCESS_START_TAG, "")
    return not started or not fields or fields[19] == started


def fail_orphaned_runs(instance: dg.DagsterInstance) -> list[str]:
    """Mark FAILURE the runs this CLI started in-process whose process is gone (e.g. killed with SIGKILL), which
    would otherwise stay STARTED for ever; returns their run ids. Runs of the UI / daemon (no pid tag) are left
    to Dagster's run monitoring."""
    active = [dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED]
    orphaned = [run for run in instance.get_runs(filters=dg.RunsFilter(statuses=active))
                if PID_TAG in run.tags and not process_alive(run.tags)]
    for run in orphaned:
        instance.report_run_failed(run, f"the process that ran it (pid {run.tags[PID_TAG]} on {run.tags.get(HOST_TAG)}) "
                                        "ended without finishing it (killed or crashed); marked failed by the next cssci command")
    return [run.run_id for run in orphaned]


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
    qc_errors: tuple[str, ...] = ()  # the QC errors recorded for the patient: '[stage/code] message (fix: ...)'

    @property
    def reason(self) -> str:
        """Why the patient was quarantined: the failed checks with each QC error's message and fix, else the root
        cause of the step error."""
        if not self.failed_checks:
            return self.error.strip()
        return ", ".join(self.failed_checks) + "".join(f"\n    {line}" for line in self.qc_errors)

    @property
    def failed_outside_qc(self) -> bool:
        """Failed without a failed QC check: a broken disk, lock or program, not the patient's data."""
        return not self.success and not self.failed_checks


def outside_qc_failures(outcomes: list[PatientRunOutcome]) -> list[PatientRunOutcome]:
    """Patients that failed without a failed check and without a QC error recorded for them in the warehouse
    (`CSSCI_WAREHOUSE`): what a broken disk, lock or program did, never a quarantined patient."""
    candidates = [o for o in outcomes if o.failed_outside_qc]
    quarantined = quarantined_patients([o.patient_key for o in candidates]) if candidates else set()
    return [o for o in candidates if o.patient_key not in quarantined]


def quarantined_patients(patient_keys: list[str]) -> set[str]:
    """Which of `patient_keys` have a QC error in the warehouse (none when it cannot be read)."""
    import duckdb

    from cssci_platform.lib.warehouse import connect

    try:
        with connect(Path(os.environ["CSSCI_WAREHOUSE"]), read_only=True, lock_wait=PREFLIGHT_LOCK_WAIT) as con:
            rows = con.execute("SELECT DISTINCT patient_key FROM qc_issues WHERE severity = 'error' AND list_contains(?, patient_key)",
                               [patient_keys]).fetchall()
    except (duckdb.Error, KeyError):
        return set()
    return {key for (key,) in rows}


def recorded_qc_errors(patient_key: str) -> tuple[str, ...]:
    """The patient's QC errors in the warehouse (`CSSCI_WAREHOUSE`) as '[stage/code] message (fix: fix)', the way
    `cssci qc` shows them; () when the warehouse cannot be read."""
    import duckdb

    from cssci_platform.lib.warehouse import connect

    try:
        with connect(Path(os.environ["CSSCI_WAREHOUSE"]), read_only=True, lock_wait=PREFLIGHT_LOCK_WAIT) as con:
            rows = con.execute("SELECT stage, code, message, fix FROM qc_issues WHERE patient_key = ? AND severity = 'error' "
                               "ORDER BY stage, code", [patient_key]).fetchall()
    except (duckdb.Error, KeyError):
        return ()
    return tuple(f"[{stage}/{code}] {message} (fix: {fix})" for stage, code, message, fix in rows)


def failure_summary(failed: list[PatientRunOutcome], total: int) -> str:
    """One message for patients that failed outside QC: how many, and each distinct root cause."""
    causes = list(dict.fromkeys(o.reason for o in failed))
    return (f"{len(failed)} of {total} patients failed for a reason other than QC ({', '.join(o.patient_key for o in failed[:5])}"
            f"{', ...' if len(failed) > 5 else ''}): " + " | ".join(causes[:3]))


def experiment_run_config(assets: list[str]) -> dict:
    """Quiet loggers plus the active experiment config's blocks for `assets` (`EXPERIMENT_ENV`)."""
    from cssci_platform.defs.experiment_jobs import with_experiment_config

    return with_experiment_config(assets, QUIET_RUN_CONFIG)


def run_job(job_name: str, run_config: dict, partition_key: str | None = None) -> dg.ExecuteInProcessResult:
    """Run one job of the definitions in this process on the home's Dagster instance."""
    job = load_definitions().resolve_job_def(job_name)
    with dg.DagsterInstance.get() as instance:
        return job.execute_in_process(run_config={**QUIET_RUN_CONFIG, **run_config}, partition_key=partition_key,
                                      instance=instance, raise_on_error=False, tags=process_tags())


def first_failure(result: dg.ExecuteInProcessResult) -> str:
    """The root cause of the run's first failed step (explained when it is a storage problem: full disk,
    read-only, locked), or where to look when no step failed (e.g. a failed check)."""
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    if not failures:
        return "see the run in the Dagster UI"
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
    qc_errors = recorded_qc_errors(patient_key) if failed else ()
    return PatientRunOutcome(patient_key, result.success and not failed, result.run_id, failed, error, qc_errors)


def run_patients(patient_keys: list[str], workers: int) -> Iterator[PatientRunOutcome]:
    """Run patients in `workers` processes (PyRadiomics is single-threaded; parallelism is across patients).
    SIGTERM or Ctrl-C stops at once: pending patients are cancelled and running workers terminated (their writes
    are transactions; their runs are marked failed by the next command), then KeyboardInterrupt propagates."""
    with stop_on_terminate():
        if workers <= 1:
            yield from (run_patient(key) for key in patient_keys)
            return
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn"), initializer=exit_with_parent,
                                   initargs=(os.getpid(),))
        try:
            futures = {pool.submit(run_patient, key): key for key in patient_keys}
            for future in as_completed(futures):
                yield _outcome_of(future, futures[future])
        except BaseException:  # interrupted, or the caller stopped consuming: no patient keeps running
            terminate_workers(pool)
            raise
        finally:
            pool.shutdown(wait=True)


def _outcome_of(future: Future, patient_key: str) -> PatientRunOutcome:
    try:
        return future.result()
    except BrokenProcessPool:
        return PatientRunOutcome(patient_key, False, "", (), "a worker process died (killed, or out of memory) while "
                                 "patients were running; run the command again")


def terminate_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the worker processes (the executor has no public way before Python 3.14's terminate_workers);
    the executor then fails the patients not started yet with BrokenProcessPool."""
    processes = [p for p in (getattr(pool, "_processes", None) or {}).values() if p.is_alive()]
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)
        if process.is_alive():  # a step that traps SIGTERM
            process.kill()


PARENT_POLL_SECONDS = 1.0


def exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: end this worker when the command that started it is gone (e.g. killed with SIGKILL);
    an orphaned worker would otherwise wait on its queue for ever."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_POLL_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


@contextmanager
def stop_on_terminate() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt in the main thread (as Ctrl-C), so `kill` stops a command like Ctrl-C
    does; outside the main thread nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def embed_centers(centers: list[str], run_config: dict) -> dict[str, bool]:
    """Materialize `center_embeddings` for each center in this process (torch uses every core itself)."""
    return {center: run_job("center_embeddings_job", run_config, partition_key=center).success for center in centers}


def ingest_cohort(manifest: Path, workers: int, on_patient: Callable[[PatientRunOutcome], None]) -> list[PatientRunOutcome]:
    """Validate the manifest, register its patients and centers as partitions, and run every patient."""
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)
    with dg.DagsterInstance.get() as instance:
        reserve_gpu_pool(instance)
        fail_orphaned_runs(instance)
        materialize_manifest(instance)
        register_partitions(instance, sorted(cohort.patients), sorted({p.center for p in cohort.patients.values()
                                                                       if p.center in cohort.spec.centers}))
    outcomes = []
    for outcome in run_patients(sorted(cohort.patients), workers):
        on_patient(outcome)
        outcomes.append(outcome)
    return outcomes
