"""new_patient_sensor: complete inbox arrivals become partitions and one run each; follow-up files one run each.

Exactly once: admission is recorded in the cohort's admitted table before the run is requested, and every
request carries a run_key (arrival digest, follow-up file digest), so a repeated tick, a tick during a run or
a daemon restart re-requests nothing that already ran. The cursor keeps the digests already requested so a
tick does not rebuild requests Dagster would drop anyway.
"""

import json
from datetime import datetime

import dagster as dg

from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.defs.experiment_jobs import with_experiment_config
from cssci_platform.defs.prospective.jobs import followup_job, prospective_patient_job
from cssci_platform.lib.inbox import admit, file_digest, followup_files, scan_arrivals
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.inbox import InboxResource
from cssci_platform.resources.warehouse import WarehouseResource


@dg.sensor(jobs=[prospective_patient_job, followup_job], minimum_interval_seconds=30)
def new_patient_sensor(context: dg.SensorEvaluationContext, cohort: CohortResource, inbox: InboxResource,
                       warehouse: WarehouseResource) -> dg.SensorResult:
    manifest = cohort.load()
    if manifest.spec.inbox is None:
        return dg.SensorResult(skip_reason="no inbox: set `inbox: <folder under data_root>` in cohort.yaml")
    requested = set(json.loads(context.cursor)) if context.cursor else set()
    arrivals = scan_arrivals(manifest, inbox.stable_seconds)
    complete = [a for a in arrivals if a.status == "complete"]
    if complete:
        admit(manifest, complete)
        manifest = cohort.load()
    _record_events(warehouse, arrivals, context)
    ready = [a for a in arrivals if a.status in ("complete", "admitted") and f"arrival:{a.patient_id}:{a.digest}" not in requested]
    instance = context.instance
    new_patients = [a.patient_id for a in ready if not instance.has_dynamic_partition(patients_partitions.name, a.patient_id)]
    new_centers = sorted({manifest.patients[a.patient_id].center for a in ready} -
                         set(instance.get_dynamic_partitions(centers_partitions.name)))
    runs = [dg.RunRequest(run_key=f"arrival:{a.patient_id}:{a.digest}", job_name=prospective_patient_job.name,
                          partition_key=a.patient_id) for a in ready]
    for path in followup_files(manifest):
        key = f"followup:{path.name}:{file_digest(path)}"
        if key not in requested:
            runs.append(dg.RunRequest(run_key=key, job_name=followup_job.name,
                                      run_config=with_experiment_config(["study_outcome"], {"ops": {
                                          "followup_outcomes": {"config": {"file": str(path)}}}})))
    return dg.SensorResult(
        run_requests=runs, cursor=json.dumps(sorted(requested | {r.run_key for r in runs})),
        dynamic_partitions_requests=[patients_partitions.build_add_request(new_patients),
                                     centers_partitions.build_add_request(new_centers)],
    )


def _record_events(warehouse: WarehouseResource, arrivals: list, context: dg.SensorEvaluationContext) -> None:
    now = datetime.now()
    with warehouse.connect() as con:
        for a in arrivals:
            if a.status in ("malformed", "duplicate", "incomplete"):
                context.log.warning(f"inbox {a.patient_id}: {a.status}: {'; '.join(a.reasons)}")
            replace_rows(con, "inbox_events", {"source": "arrival", "patient_key": a.patient_id},
                         [{"source": "arrival", "patient_key": a.patient_id, "status": a.status,
                           "reason": "; ".join(a.reasons) or None, "digest": a.digest or None, "seen_at": now}])
