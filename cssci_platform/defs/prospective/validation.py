"""validation_metrics: each champion on the prospective patients whose outcome has arrived; weekly schedule."""

from datetime import datetime

import dagster as dg

from cssci_platform.defs.prospective.assets import followup_outcomes, prospective_predictions
from cssci_platform.lib.queries.modeling import modelled_outcome
from cssci_platform.lib.warehouse import append_rows
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

ALL = dg.AllPartitionMapping()


@dg.asset(
    group_name="prospective",
    kinds={"duckdb", "mlflow"},
    deps=[dg.AssetDep(prospective_predictions, partition_mapping=ALL), followup_outcomes],
)
def validation_metrics(
    study: StudyResource, warehouse: WarehouseResource, tracking: TrackingResource
) -> dg.MaterializeResult:
    """AUC with its interval, Brier score and threshold metrics per champion version on the validation cohort's
    patients whose modelled outcome is known (`champion_validations`: the same scores and numbers as the report's
    validation table); appended, and logged to MLflow. Flagged when the validation AUC falls below the lower bound of
    the same interval on the champion's test patients."""
    from cssci_platform.lib.evaluation.prospective_validation import champion_validations  # scikit-learn, SciPy
    from cssci_platform.lib.model_tracking import log_metrics_to_version  # MLflow: loaded in the step only

    with warehouse.connect() as con:
        outcome = modelled_outcome(con)
        validations = champion_validations(con, outcome) if outcome is not None else []
    now = datetime.now()
    experiment = tracking.config(study.config().name)
    for validation in validations:
        log_metrics_to_version(
            experiment,
            validation.registered_model,
            validation.model_version,
            {f"validation_{k}": v for k, v in validation.finite_metrics().items()},
            step=validation.n_patients,
        )
    with warehouse.connect() as con:
        append_rows(con, "validation_metrics", [row for v in validations for row in v.rows(now)])
    flags = [v.flag for v in validations if v.flag]
    return dg.MaterializeResult(
        metadata={
            "champions": len({v.registered_model for v in validations}),
            "rows": sum(len(v.metrics) for v in validations),
            "below_test_ci": dg.MetadataValue.md("\n".join(f"- {f}" for f in flags) or "none"),
        }
    )
