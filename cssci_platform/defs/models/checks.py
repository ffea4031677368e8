import dagster as dg
import polars as pl

from cssci_platform.defs.models.feature_matrix import feature_matrix
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset_check(
    asset=feature_matrix,
    description="Every center has enough training patients for ComBat to estimate its batch effect",
)
def combat_batches_estimable(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    from cssci_platform.lib.harmonization import HARMONIZATION_OFF, MIN_BATCH_SIZE

    with warehouse.connect() as con:
        counts = queries.training_patients_per_center(con)
    small = counts.filter(pl.col("n") < MIN_BATCH_SIZE)
    return dg.AssetCheckResult(
        # a warning: harmonization.small_center (default pool) handles small centers at fit time; only 'error' stops
        passed=small.is_empty() and not counts.is_empty(),
        severity=dg.AssetCheckSeverity.WARN,
        description=None
        if small.is_empty()
        else "centers with fewer than 2 training patients: harmonization.small_center pool or unseen handles them at "
        f"fit time (error stops the run), or add patients, or set {HARMONIZATION_OFF}",
        metadata={
            "training_patients_per_center": dg.MetadataValue.md(
                markdown_table(["split", "fold", "center", "n"], counts.head(60).iter_rows())
            )
        },
    )
