"""evaluation_report: the study's self-contained HTML report, also logged to MLflow.

The report's libraries (matplotlib, SHAP, MLflow) are imported in the step, not here: every run process loads these
definitions, and a patient run must not carry them (issue 18, memory)."""

from typing import TYPE_CHECKING

import dagster as dg

from cssci_platform.lib.study_runs import STUDY_TAG
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

if TYPE_CHECKING:
    import pandas as pd

    from cssci_platform.lib.report.export import ExportedReport


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
    """One self-contained HTML file per experiment (figures embedded), its figures as PNG and SVG, its tables as CSV
    and the page as PDF (headless Chromium), all logged to MLflow. Binary outcomes get the cervical-SCI layout;
    multiclass outcomes the spinal-metastasis one, with the fine-tuned CNNs as models."""
    from cssci_platform.lib.report.export import export_report
    from cssci_platform.lib.report.inputs import NoTrainedModels, read_report_inputs
    from cssci_platform.lib.report.study import build_study_report, champions_rad_scores

    config, spec = study.config(), cohort.load().spec
    gradcams = sorted(image_store.folder("gradcam").rglob("*.png"))
    montages = sorted(image_store.folder("qc_montages").glob("*.png"))
    try:
        with warehouse.connect() as con:
            inputs, test_rows = read_report_inputs(con, spec, config, gradcams, montages)
    except NoTrainedModels as error:
        raise dg.Failure(str(error)) from None
    inputs.explained = _champions_to_explain(tracking, config.name, inputs.models, test_rows)
    inputs.rad_scores = champions_rad_scores(inputs.explained)
    exported = export_report(build_study_report(inputs), image_store.folder("reports"), config.name)
    path = exported.html
    run_id = _log_to_mlflow(tracking, config.name, exported, context.run.run_id, context.run.tags.get(STUDY_TAG))
    if exported.pdf_note:
        context.log.warning(exported.pdf_note)
    return dg.MaterializeResult(
        metadata={
            # a path to copy (browsers refuse file:// links from the UI) and the MLflow artifact, which the MLflow UI
            # serves over http: experiment -> run -> Artifacts -> report/<name>.html
            "report": dg.MetadataValue.path(str(path)),
            "mlflow_artifact": f"report/{path.name} (MLflow run {run_id})",
            "pdf": dg.MetadataValue.path(str(exported.pdf)) if exported.pdf else exported.pdf_note,
            "figures_and_tables": dg.MetadataValue.path(str(path.parent / config.name)),
            "n_figures": len([f for f in exported.figures if f.suffix == ".png"]),
            "n_tables": len(exported.tables),
            "size_kb": round(path.stat().st_size / 1024, 1),
            "mlflow_run_id": run_id,
            "layout": "multiclass" if inputs.multiclass else "binary",
        }
    )


def _champions_to_explain(
    tracking: TrackingResource, experiment: str, models: "pd.DataFrame", rows: "pd.DataFrame"
) -> "list[tuple[str, object, pd.DataFrame]]":
    """Each champion (from the registry, by alias) with the feature rows of its fold's test patients."""
    from cssci_platform.lib.model_tracking import load_champion

    champions = models[models["champion"]]
    return [
        (name, load_champion(tracking.config(experiment), registered)[0], rows)
        for name, registered in champions[["result_name", "registered_model"]].itertuples(index=False)
    ]


def _log_to_mlflow(tracking: TrackingResource, experiment: str, exported: "ExportedReport", dagster_run_id: str,
                   study_run: str | None) -> str:
    """The report page under `report/`, its PDF, figures and tables under `report_files/`; nested under the MLflow
    study run when the Dagster run belongs to one (`cssci run`), top level otherwise."""
    from cssci_platform.lib.model_tracking import get_or_create_experiment, in_study_run

    config = tracking.config(experiment)
    client = config.client()
    run = client.create_run(
        get_or_create_experiment(config),
        run_name=f"report {experiment}",
        tags=in_study_run({"run_kind": "report", "dagster_run_id": dagster_run_id}, study_run),
    )
    client.log_artifact(run.info.run_id, str(exported.html), "report")
    for kind, files in (("figures", exported.figures), ("tables", exported.tables)):
        if files:
            client.log_artifacts(run.info.run_id, str(files[0].parent), f"report_files/{kind}")
    if exported.pdf:
        client.log_artifact(run.info.run_id, str(exported.pdf), "report_files")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
