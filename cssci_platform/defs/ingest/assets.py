import dagster as dg

from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.defs.qc import issues_markdown, record_issues
from cssci_platform.lib.cohort_tables import write_manifest_tables
from cssci_platform.lib.quality import QcIssue, inspect_patient
from cssci_platform.lib.queries.overview import cohort_overview
from cssci_platform.lib.warehouse import replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.patient import PatientResources, PatientStepResult
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset(group_name="ingest", kinds={"duckdb", "polars"})
def cohort_manifest(cohort: CohortResource, warehouse: WarehouseResource) -> dg.MaterializeResult:
    """The validated cohort manifest: `patients`, `clinical`, `outcomes` tables and manifest-stage QC issues.

    Outcomes recorded from follow-up files (`recorded_outcomes`) are laid over the manifest's values, never dropped.
    Its `overview` metadata is the cohort overview of `cssci status` as of this materialization."""
    manifest = cohort.load()
    issues = [QcIssue.from_manifest(i) for i in manifest.issues]
    with warehouse.connect() as con:
        write_manifest_tables(con, manifest)
        replace_rows(con, "qc_issues", {"stage": "manifest"}, [i.as_row() for i in issues])
        overview = cohort_overview(con)
    centers = {c: sum(p.center == c for p in manifest.patients.values()) for c in manifest.spec.centers}
    return dg.MaterializeResult(
        metadata={
            "manifest": dg.MetadataValue.path(str(manifest.manifest_path)),
            "manifest_sha256": manifest.manifest_sha256,
            "patients": len(manifest.patients),
            "quarantined_patients": sum(p.quarantined for p in manifest.patients.values()),
            "patients_per_center": dg.MetadataValue.json(centers),
            "issues": dg.MetadataValue.md(issues_markdown(issues)),
            "overview": dg.MetadataValue.md(overview.markdown()),
        }
    )


@dg.asset(
    group_name="ingest",
    partitions_def=patients_partitions,
    deps=[cohort_manifest],
    kinds={"duckdb", "simpleitk"},
)
def patient_scans(context: dg.AssetExecutionContext, study: StudyResource, cohort: CohortResource,
                  warehouse: WarehouseResource, image_store: ImageStoreResource) -> dg.MaterializeResult:
    """One patient's images and masks, read and checked; one `scans` row per file."""
    resources = PatientResources(study, cohort, warehouse, image_store)
    return dg.MaterializeResult(metadata=scan_patient(resources, context.partition_key).metadata)


def scan_patient(resources: PatientResources, patient_key: str) -> PatientStepResult:
    """`patient_scans` of one patient: its `scans` rows and manifest / scan QC issues written."""
    study, cohort, warehouse, _ = resources
    manifest, record = cohort.patient(patient_key)
    inspection = inspect_patient(manifest, record, study.config().imaging.geometry_tolerance())
    scan_issues = [i for i in inspection.issues if i.stage == "scans"]
    with warehouse.connect() as con:
        write_manifest_tables(con, manifest, [record.patient_key])  # this patient's row as the manifest says now
        replace_rows(con, "scans", {"patient_key": record.patient_key}, [s.as_row() for s in inspection.scans])
        record_issues(con, record.patient_key, "scans", scan_issues)
        record_issues(con, record.patient_key, "manifest", [i for i in inspection.issues if i.stage == "manifest"])
    return PatientStepResult({"center": record.center, "cohort": record.cohort, "files": len(inspection.scans),
                              "sequences": ", ".join(sorted(record.images)),
                              "issues": dg.MetadataValue.md(issues_markdown(inspection.issues))},
                             list(inspection.issues))
