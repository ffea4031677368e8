import dagster as dg

from cssci_platform.defs.embeddings.assets import center_embeddings, roi_slices
from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.defs.qc import CHECK_STAGES, qc_check_result, stored_issues
from cssci_platform.lib.deep.settings import EMBEDDING_STAGE
from cssci_platform.lib.queries import patients as queries
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset_check(asset=roi_slices, blocking=True, partitions_def=patients_partitions,
                description="The DL ROI is present on the DL sequence and every channel's slice was cut (a crop "
                            "reaching "
                            "the slice border is clipped and recorded in roi_slices.clipped_px, not a failure)")
def roi_slice_found(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return qc_check_result(stored_issues(warehouse, context.partition_key, CHECK_STAGES["roi_slice_found"]))


@dg.asset_check(asset=center_embeddings, partitions_def=centers_partitions,
                description="Every patient of the center that passed QC has an embedding per channel and backbone")
def center_patients_embedded(context: dg.AssetCheckExecutionContext,
                             warehouse: WarehouseResource) -> dg.AssetCheckResult:
    center = context.partition_key
    with warehouse.connect() as con:
        frame = queries.center_embedding_coverage(con, center, EMBEDDING_STAGE)
    missing = frame.filter((frame["slices"] > 0) & (frame["embeddings"] == 0))["patient_key"].to_list()
    unreadable = frame.filter(frame["quarantined"].fill_null(False))["patient_key"].to_list()
    return dg.AssetCheckResult(
        passed=not missing and not unreadable, severity=dg.AssetCheckSeverity.WARN,
        metadata={"patients_with_slices": int((frame["slices"] > 0).sum()),
                  "without_embeddings": ", ".join(missing) or "none",
                  "slice_files_unreadable": ", ".join(unreadable) or "none"},
    )
