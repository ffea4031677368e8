"""Patients from the command line: register them as partitions and run them as waves of `patient_batch_job` runs
submitted to the home's instance (`instance_runs.InstanceSession`): a run per worker, all given the wave's patients,
largest expected work first, each taking the next patient no run of the wave took (`lib/patient_claims.py`) and
doing its steps, recording each patient's partitions as a run of the patient job would: the run queue's
max_concurrent_runs (the command's --workers) bounds how many run at once, each in its own process. Running the same
command again runs only the patients not done by their latest run (the run that took it), or done on other inputs
(its manifest row or an image / mask file changed since: the digest the batch run recorded, or a UI run's
`cssci/input_digest` tag)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.storage.dagster_run import NOT_FINISHED_STATUSES  # what `DagsterRun.is_finished` is not

from cssci_platform.cli.dagster_runs import IN_PROCESS, RunFailed, register_partitions, reserve_gpu_pool
from cssci_platform.cli.home import PREFLIGHT_LOCK_WAIT
from cssci_platform.cli.orphaned_runs import fail_orphaned_runs
from cssci_platform.lib.batch_outcomes import (
    BATCH_PATIENT_TAG,
    ERROR,
    FAILED_CHECKS,
    INPUT_DIGEST,
    OUTCOME,
    PATIENTS_TAGGED,
    PROCESSED,
    QUARANTINED,
    WAVE_TAG,
)
from cssci_platform.lib.patient_claims import claims_folder, forget_wave

if TYPE_CHECKING:
    from cssci_platform.cli.instance_runs import InstanceSession
    from cssci_platform.lib.cohort import Cohort, PatientRecord

PATIENT_JOB = "patient_features_job"  # one patient's partition: what the UI's launchpad runs
PATIENT_BATCH_JOB = "patient_batch_job"  # several patients in one run: what the command line submits
BATCH_OP = "process_patient_batch"
MANIFEST_JOB = "cohort_manifest_job"
MAX_BATCH = 25  # patients per run of a wave (on average): the wave's config and tags stay small
# A patient's expected work (`patient_work`), relative units: a fixed part, per MB of image file, per (10 kB of mask
# file)^2. Chosen by splitting the 32 real sarcoma MRIs' measured patient times into two runs with one filter channel
# and with five: each run within 3 % of an even split in both (file bytes alone: 18 % and 12 % over).
WORK_PER_PATIENT = 2.0
WORK_PER_IMAGE_MB = 0.5
WORK_PER_MASK = 3.0
MASK_BYTES_UNIT = 10_000
PARTITION_TAG = "dagster/partition"
INPUT_DIGEST_TAG = "cssci/input_digest"  # the patient's manifest row and file stats the run processed
# A patient run executes its steps in the run's own process: parallelism is across runs, bounded by the run queue's
# max_concurrent_runs; a process per step would only add start-up cost (PyRadiomics is single-threaded).
PATIENT_RUN_EXECUTION = IN_PROCESS


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


def latest_patient_runs(instance: dg.DagsterInstance, patient_keys: list[str]) -> dict[str, dg.DagsterRun]:
    """Each patient's latest run, whichever was created last: the `patient_batch_job` run that took it (what the CLI
    submits) or a `patient_features_job` run of its partition (one launched from the UI). Two indexed queries per
    patient (the batch runs' per-patient tags), so the cost does not grow with the months of runs in the home; batch
    runs from before those tags are read from their configs (a fixed set: every later batch run has the tags)."""
    latest: dict[str, dg.RunRecord] = {}
    for key in patient_keys:
        for job_name, tags in ((PATIENT_BATCH_JOB, batch_patient_tags([key])), (PATIENT_JOB, {PARTITION_TAG: key})):
            records = instance.get_run_records(filters=dg.RunsFilter(job_name=job_name, tags=tags), limit=1)
            if records and (key not in latest or records[0].create_timestamp > latest[key].create_timestamp):
                latest[key] = records[0]
    asked = set(patient_keys)
    for record in _untagged_batch_runs(instance):  # newest first; all older than any tagged batch run
        for key in set(batch_patients(record.dagster_run)) & asked:
            if key not in latest or record.create_timestamp > latest[key].create_timestamp:
                latest[key] = record
    return {key: latest[key].dagster_run for key in patient_keys if key in latest}


def batch_patient_tags(patient_keys: list[str]) -> dict[str, str]:
    """The tags a batch run carries for its patients: one per patient, and the mark that it has them."""
    return {PATIENTS_TAGGED: "1", **{BATCH_PATIENT_TAG + key: "1" for key in patient_keys}}


def _untagged_batch_runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    """Batch runs submitted before they carried per-patient tags: those created before the first run that has them."""
    first_tagged = instance.get_run_records(
        filters=dg.RunsFilter(job_name=PATIENT_BATCH_JOB, tags={PATIENTS_TAGGED: "1"}), limit=1, ascending=True)
    before = dg.RunsFilter(job_name=PATIENT_BATCH_JOB,
                           created_before=first_tagged[0].create_timestamp if first_tagged else None)
    return list(instance.get_run_records(filters=before))


def latest_patient_run(instance: dg.DagsterInstance, patient_key: str) -> dg.DagsterRun | None:
    return latest_patient_runs(instance, [patient_key]).get(patient_key)


def batch_patients(run: dg.DagsterRun) -> list[str]:
    """The patients a `patient_batch_job` run processes (its op config)."""
    config = (run.run_config or {}).get("ops", {}).get(BATCH_OP, {}).get("config", {})
    return list(config.get("patients", []))


def batch_outcomes(instance: dg.DagsterInstance, run_id: str) -> dict[str, dict]:
    """The outcome a batch run recorded for each patient it finished (its observations' metadata by patient)."""
    entries = instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_OBSERVATION)
    return dict(outcome for entry in entries if (outcome := recorded_outcome(entry)) is not None)


def recorded_outcome(entry: dg.EventLogEntry) -> tuple[str, dict] | None:
    """(patient, outcome metadata) when the event is a batch run's per-patient outcome observation, else None."""
    observation = entry.asset_observation
    if observation is None or observation.partition is None or OUTCOME not in observation.metadata:
        return None
    return observation.partition, {name: value.value for name, value in observation.metadata.items()}


def patient_input_digest(cohort: Cohort, record: PatientRecord) -> str:
    """Changes when the patient's manifest row changes (`record_digest`) or one of its image / mask files is
    replaced (size or modification time): a patient run of another digest is stale."""
    from cssci_platform.lib.partition_plan import record_digest

    files = [(path, stat and stat.st_size, stat and stat.st_mtime_ns) for path, stat in _patient_files(cohort, record)]
    payload = json.dumps([record_digest(record), files], default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def patient_work(cohort: Cohort, record: PatientRecord) -> float:
    """A patient's expected work (`expected_work`) from its files' sizes alone (no file is read): what
    `patient_waves` orders a wave's patients by. A missing file counts nothing."""
    return expected_work(*patient_file_sizes(cohort, record))


def patient_file_sizes(cohort: Cohort, record: PatientRecord) -> tuple[list[int], list[int]]:
    """The sizes of the patient's image files and of its mask files (those it can read)."""
    mask_paths = {mask.path for mask in record.masks}
    found = [(path, stat.st_size) for path, stat in _patient_files(cohort, record) if stat is not None]
    images = [size for path, size in found if path not in mask_paths]
    return images, [size for path, size in found if path in mask_paths]


def expected_work(image_bytes: list[int], mask_bytes: list[int], per_patient: float = WORK_PER_PATIENT,
                  per_image_mb: float = WORK_PER_IMAGE_MB, per_mask: float = WORK_PER_MASK,
                  power: float = 2.0) -> float:
    """A patient's work in relative units: a fixed part, resampling and filtering that grow with the image files,
    and radiomics that grows with each mask file's size to `power` (a gzipped mask's size follows its ROI; radiomics
    time grows faster than the ROI). The default weights are measured (benchmarks/RESULTS.md, session 16)."""
    return (per_patient + per_image_mb * sum(image_bytes) / 1e6
            + per_mask * sum((size / MASK_BYTES_UNIT) ** power for size in mask_bytes))


def _patient_files(cohort: Cohort, record: PatientRecord) -> list[tuple[str, os.stat_result | None]]:
    """The patient's image and mask paths as the manifest names them, sorted, with their file status (None when
    unreadable or outside the data root)."""
    found: list[tuple[str, os.stat_result | None]] = []
    for path in sorted([*record.images.values(), *(mask.path for mask in record.masks)]):
        try:
            found.append((path, cohort.resolve(path).stat()))
        except (OSError, ValueError):
            found.append((path, None))
    return found


def patients_to_run(instance: dg.DagsterInstance, patient_keys: list[str], digests: dict[str, str] | None = None,
                    latest: dict[str, dg.DagsterRun] | None = None) -> list[str]:
    """What a resumed command runs: the patients not done by their latest run (`latest_patient_runs`). A batch run
    did a patient when it recorded it processed or quarantined; a run of the patient's partition when it succeeded.
    Done on other inputs (the recorded digest differs from `digests`: the row or a file changed) is not done; a
    run without a digest (launched from the UI) counts by its outcome alone."""
    digests = digests or {}
    latest = latest_patient_runs(instance, patient_keys) if latest is None else latest
    recorded: dict[str, dict[str, dict]] = {}

    def done(key: str) -> bool:
        run = latest.get(key)
        if run is None:
            return False
        if run.job_name == PATIENT_JOB:
            if run.status != dg.DagsterRunStatus.SUCCESS:
                return False
            digest = run.tags.get(INPUT_DIGEST_TAG)
        else:
            if run.run_id not in recorded:
                recorded[run.run_id] = batch_outcomes(instance, run.run_id)
            outcome = recorded[run.run_id].get(key)
            if outcome is None or outcome[OUTCOME] not in (PROCESSED, QUARANTINED):
                return False
            digest = outcome.get(INPUT_DIGEST) or None
        return digest is None or key not in digests or digest == digests[key]

    return [key for key in patient_keys if not done(key)]


def patient_outcome(instance: dg.DagsterInstance, run: dg.DagsterRun) -> PatientRunOutcome:
    """What a finished run of one patient's partition did, from its event log: the failed checks (with the patient's
    QC errors), else the root cause of its first failed step, else why the run ended (its worker killed, canceled)."""
    from cssci_platform.cli.instance_runs import ended_run

    checks = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    failed = tuple(e.dagster_event.asset_check_evaluation_data.asset_check_key.name for e in checks
                   if e.dagster_event and not e.dagster_event.asset_check_evaluation_data.passed)
    ended = ended_run(instance, run)
    key = run.tags[PARTITION_TAG]
    qc_errors = recorded_qc_errors(key) if failed else ()
    return PatientRunOutcome(key, ended.success and not failed, run.run_id, failed, ended.failure, qc_errors)


def batched_outcome(patient_key: str, run_id: str, recorded: dict) -> PatientRunOutcome:
    """A patient's outcome as its batch run recorded it."""
    failed = tuple(name for name in str(recorded.get(FAILED_CHECKS, "")).split(", ") if name)
    return PatientRunOutcome(patient_key, recorded[OUTCOME] == PROCESSED, run_id, failed,
                             str(recorded.get(ERROR, "")), recorded_qc_errors(patient_key) if failed else ())


@dataclass(frozen=True)
class Wave:
    """Patients shared by `runs` batch runs: each run takes the next patient none of them took."""

    patients: list[str]
    runs: int


def patient_waves(patient_keys: list[str], workers: int, per_run: int | None = None,
                  work: Mapping[str, float] | None = None) -> list[Wave]:
    """The patients cut into waves of runs. By default a run per worker, sharing up to MAX_BATCH patients per run
    (more patients: more waves, queued one after another), largest `work` first (`patient_work`; the given order
    when not given): the runs take the large patients first and the small ones last, so they end together and every
    run's start-up is paid once per worker. With `per_run`: runs of that many patients each, alone, in the given
    order."""
    if not patient_keys:
        return []
    if per_run:
        return [Wave(patient_keys[start:start + per_run], 1) for start in range(0, len(patient_keys), per_run)]
    runs = max(1, workers)
    position = {key: index for index, key in enumerate(patient_keys)}
    weight = {key: (work or {}).get(key, 1) for key in patient_keys}
    ordered = sorted(patient_keys, key=lambda key: (-weight[key], position[key]))
    waves = [ordered[start:start + runs * MAX_BATCH] for start in range(0, len(ordered), runs * MAX_BATCH)]
    return [Wave(patients, min(runs, len(patients))) for patients in waves]


def taken_patients(run: dg.DagsterRun) -> list[str]:
    """The patients a batch run took (its per-patient tags)."""
    return [name[len(BATCH_PATIENT_TAG):] for name in run.tags if name.startswith(BATCH_PATIENT_TAG)]


def unfinished_batch_runs(instance: dg.DagsterInstance) -> list[dg.DagsterRun]:
    """The batch runs queued or running (a killed command's, or one launched from the UI)."""
    return list(instance.get_runs(filters=dg.RunsFilter(job_name=PATIENT_BATCH_JOB, statuses=NOT_FINISHED_STATUSES)))


@dataclass(frozen=True)
class PatientPlan:
    """Which patients a command runs: each patient's latest run, and those not done by it (`patients_to_run`)."""

    latest: dict[str, dg.DagsterRun]
    pending: list[str]


def plan_patients(instance: dg.DagsterInstance, patient_keys: list[str],
                  digests: dict[str, str] | None = None) -> PatientPlan:
    """Read from the instance what `run_patients_on_instance` will run (reads only: a command plans while its
    manifest run runs)."""
    latest = latest_patient_runs(instance, patient_keys)
    return PatientPlan(latest, patients_to_run(instance, patient_keys, digests, latest))


def run_patients_on_instance(session: InstanceSession, patient_keys: list[str],
                             on_outcome: Callable[[PatientRunOutcome], None] = lambda outcome: None,
                             on_pending: Callable[[int, int], None] = lambda pending, total: None,
                             digests: dict[str, str] | None = None, workers: int = 1,
                             per_run: int | None = None, work: Mapping[str, float] | None = None,
                             plan: PatientPlan | None = None) -> list[PatientRunOutcome]:
    """Run every patient not yet done through the instance, waves of `patient_batch_job` runs (`patient_waves`),
    and report each patient as its run records it (failures as they happen). A patient done by its latest run is
    skipped (its outcome is not reported); one that a queued or running batch run may still take (left by a command
    killed meanwhile, or launched from the UI) is followed, not run twice. Ctrl-C: the session cancels the runs it
    submitted. `on_pending(pending, total)` is told how many will run; `digests` (`patient_input_digest` per
    patient) make a patient whose inputs changed since its run stale; `work` (`patient_work`) orders each wave;
    `plan` (`plan_patients`), when the caller read it already."""
    instance = session.instance
    digests = digests or {}
    plan = plan or plan_patients(instance, patient_keys, digests)
    latest, pending = plan.latest, plan.pending
    on_pending(len(pending), len(patient_keys))
    patients_of: dict[str, set[str]] = {}  # per run, the pending patients it may do
    wave_of: dict[str, str] = {}  # per run, its wave (a run without one is a wave of its own)

    def follow_unfinished(run: dg.DagsterRun, keys: set[str]) -> None:
        patients_of.setdefault(run.run_id, set()).update(keys)
        wave_of[run.run_id] = run.tags.get(WAVE_TAG) or run.run_id

    for key, run in latest.items():
        if key in pending and not run.is_finished:
            follow_unfinished(run, {key})
    for run in unfinished_batch_runs(instance):
        if may_do := set(batch_patients(run)) & set(pending):
            follow_unfinished(run, may_do)
    followed = {key for keys in patients_of.values() for key in keys}
    waves = patient_waves([key for key in pending if key not in followed], workers, per_run, work)
    submitted_waves = [_submit_wave(session, wave, digests, patients_of, wave_of) for wave in waves]
    waiting_for = set(pending)
    outcomes: list[PatientRunOutcome] = []
    running = {wave: {run_id for run_id, of in wave_of.items() if of == wave} for wave in set(wave_of.values())}
    failures: dict[str, list[str]] = {}  # per wave, why its runs that ended failed

    def report(outcome: PatientRunOutcome) -> None:
        if outcome.patient_key in waiting_for:
            waiting_for.discard(outcome.patient_key)
            outcomes.append(outcome)
            on_outcome(outcome)

    def on_event(entry: dg.EventLogEntry) -> None:
        if (outcome := recorded_outcome(entry)) is not None:
            report(batched_outcome(outcome[0], entry.run_id, outcome[1]))

    def on_ended(run: dg.DagsterRun) -> None:
        from cssci_platform.cli.instance_runs import ended_run

        if run.job_name == PATIENT_JOB:
            report(patient_outcome(instance, run))
            return
        recorded = batch_outcomes(instance, run.run_id)
        failure = ended_run(instance, run).failure
        for key in taken_patients(run):  # those it took and did not finish: its worker killed, the run canceled
            report(batched_outcome(key, run.run_id, recorded[key]) if key in recorded
                   else PatientRunOutcome(key, False, run.run_id, (), failure))
        wave = wave_of[run.run_id]
        running[wave].discard(run.run_id)
        failures.setdefault(wave, []).extend([failure] if failure else [])
        if not running[wave]:  # the wave's last run ended: no run will take what none took
            reason = "; ".join(dict.fromkeys(failures[wave])) or "no run of its wave took it"
            for key in sorted(patients_of[run.run_id] & waiting_for):
                report(PatientRunOutcome(key, False, run.run_id, (), reason))

    session.follow(list(patients_of), on_ended, on_event,
                   ending=lambda run_id: not patients_of[run_id] & waiting_for)
    for wave_id in submitted_waves:  # every run of the wave ended: its claims are spent
        forget_wave(claims_folder(Path(os.environ["CSSCI_WAREHOUSE"])), wave_id)
    return outcomes


def _submit_wave(session: InstanceSession, wave: Wave, digests: dict[str, str], patients_of: dict[str, set[str]],
                 wave_of: dict[str, str]) -> str:
    """Submit the wave's runs, each given all its patients; returns the wave's id."""
    wave_id = uuid.uuid4().hex
    config = {"patients": wave.patients, "wave": wave_id,
              "input_digests": {key: digests[key] for key in wave.patients if key in digests}}
    for _ in range(wave.runs):
        run_id = session.submit(PATIENT_BATCH_JOB, run_config={"ops": {BATCH_OP: {"config": config}}},
                                tags={PATIENTS_TAGGED: "1", WAVE_TAG: wave_id})
        patients_of[run_id] = set(wave.patients)
        wave_of[run_id] = wave_id
    return wave_id


def wait_for_manifest_run(session: InstanceSession, run_id: str) -> None:
    """Wait for the command's `cohort_manifest_job` run; raises `RunFailed` with the root cause."""
    ended = session.wait(run_id)
    if ended is None or not ended.success:
        raise RunFailed(f"{MANIFEST_JOB} failed: {ended.failure if ended else 'the run vanished from the instance'}")


def ingest_cohort(manifest: Path, workers: int, on_patient: Callable[[PatientRunOutcome], None],
                  session: InstanceSession | None = None,
                  on_pending: Callable[[int, int], None] = lambda pending, total: None,
                  per_run: int | None = None) -> list[PatientRunOutcome]:
    """Validate the manifest, register its patients and centers as partitions, and run every patient not yet done
    through the home's instance, `workers` runs at a time (the run queue's max_concurrent_runs in the home's
    dagster.yaml), `per_run` patients per run (`patient_waves`). Uses the command's `session` when given, else one
    of its own."""
    from cssci_platform.cli.instance_runs import instance_session, write_run_queue_limit
    from cssci_platform.lib.cohort import load_cohort

    cohort = load_cohort(manifest)
    write_run_queue_limit(Path(os.environ["DAGSTER_HOME"]), workers)
    if session is None:
        with dg.DagsterInstance.get() as instance, instance_session(instance) as own:
            return ingest_cohort(manifest, workers, on_patient, own, on_pending, per_run)
    instance = session.instance
    reserve_gpu_pool(instance)
    fail_orphaned_runs(instance)
    manifest_run = session.submit(MANIFEST_JOB, run_config=IN_PROCESS)
    # while the run queue launches it: what each patient's run needs, and which patients run (reads only)
    keys = sorted(cohort.patients)
    digests = {key: patient_input_digest(cohort, record) for key, record in cohort.patients.items()}
    work = {key: patient_work(cohort, record) for key, record in cohort.patients.items()}
    plan = plan_patients(instance, keys, digests)
    wait_for_manifest_run(session, manifest_run)
    register_partitions(instance, keys, sorted({p.center for p in cohort.patients.values()
                                                if p.center in cohort.spec.centers}))
    return run_patients_on_instance(session, keys, on_patient, on_pending, digests, workers, per_run, work, plan)
