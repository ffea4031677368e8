import dagster as dg

from cssci_platform.defs.ingest.assets import patient_scans
from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.defs.qc import CHECK_STAGES, qc_check_result, stored_issues
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset_check(asset=patient_scans, blocking=True, partitions_def=patients_partitions,
                description="Manifest row valid; every file present, readable, finite; masks on the image grid, "
                            "non-empty, one label")
def patient_qc(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return qc_check_result(stored_issues(warehouse, context.partition_key, CHECK_STAGES["patient_qc"]))
