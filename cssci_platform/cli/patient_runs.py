"""Patients from the command line: register them as partitions and run each one's partition of the patient job as a
run submitted to the home's instance (`instance_runs.InstanceSession`): the run queue's max_concurrent_runs (the
command's --workers) bounds how many run at once, each in its own process. Running the same command again runs
only the patients whose latest run did not succeed or is stale (its manifest row or an image / mask file changed
since: the run's `cssci/input_digest` tag)."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from cssci_platform.cli.dagster_runs import RunFailed, register_partitions, reserve_gpu_pool
from cssci_platform.cli.home import PREFLIGHT_LOCK_WAIT
from cssci_platform.cli.orphaned_runs import fail_orphaned_runs

if TYPE_CHECKING:
    from cssci_platform.cli.instance_runs import InstanceSession
    from cssci_platform.lib.cohort import Cohort, PatientRecord

PATIENT_JOB = "patient_features_job"
PARTITION_TAG = "dagster/partition"
INPUT_DIGEST_TAG = "cssci/input_digest"  # the patient's manifest row and file stats the run processed
# A patient run executes its steps in the run's own process: parallelism is across patients (runs), bounded by the
# run queue's max_concurrent_runs; a process per step would only add start-up cost (PyRadiomics is single-threaded).
PATIENT_RUN_EXECUTION: dict[str, dict] = {"execution": {"config": {"in_process": {}}}}


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


def latest_patient_run(instance: dg.DagsterInstance, patient_key: str) -> dg.DagsterRun | None:
    runs = instance.get_runs(filters=dg.RunsFilter(job_name=PATIENT_JOB, tags={PARTITION_TAG: patient_key}), limit=1)
    return runs[0] if runs else None


def patient_input_digest(cohort: Cohort, record: PatientRecord) -> str:
    """Changes when the patient's manifest row changes (`record_digest`) or one of its image / mask files is
    replaced (size or modification time): a patient run of another digest is stale."""
    from cssci_platform.lib.partition_plan import record_digest

    files: list[tuple[str, int | None, int | None]] = []
    for path in sorted([*record.images.values(), *(mask.path for mask in record.masks)]):
        try:
            stat = cohort.resolve(path).stat()
            files.append((path, stat.st_size, stat.st_mtime_ns))
        except (OSError, ValueError):
            files.append((path, None, None))
    payload = json.dumps([record_digest(record), files], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def patients_to_run(instance: dg.DagsterInstance, patient_keys: list[str],
                    digests: dict[str, str] | None = None) -> list[str]:
    """What a resumed command runs: the patients whose latest patient run did not succeed (none, failed, canceled),
    or succeeded on other inputs (its `INPUT_DIGEST_TAG` differs from `digests`: the row or a file changed). A run
    without the tag (launched from the UI) counts by its status alone."""
    digests = digests or {}

    def done(key: str) -> bool:
        run = latest_patient_run(instance, key)
        if run is None or run.status != dg.DagsterRunStatus.SUCCESS:
            return False
        recorded = run.tags.get(INPUT_DIGEST_TAG)
        return recorded is None or key not in digests or recorded == digests[key]

    return [key for key in patient_keys if not done(key)]


def patient_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> PatientRunOutcome:
    """What a finished patient run did, from its event log: the failed checks (with the patient's QC errors), else
    the root cause of its first failed step, else why the run ended (its worker killed, canceled)."""
    from cssci_platform.cli.instance_runs import ended_run

    checks = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = tuple(e.dagster_event.asset_check_evaluation_data.asset_check_key.name for e in checks
                   if e.dagster_event and not e.dagster_event.asset_check_evaluation_data.passed)
    ended = ended_run(instance, run)
    key = run.tags[PARTITION_TAG]
    qc_errors = recorded_qc_errors(key) if failed else ()
    return PatientRunOutcome(key, ended.success and not failed, run.run_id, failed, ended.failure, qc_errors)


def run_patients_on_instance(session: InstanceSession, patient_keys: list[str],
                             on_outcome: Callable[[PatientRunOutcome], None] = lambda outcome: None,
                             on_pending: Callable[[int, int], None] = lambda pending, total: None,
                             digests: dict[str, str] | None = None) -> list[PatientRunOutcome]:
    """Run every patient not yet done through the instance and report each as its run ends (failures as they
    happen). A patient whose latest run succeeded is skipped (its outcome is not reported); one whose latest run is
    still queued or running (left by a command killed meanwhile, or launched from the UI) is followed, not run twice.
    Ctrl-C: the session cancels the runs it submitted. `on_pending(pending, total)` is told how many will run;
    `digests` (`patient_input_digest` per patient) make a patient whose inputs changed since its run stale."""
    instance = session.instance
    digests = digests or {}
    pending = patients_to_run(instance, patient_keys, digests)
    on_pending(len(pending), len(patient_keys))
    unfinished = {key: run.run_id for key in pending if (run := latest_patient_run(instance, key)) is not None
                  and not run.is_finished}

    def submit(key: str) -> str:
        tags = {INPUT_DIGEST_TAG: digests[key]} if key in digests else {}
        return session.submit(PATIENT_JOB, key, PATIENT_RUN_EXECUTION, tags)

    run_ids = [unfinished.get(key) or submit(key) for key in pending]
    outcomes: list[PatientRunOutcome] = []

    def on_ended(run: dg.DagsterRun) -> None:
        outcome = patient_outcome(instance, run)
        outcomes.append(outcome)
        on_outcome(outcome)

    session.follow(run_ids, on_ended)
    return outcomes


def run_manifest_job(session: InstanceSession) -> None:
    """Run `cohort_manifest_job` through the instance; raises `RunFailed` with the root cause."""
    ended = session.run("cohort_manifest_job")
    if not ended.success:
        raise RunFailed(f"cohort_manifest_job failed: {ended.failure}")


def ingest_cohort(manifest: Path, workers: int, on_patient: Callable[[PatientRunOutcome], None],
                  session: InstanceSession | None = None,
                  on_pending: Callable[[int, int], None] = lambda pending, total: None) -> list[PatientRunOutcome]:
    """Validate the manifest, register its patients and centers as partitions, and run every patient not yet done
    through the home's instance, `workers` runs at a time (the run queue's max_concurrent_runs in the home's
    dagster.yaml). Uses the command's `session` when given, else one of its own."""
    from cssci_platform.cli.instance_runs import instance_session, write_run_queue_limit
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)
    write_run_queue_limit(Path(os.environ["DAGSTER_HOME"]), workers)
    if session is None:
        with dg.DagsterInstance.get() as instance, instance_session(instance) as own:
            return ingest_cohort(manifest, workers, on_patient, own, on_pending)
    instance = session.instance
    reserve_gpu_pool(instance)
    fail_orphaned_runs(instance)
    run_manifest_job(session)
    register_partitions(instance, sorted(cohort.patients), sorted({p.center for p in cohort.patients.values()
                                                                   if p.center in cohort.spec.centers}))
    digests = {key: patient_input_digest(cohort, record) for key, record in cohort.patients.items()}
    return run_patients_on_instance(session, sorted(cohort.patients), on_patient, on_pending, digests)
