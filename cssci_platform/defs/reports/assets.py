"""evaluation_report: the study's self-contained HTML report, also logged to MLflow."""

from pathlib import Path

import dagster as dg
import pandas as pd

from cssci_platform.lib.model_tracking import get_or_create_experiment, load_champion
from cssci_platform.lib.report.inputs import NoTrainedModels, read_report_inputs
from cssci_platform.lib.report.study import build_report, champions_rad_scores
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource


@dg.asset(
    group_name="reports",
    kinds={"html", "mlflow"},
    deps=[dg.AssetKey("trained_models"), dg.AssetKey("model_results"), dg.AssetKey("predictions")],
)
def evaluation_report(
    context: dg.AssetExecutionContext,
    study: StudyResource,
    cohort: CohortResource,
    warehouse: WarehouseResource,
    image_store: ImageStoreResource,
    tracking: TrackingResource,
) -> dg.MaterializeResult:
    """One self-contained HTML file per experiment (figures embedded), also logged to MLflow. Binary outcomes get the
    cervical-SCI layout; multiclass outcomes the spinal-metastasis one, with the fine-tuned CNNs as models."""
    config, spec = study.config(), cohort.load().spec
    gradcams = sorted(image_store.folder("gradcam").rglob("*.png"))
    try:
        with warehouse.connect() as con:
            inputs, test_rows = read_report_inputs(con, spec, config, gradcams)
    except NoTrainedModels as error:
        raise dg.Failure(str(error)) from None
    inputs.explained = _champions_to_explain(tracking, config.name, inputs.models, test_rows)
    inputs.rad_scores = champions_rad_scores(inputs.explained)
    path = image_store.folder("reports") / f"{config.name}.html"
    path.write_text(build_report(inputs), encoding="utf-8")
    run_id = _log_to_mlflow(tracking, config.name, path, context.run.run_id)
    return dg.MaterializeResult(
        metadata={
            # a path to copy (browsers refuse file:// links from the UI) and the MLflow artifact, which the MLflow UI
            # serves over http: experiment -> run -> Artifacts -> report/<name>.html
            "report": dg.MetadataValue.path(str(path)),
            "mlflow_artifact": f"report/{path.name} (MLflow run {run_id})",
            "size_kb": round(path.stat().st_size / 1024, 1),
            "mlflow_run_id": run_id,
            "layout": "multiclass" if inputs.multiclass else "binary",
        }
    )


def _champions_to_explain(
    tracking: TrackingResource, experiment: str, models: pd.DataFrame, rows: pd.DataFrame
) -> list[tuple[str, object, pd.DataFrame]]:
    """Each champion (from the registry, by alias) with the feature rows of its fold's test patients."""
    champions = models[models["champion"]]
    return [
        (name, load_champion(tracking.config(experiment), registered)[0], rows)
        for name, registered in champions[["result_name", "registered_model"]].itertuples(index=False)
    ]


def _log_to_mlflow(tracking: TrackingResource, experiment: str, path: Path, dagster_run_id: str) -> str:
    config = tracking.config(experiment)
    client = config.client()
    run = client.create_run(
        get_or_create_experiment(config),
        run_name=f"report {experiment}",
        tags={"run_kind": "report", "dagster_run_id": dagster_run_id},
    )
    client.log_artifact(run.info.run_id, str(path), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
