"""Several patients in one run: `patient_batch_job` does, patient after patient in one process, exactly the steps of
`patient_features_job` (the same step functions, the same blocking QC checks and what they skip) and records the same
per-partition asset materializations and check evaluations, so the UI shows each patient as if its partition had
been materialized alone. The command line submits the patients of a study as a few such runs (`cli/patient_runs.py`):
a run per patient costs ~4 s of process start and imports, more than a small patient's whole work.

The command submits a wave of such runs (one per worker) with the same patients, largest expected work first, and
a wave id: each run takes the next patient no run of its wave took (`lib/patient_claims.py`), so a worker done early
takes over the rest. A run without a wave (one launched from the UI's launchpad) does all its patients. As it takes a
patient, the run tags itself with the patient (`BATCH_PATIENT_TAG`): a patient's latest run is the one that did it.

After each patient the op records an observation of `patient_scans` for that partition with the patient's outcome
(`processed`, `quarantined` or `failed`), the failed checks or the error, and the input digest the command gave: what
a resumed command reads to run only the patients not done. A patient whose step raises is recorded as failed and the
batch goes on with the next one; the run then fails naming every such patient."""

import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

from cssci_platform.defs.batch_runs import root_cause
from cssci_platform.defs.embeddings.assets import cut_patient_roi_slices
from cssci_platform.defs.executors import step_executor
from cssci_platform.defs.features.assets import extract_patient_radiomics, preprocess_patient_channels
from cssci_platform.defs.ingest.assets import scan_patient
from cssci_platform.defs.qc import CHECK_STAGES, issues_of_stages, qc_check_result
from cssci_platform.lib.batch_outcomes import (
    BATCH_PATIENT_TAG,
    ERROR,
    FAILED,
    FAILED_CHECKS,
    INPUT_DIGEST,
    OUTCOME,
    OUTCOME_ASSET,
    PATIENTS_TAGGED,
    PROCESSED,
    QUARANTINED,
)
from cssci_platform.lib.patient_claims import claim_patient, claims_folder
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.patient import PatientResources, PatientStepResult
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import HandOverWarehouse, WarehouseResource


@dataclass(frozen=True)
class PatientStep:
    """One asset of `patient_features_job` for one patient, and its blocking QC check."""

    asset: str
    check: str  # reads the issues of the QC stages `CHECK_STAGES[check]`
    after: tuple[str, ...]  # the assets it depends on: a failed step or check there skips it, as in the asset job
    materialize: Callable[[PatientResources, str], PatientStepResult]


PATIENT_STEPS = (
    PatientStep("patient_scans", "patient_qc", (), scan_patient),
    PatientStep("preprocessed_channels", "roi_survives_resampling", ("patient_scans",), preprocess_patient_channels),
    PatientStep("radiomics_features", "features_finite", ("preprocessed_channels",), extract_patient_radiomics),
    PatientStep("roi_slices", "roi_slice_found", ("preprocessed_channels",), cut_patient_roi_slices),
)


@dataclass(frozen=True)
class BatchedPatient:
    patient_key: str
    status: str  # PROCESSED, QUARANTINED or FAILED
    failed_checks: tuple[str, ...] = ()
    error: str = ""


class PatientBatchConfig(dg.Config):
    patients: list[str]
    input_digests: dict[str, str] = {}  # patient key -> the command's digest of its manifest row and files
    wave: str = ""  # the runs sharing these patients, each taking the next one not taken; "": this run does all


@dg.op(out={}, description="Each patient of the batch in turn: scans, channels, radiomics, ROI slices and their "
                            "QC checks, recorded per patient partition.")
def process_patient_batch(context: dg.OpExecutionContext, config: PatientBatchConfig, study: StudyResource,
                          cohort: CohortResource, warehouse: WarehouseResource,
                          image_store: ImageStoreResource) -> Iterator[dg.AssetObservation]:
    """A generator, so that each patient's events reach the instance as it ends (yielding flushes the logged
    materializations and check evaluations), not when the whole batch ends."""
    handed_over = HandOverWarehouse(warehouse)  # a step reads on the connection the step before it wrote with
    resources = PatientResources(study, cohort, handed_over, image_store)
    failed: list[BatchedPatient] = []
    claims = claims_folder(Path(warehouse.path))
    taken = 0
    for key in config.patients:
        if not take_patient(context, config.wave, claims, key):
            continue
        taken += 1
        try:
            done = process_patient(context, resources, key)
        finally:
            handed_over.release()
        yield dg.AssetObservation(asset_key=OUTCOME_ASSET, partition=key, metadata={
            OUTCOME: done.status, FAILED_CHECKS: ", ".join(done.failed_checks), ERROR: done.error,
            INPUT_DIGEST: config.input_digests.get(key, "")})
        if done.status == FAILED:
            failed.append(done)
    if failed:
        raise dg.Failure(f"{len(failed)} of {taken} patients failed for a reason other than QC: "
                         + "; ".join(f"{p.patient_key}: {p.error}" for p in failed))


def take_patient(context: dg.OpExecutionContext, wave: str, claims: Path, key: str) -> bool:
    """Whether this run does the patient: always without a wave, else when it is the first of its wave to claim it
    (in the `claims` folder). The run then names the patient in its tags."""
    if wave and not claim_patient(claims, wave, key, context.run_id):
        return False
    context.instance.add_run_tags(context.run_id, {PATIENTS_TAGGED: "1", BATCH_PATIENT_TAG + key: "1"})
    return True


def process_patient(context: dg.OpExecutionContext, resources: PatientResources, key: str) -> BatchedPatient:
    """The patient's steps in the asset job's order; a step whose upstream step failed or failed its check is
    skipped, as the asset job skips it."""
    passed: set[str] = set()
    failed_checks: list[str] = []
    errors: list[str] = []
    for step in PATIENT_STEPS:
        if not set(step.after) <= passed:
            continue
        try:
            done = step.materialize(resources, key)
        except Exception as error:  # noqa: BLE001 - one patient's broken step must not stop the batch
            errors.append(f"{step.asset}: {root_cause(error)}")
            context.log.error(f"patient {key}: {step.asset} failed\n{traceback.format_exc()}")
            continue
        context.log_event(dg.AssetMaterialization(asset_key=step.asset, partition=key, metadata=done.metadata))
        # the issues the step just recorded are the rows the asset job's check reads back (`stored_issues`)
        result = qc_check_result(issues_of_stages(done.issues, CHECK_STAGES[step.check]))
        context.log_event(dg.AssetCheckEvaluation(
            asset_key=dg.AssetKey(step.asset), check_name=step.check, passed=result.passed, metadata=result.metadata,
            severity=result.severity, description=result.description, blocking=True, partition=key))
        if result.passed:
            passed.add(step.asset)
        else:
            failed_checks.append(step.check)
    if errors:
        return BatchedPatient(key, FAILED, tuple(failed_checks), " | ".join(errors))
    return BatchedPatient(key, QUARANTINED if failed_checks else PROCESSED, tuple(failed_checks))


@dg.job(executor_def=step_executor(dg.in_process_executor),
        description="Several patients in one run (what `cssci ingest/run/demo` submit): each patient's scans, "
                    "channels, radiomics and ROI slices with their QC checks, recorded per patient partition.")
def patient_batch_job() -> None:
    process_patient_batch()
