import dagster as dg

from cssci_platform.defs.features.assets import preprocessed_channels, radiomics_features
from cssci_platform.defs.partitions import patients_partitions
from cssci_platform.defs.qc import CHECK_STAGES, qc_check_result, stored_issues
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset_check(asset=preprocessed_channels, blocking=True, partitions_def=patients_partitions,
                description="Every mask keeps voxels after resampling to the target spacing")
def roi_survives_resampling(context: dg.AssetCheckExecutionContext,
                            warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return qc_check_result(stored_issues(warehouse, context.partition_key, CHECK_STAGES["roi_survives_resampling"]))


@dg.asset_check(asset=radiomics_features, blocking=True, partitions_def=patients_partitions,
                description="Every extraction succeeded and every feature value is finite")
def features_finite(context: dg.AssetCheckExecutionContext, warehouse: WarehouseResource) -> dg.AssetCheckResult:
    return qc_check_result(stored_issues(warehouse, context.partition_key, CHECK_STAGES["features_finite"]))
