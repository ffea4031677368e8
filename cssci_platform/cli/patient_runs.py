"""Patients from the command line: register them as partitions and run each one's patient job, in parallel worker
processes that stop with the command (Ctrl-C, SIGTERM, or the command killed)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

import dagster as dg

from cssci_platform.cli.dagster_runs import (
    first_failure,
    materialize_manifest,
    register_partitions,
    reserve_gpu_pool,
    run_job,
)
from cssci_platform.cli.guards import stop_on_terminate
from cssci_platform.cli.home import PREFLIGHT_LOCK_WAIT
from cssci_platform.cli.orphaned_runs import fail_orphaned_runs


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

    from cssci_platform.lib.queries.summary import quarantined_among
    from cssci_platform.lib.warehouse import connect

    try:
        with connect(Path(os.environ["CSSCI_WAREHOUSE"]), read_only=True, lock_wait=PREFLIGHT_LOCK_WAIT) as con:
            return quarantined_among(con, patient_keys)
    except (duckdb.Error, KeyError):
        return set()


def recorded_qc_errors(patient_key: str) -> tuple[str, ...]:
    """The patient's QC errors in the warehouse (`CSSCI_WAREHOUSE`) as '[stage/code] message (fix: fix)', the way
    `cssci qc` shows them; () when the warehouse cannot be read."""
    import duckdb

    from cssci_platform.lib.queries.summary import patient_qc_errors
    from cssci_platform.lib.warehouse import connect

    try:
        with connect(Path(os.environ["CSSCI_WAREHOUSE"]), read_only=True, lock_wait=PREFLIGHT_LOCK_WAIT) as con:
            rows = patient_qc_errors(con, patient_key)
    except (duckdb.Error, KeyError):
        return ()
    return tuple(f"[{stage}/{code}] {message} (fix: {fix})" for stage, code, message, fix in rows)


def failure_summary(failed: list[PatientRunOutcome], total: int) -> str:
    """One message for patients that failed outside QC: how many, and each distinct root cause."""
    causes = list(dict.fromkeys(o.reason for o in failed))
    named = ", ".join(o.patient_key for o in failed[:5]) + (", ..." if len(failed) > 5 else "")
    return f"{len(failed)} of {total} patients failed for a reason other than QC ({named}): " + " | ".join(causes[:3])


def run_patient(patient_key: str) -> PatientRunOutcome:
    """Materialize one patient's partition of the patient job in this process (used by worker processes, which
    inherit the study from CSSCI_EXPERIMENT_CONFIG)."""
    result = run_job("patient_features_job", partition_key=patient_key)
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


def embed_centers(centers: list[str]) -> dict[str, bool]:
    """Materialize `center_embeddings` for each center in this process (torch uses every core itself)."""
    return {center: run_job("center_embeddings_job", partition_key=center).success for center in centers}


def ingest_cohort(manifest: Path, workers: int,
                  on_patient: Callable[[PatientRunOutcome], None]) -> list[PatientRunOutcome]:
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
