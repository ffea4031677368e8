import dagster as dg

from cssci_platform.defs.ingest.jobs import cohort_manifest_job, patient_features_job
from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.lib.inbox import admitted_patient_ids
from cssci_platform.lib.partition_plan import ManifestSnapshot, plan_partitions
from cssci_platform.resources.cohort import CohortResource


@dg.sensor(
    jobs=[cohort_manifest_job, patient_features_job],
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Registers the manifest's patients (and centers) as partitions and runs each new or changed patient "
                "once.",
)
def cohort_manifest_sensor(context: dg.SensorEvaluationContext, cohort: CohortResource) -> dg.SensorResult:
    manifest = cohort.load()
    previous = ManifestSnapshot.from_cursor(context.cursor)
    plan = plan_partitions(manifest, previous,
                           known_patients=set(context.instance.get_dynamic_partitions(patients_partitions.name)),
                           known_centers=set(context.instance.get_dynamic_partitions(centers_partitions.name)),
                           processed_elsewhere=admitted_patient_ids(manifest))  # new_patient_sensor runs those
    run_requests = [dg.RunRequest(run_key=f"patient:{key}:{digest}", job_name=patient_features_job.name,
                                  partition_key=key) for key, digest in plan.patients_to_run.items()]
    if plan.manifest_changed:
        run_requests.insert(0, dg.RunRequest(run_key=f"manifest:{manifest.manifest_sha256}",
                                             job_name=cohort_manifest_job.name))
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[
            patients_partitions.build_add_request(sorted(plan.new_patients)),
            centers_partitions.build_add_request(sorted(plan.new_centers)),
        ],
        cursor=plan.snapshot.to_cursor(),
    )
