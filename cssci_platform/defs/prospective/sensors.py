"""new_patient_sensor: complete inbox arrivals become partitions and one run each; follow-up files one run each.

Exactly once: admission is recorded in the cohort's admitted table before the run is requested, and every
request carries a run_key (the arrival's content digest, the follow-up file's digest), so a repeated tick, a
tick during a run, a daemon restart or a `touch` re-requests nothing that already ran. A corrected arrival
(its row changed after admission) replaces the admitted row, gets an audit row per changed value
(`admission_changes`) and one new run on the corrected values. The cursor keeps the run keys already
requested so a tick does not rebuild requests Dagster would drop anyway.
"""

import json
from datetime import datetime
from pathlib import Path

import dagster as dg

from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.defs.prospective.jobs import followup_job, prospective_patient_job
from cssci_platform.lib.inbox import Arrival, admit, file_digest, followup_files, scan_arrivals
from cssci_platform.lib.inbox_records import (
    load_digest_cache,
    new_events,
    record_corrections,
    record_events,
    save_digest_cache,
)
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.inbox import InboxResource
from cssci_platform.resources.warehouse import WarehouseResource

RUNNABLE = ("complete", "admitted", "corrected")
PROBLEMS = ("malformed", "duplicate", "incomplete")


@dg.sensor(jobs=[prospective_patient_job, followup_job], minimum_interval_seconds=30)
def new_patient_sensor(
    context: dg.SensorEvaluationContext, cohort: CohortResource, inbox: InboxResource, warehouse: WarehouseResource
) -> dg.SensorResult:
    manifest = cohort.load()
    if manifest.spec.inbox is None:
        return dg.SensorResult(skip_reason="no inbox: set `inbox: <folder under data_root>` in cohort.yaml")
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    arrivals = _scan_and_record(manifest, inbox, warehouse, context)
    if to_admit := [a for a in arrivals if a.status in ("complete", "corrected")]:
        admit(manifest, to_admit)
        manifest = cohort.load()
    ready = [a for a in arrivals if a.status in RUNNABLE and _run_key(a) not in requested]
    instance = context.instance
    new_patients = [
        a.patient_id for a in ready if not instance.has_dynamic_partition(patients_partitions.name, a.patient_id)
    ]
    new_centers = sorted(
        {manifest.patients[a.patient_id].center for a in ready}
        - set(instance.get_dynamic_partitions(centers_partitions.name))
    )
    runs = [
        dg.RunRequest(run_key=_run_key(a), job_name=prospective_patient_job.name, partition_key=a.patient_id)
        for a in ready
    ]
    for path in followup_files(manifest):
        key = f"followup:{path.name}:{file_digest(path)}"
        if key not in requested:
            runs.append(dg.RunRequest(run_key=key, job_name=followup_job.name, run_config=followup_run_config(path)))
    return dg.SensorResult(
        run_requests=runs,
        cursor=json.dumps(sorted(requested | {r.run_key for r in runs})),
        dynamic_partitions_requests=[
            patients_partitions.build_add_request(new_patients),
            centers_partitions.build_add_request(new_centers),
        ],
    )


def followup_run_config(path: Path) -> dict:
    """The follow-up run's only per-run value: its file (the study's settings come from the `study` resource)."""
    return {"ops": {"followup_outcomes": {"config": {"file": str(path)}}}}


def _run_key(arrival: Arrival) -> str:
    return f"arrival:{arrival.patient_id}:{arrival.digest}"


def _scan_and_record(
    manifest, inbox: InboxResource, warehouse: WarehouseResource, context: dg.SensorEvaluationContext
) -> list[Arrival]:
    """Scan the inbox (content digests cached by size and mtime) and record what is new: events once per arrival
    and content (a warning only then, not every tick), the audit rows of corrections before they are admitted."""
    with warehouse.connect() as con:
        before = load_digest_cache(con)
        cache = dict(before)
        arrivals = scan_arrivals(manifest, inbox.stable_seconds, cache=cache)
        now = datetime.now()
        save_digest_cache(con, cache, before)
        record_corrections(con, [a for a in arrivals if a.status == "corrected"], now)
        fresh = new_events(con, arrivals)
        record_events(con, fresh, now)
    for arrival in fresh:
        if arrival.status in PROBLEMS:
            context.log.warning(f"inbox {arrival.patient_id}: {arrival.status}: {arrival.reason}")
        elif arrival.status == "corrected":
            context.log.info(
                f"inbox {arrival.patient_id}: corrected after admission: "
                + ", ".join(f"{c.column} {c.old!r} -> {c.new!r}" for c in arrival.changes)
            )
    return arrivals
