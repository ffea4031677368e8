"""Prospective monitoring as an asset check: each champion's latest validation AUC against its test interval."""

import dagster as dg

from cssci_platform.defs.prospective.validation import validation_metrics
from cssci_platform.lib.messages import markdown_table
from cssci_platform.lib.queries.overview import latest_validations
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset_check(
    asset=validation_metrics,
    blocking=False,
    automation_condition=dg.AutomationCondition.eager(),
    description="WARN when a champion's latest validation AUC on the prospective patients falls below the lower "
    "bound of the AUC interval on its own held-out test patients (the drift flag of validation_metrics)",
)
def champions_within_test_interval(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.connect() as con:
        latest = latest_validations(con)
    below = [v for v in latest if v.below_test_ci]
    table = markdown_table(
        ["signature", "model", "version", "patients", "validation AUC", "test CI low", "below"],
        [(v.signature, v.registered_model, v.model_version, v.n_patients, _number(v.auc), _number(v.test_auc_low),
          "BELOW" if v.below_test_ci else "no") for v in latest],
    ) if latest else "no champion validated yet (no prospective patient with a known outcome was scored)"
    return dg.AssetCheckResult(
        passed=not below,
        severity=dg.AssetCheckSeverity.WARN,
        description="; ".join(v.describe() for v in below) if below else None,
        metadata={"champions_validated": len(latest), "below_test_interval": len(below),
                  "validations": dg.MetadataValue.md(table)},
    )


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
