from pathlib import Path

import dagster as dg
import pandas as pd

from cssci_platform.lib.model_tracking import get_or_create_experiment, load_champion
from cssci_platform.lib.report.study import ReportInputs, build_report, out_of_fold_rad_scores
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource


class ReportConfig(dg.Config):
    experiment: str = "demo"
    outcome: str | None = None  # the modelled outcome (a manifest outcome or study_outcome's); default: the split's
    clinical_predictors: list[str] | None = None  # Table 1 and nomogram candidates; default: every clinical variable


@dg.asset(group_name="reports", kinds={"html", "mlflow"},
          deps=[dg.AssetKey("trained_models"), dg.AssetKey("model_results"), dg.AssetKey("predictions")])
def evaluation_report(context: dg.AssetExecutionContext, config: ReportConfig, cohort: CohortResource,
                      warehouse: WarehouseResource, image_store: ImageStoreResource,
                      tracking: TrackingResource) -> dg.MaterializeResult:
    """One self-contained HTML file per experiment (figures embedded), also logged to MLflow. Binary outcomes get the
    cervical-SCI layout; multiclass outcomes the spinal-metastasis one, with the fine-tuned CNNs as models."""
    spec = cohort.load().spec
    outcome = config.outcome or _split_outcome(warehouse) or next(iter(spec.outcomes))
    levels = spec.outcomes[outcome].levels if outcome in spec.outcomes else None
    classes = [str(level) for level in levels] if levels else None
    multiclass = classes is not None and len(classes) > 2
    inputs = ReportInputs(
        experiment=config.experiment, classes=classes,
        predictions=warehouse.frame("SELECT * FROM predictions" + ("" if multiclass else " WHERE signature <> 'CNN'")).to_pandas(),
        outcomes=warehouse.frame("SELECT patient_key, value AS label FROM outcomes WHERE outcome = ?", [outcome]).to_pandas(),
        models=warehouse.frame("SELECT * FROM trained_models").to_pandas(),
        clinical=_clinical_wide(warehouse, spec), clinical_types={n: v.type for n, v in spec.clinical.items()
                                                                  if config.clinical_predictors is None or n in config.clinical_predictors},
        settings={}, gradcams=sorted(image_store.folder("gradcam").rglob("*.png")),
    )
    if inputs.models.empty:
        raise dg.Failure("no trained models: materialize trained_models (modeling_job) first")
    inputs.settings = _training_settings(tracking, config.experiment, inputs.models["run_id"].iloc[0])
    inputs.fit_problems = _fit_problems(warehouse)
    inputs.explained, inputs.background = _champions_to_explain(warehouse, tracking, config.experiment, inputs.models)
    inputs.rad_scores = next((scores for _, pipeline, _ in inputs.explained
                              if (scores := out_of_fold_rad_scores(pipeline)) is not None), None)
    path = image_store.folder("reports") / f"{config.experiment}.html"
    path.write_text(build_report(inputs), encoding="utf-8")
    run_id = _log_to_mlflow(tracking, config.experiment, path, context.run.run_id)
    return dg.MaterializeResult(metadata={"report": dg.MetadataValue.path(str(path)),
                                          "open": dg.MetadataValue.url(path.resolve().as_uri()),
                                          "size_kb": round(path.stat().st_size / 1024, 1), "mlflow_run_id": run_id,
                                          "layout": "multiclass" if multiclass else "binary"})


def _fit_problems(warehouse: WarehouseResource) -> pd.DataFrame:
    """model_results rows of fits that failed and of small-sample warnings (none in a warehouse written before them)."""
    columns = set(warehouse.frame("SELECT column_name FROM information_schema.columns WHERE table_name = 'model_results'")
                  ["column_name"])
    if "reason" not in columns:
        return pd.DataFrame(columns=["result_name", "mode", "fold", "metric", "reason"])
    return warehouse.frame("SELECT result_name, mode, fold, metric, reason FROM model_results WHERE reason IS NOT NULL "
                           "ORDER BY metric, result_name, mode, fold").to_pandas()


def _split_outcome(warehouse: WarehouseResource) -> str | None:
    """The outcome the stored split (and so the models) used."""
    return warehouse.frame("SELECT any_value(outcome) AS o FROM splits")["o"][0]


def _champions_to_explain(warehouse: WarehouseResource, tracking: TrackingResource, experiment: str,
                          models: pd.DataFrame) -> tuple[list[tuple[str, object, pd.DataFrame]], pd.DataFrame]:
    """Each champion (from the registry, by alias) with the feature rows of its test patients, and the feature rows
    of its training patients (the SHAP background), both of the champions' fold."""
    matrix = warehouse.frame("SELECT * FROM feature_matrix").to_pandas().set_index("patient_key")
    champions = models[models["champion"]]
    fold = str(champions["fold"].iloc[0]) if len(champions) else "holdout"  # the champions' fold (leave-one-center-out: the first)
    roles = warehouse.frame("SELECT DISTINCT patient_key, role FROM predictions WHERE role IN ('train', 'test') AND fold = ?",
                            [fold]).to_pandas()
    features = matrix.drop(columns=["cohort", "label"])
    rows = features.loc[features.index.isin(roles.loc[roles["role"] == "test", "patient_key"])]
    background = features.loc[features.index.isin(roles.loc[roles["role"] == "train", "patient_key"])]
    explained = []
    for name, registered in models.loc[models["champion"], ["result_name", "registered_model"]].itertuples(index=False):
        pipeline, _ = load_champion(tracking.config(experiment), registered)
        explained.append((name, pipeline, rows))
    return explained, background


def _training_settings(tracking: TrackingResource, experiment: str, run_id: str) -> dict:
    """The settings the models were trained with, as logged to their MLflow run (not today's defaults)."""
    return dict(tracking.config(experiment).client().get_run(run_id).data.params)


def _clinical_wide(warehouse: WarehouseResource, spec) -> pd.DataFrame:
    rows = warehouse.frame("SELECT patient_key, variable, value_number, value_text FROM clinical").to_pandas()
    rows["value"] = rows["value_number"].where(rows["value_text"].isna(), rows["value_text"])
    wide = rows.pivot_table(index="patient_key", columns="variable", values="value", aggfunc="first").reset_index()
    for name, variable in spec.clinical.items():
        if name in wide and variable.type != "categorical":
            wide[name] = pd.to_numeric(wide[name])
    return wide


def _log_to_mlflow(tracking: TrackingResource, experiment: str, path: Path, dagster_run_id: str) -> str:
    config = tracking.config(experiment)
    client = config.client()
    run = client.create_run(get_or_create_experiment(config), run_name=f"report {experiment}",
                            tags={"run_kind": "report", "dagster_run_id": dagster_run_id})
    client.log_artifact(run.info.run_id, str(path), "report")
    client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id
