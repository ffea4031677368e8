"""trained_models / model_results / predictions: the zoo per signature and mode, tracked in MLflow."""

import dagster as dg
import pandas as pd

from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability
from cssci_platform.defs.splits.assets import patient_splits, study_split_folds
from cssci_platform.lib.model_tracking import (
    get_or_create_experiment,
    log_model_run,
    log_params,
    register_champion,
    registered_model_name,
)
from cssci_platform.lib.modeling.chains import ChainSettings
from cssci_platform.lib.modeling.results import (
    final_features,
    run_metrics,
    run_params,
    settings_params,
    warning_tags,
    write_zoo_results,
)
from cssci_platform.lib.modeling.training import FailedFit
from cssci_platform.lib.modeling.zoo import ZooFit, champions_fold, choose_champions, outcome_classes, train_zoo
from cssci_platform.lib.modeling.zoo_summary import (
    champion_table,
    failure_table,
    fold_summary,
    mode_delta_table,
    results_table,
)
from cssci_platform.lib.outcome_rules import SCORE_SUFFIX, OutcomeRuleError
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.lib.study_config import StudyConfig
from cssci_platform.lib.study_runs import STUDY_TAG
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

MODEL_INPUTS = [feature_matrix, patient_splits, feature_reliability]


@dg.multi_asset(
    group_name="modeling",
    can_subset=False,
    specs=[
        dg.AssetSpec(
            "trained_models",
            kinds={"mlflow", "scikitlearn"},
            deps=MODEL_INPUTS,
            description="One MLflow run per signature x classifier x mode; the best per signature registered as "
            "champion",
        ),
        dg.AssetSpec(
            "model_results",
            kinds={"duckdb"},
            deps=MODEL_INPUTS,
            description="CV, test and validation metrics per model, named as in the studies' tables",
        ),
        dg.AssetSpec(
            "predictions",
            kinds={"duckdb"},
            deps=MODEL_INPUTS,
            description="Class probabilities of every model for every scored patient",
        ),
    ],
)
def trained_models(
    context: dg.AssetExecutionContext,
    study: StudyResource,
    cohort: CohortResource,
    warehouse: WarehouseResource,
    tracking: TrackingResource,
):
    config = study.config()
    manifest = cohort.load()
    split, folds = study_split_folds(warehouse, config)
    with warehouse.connect() as con:
        matrix = queries.stored_feature_matrix(con).to_pandas().set_index("patient_key")
        outcome = queries.modelled_outcome(con, split)
    classes = outcome_classes(manifest.spec, outcome)
    chain = ChainSettings(
        config.harmonization,
        config.selection,
        _icc_table(warehouse, config),
        config.models.cv_folds,
        config.models.seed,
    )
    tracking_config = tracking.config(config.name)
    tags = {**({STUDY_TAG: context.run.tags[STUDY_TAG]} if STUDY_TAG in context.run.tags else {}), "split": split}
    logged = []
    try:
        for fit in train_zoo(
            matrix, folds, classes, config.models, list(config.modes), chain, _scores(warehouse, config)
        ):
            run_tags = {
                **tags,
                "fold": fit.fold,
                **tracking.run_tags(
                    context,
                    signature=fit.model.spec.signature.name,
                    classifier=fit.model.spec.classifier,
                    mode=fit.model.spec.mode,
                    manifest_hash=manifest.manifest_sha256,
                ),
            }
            params = settings_params(chain, config.outcome, fit.outcome_threshold)
            logged.append((fit, *_log_fit(context, tracking_config, fit, config, params, run_tags, matrix)))
    except OutcomeRuleError as error:
        raise dg.Failure(str(error)) from None
    first_fold = champions_fold(fit for fit, _, _ in logged)
    champions = _register_champions(
        tracking_config,
        config.name,
        [(f.model, run_id, uri) for f, run_id, uri in logged if f.fold == first_fold and not f.failed],
    )
    with warehouse.connect() as con:
        write_zoo_results(con, logged, champions, split, matrix["cohort"])
    yield from _materializations(logged, champions, first_fold, config.name, tracking.tracking_uri)


def _log_fit(
    context: dg.AssetExecutionContext,
    tracking_config,
    fit: ZooFit,
    config: StudyConfig,
    params: dict,
    tags: dict,
    matrix: pd.DataFrame,
) -> tuple[str, str]:
    """One MLflow run per fit: (run id, model URI; '' for a fit that failed)."""
    model, where = fit.model, f"[{fit.model.spec.mode}, {fit.fold}]"
    if isinstance(model, FailedFit):
        context.log.warning(
            f"fit failed, the study goes on: {model.spec.name} {where} at the {model.stage}: {model.reason}"
        )
        return _log_failed_run(tracking_config, model, fit.fold, params, tags), ""
    for note in model.small_sample:
        context.log.warning(f"{model.spec.name} {where}: {note}")
    example = matrix.loc[fit.roles.reindex(matrix.index) == "train"].head(3).drop(columns=["cohort", "label"])
    split_table = pd.DataFrame({"patient_key": fit.roles.index, "role": fit.roles.to_numpy(), "fold": fit.fold})
    run = log_model_run(
        tracking_config,
        run_name=f"{model.spec.name} {where}",
        model=model.pipeline,
        input_example=example,
        params={**run_params(model, config.models.grid, config.models.cv_folds, config.models.seed), **params},
        metrics=run_metrics(model),
        selected_features=final_features(model),
        tags={**tags, **warning_tags(model)},
        selection_reports=model.selection,
        split_table=split_table,
    )
    return run.run_id, run.model_uri


def _materializations(logged: list, champions: dict, first_fold: str, experiment: str, tracking_uri: str):
    trained = [(f.fold, f.model) for f, _, _ in logged if not f.failed]
    failures = [f.model for f, _, _ in logged if f.failed]
    first = [m for fold, m in trained if fold == first_fold]
    yield dg.MaterializeResult(
        asset_key="trained_models",
        metadata={
            "mlflow_runs": len(trained),
            "failed_fits": len(failures),
            "experiment": experiment,
            "tracking_uri": tracking_uri,
            "fits_that_failed": dg.MetadataValue.md(failure_table(failures)),
            "small_sample_warnings": sum(bool(m.small_sample) for _, m in trained),
            "champions_from_fold": first_fold,
            "champions": dg.MetadataValue.md(champion_table(champions)),
        },
    )
    yield dg.MaterializeResult(
        asset_key="model_results",
        metadata={
            "table": dg.MetadataValue.md(results_table(first)),
            "models": len(trained),
            "across_folds": dg.MetadataValue.md(fold_summary(trained)),
            "leakage_safe_vs_paper_faithful": dg.MetadataValue.md(mode_delta_table(first)),
        },
    )
    yield dg.MaterializeResult(asset_key="predictions", metadata={"rows": sum(len(m.predictions) for _, m in trained)})


def _scores(warehouse: WarehouseResource, config: StudyConfig) -> pd.Series | None:
    """The change scores leakage_safe labels are re-derived from per fold (rule change_above_mean), else None."""
    if not config.outcome.relabelled_per_fold:
        return None
    with warehouse.connect() as con:
        rows = queries.outcome_values(con, config.outcome.name + SCORE_SUFFIX).to_pandas()
    if rows.empty:
        raise dg.Failure(
            f"rule change_above_mean needs the scores '{config.outcome.name}{SCORE_SUFFIX}' written by "
            "study_outcome; materialize study_outcome first"
        )
    return pd.to_numeric(rows.set_index("patient_key")["value"])


def _icc_table(warehouse: WarehouseResource, config: StudyConfig) -> pd.DataFrame | None:
    if config.selection.icc_threshold is None:
        return None
    with warehouse.connect() as con:
        table = queries.icc3_table(con)
    if table is None:
        raise dg.Failure("icc_threshold is set but feature_reliability has not been materialized")
    if table.is_empty():
        raise dg.Failure(
            "icc_threshold is set but no patient has a repeat segmentation, so no ICC exists; "
            "add mask__<sequence>__<roi>__<rater> columns or set icc_threshold: null"
        )
    return table.to_pandas().set_index("feature")


def _register_champions(tracking_config, experiment: str, runs: list) -> dict[str, dict]:
    """Register each signature's champion (`choose_champions`) in the MLflow model registry; `runs`: (model, run id,
    model URI) of the champions' fold."""
    uris = {run_id: uri for _, run_id, uri in runs}
    champions = {}
    for signature, (model, run_id) in choose_champions([(model, run_id) for model, run_id, _ in runs]).items():
        name = registered_model_name(experiment, signature)
        version = register_champion(
            tracking_config, name, run_id=run_id, model_uri=uris[run_id], chosen_by=("cv_auc_mean", model.cv_score_mean)
        )
        champions[signature] = {
            "model": model.spec.name,
            "registered_model": name,
            "version": version.version,
            "run_id": run_id,
            "cv_auc": model.cv_score_mean,
        }
    return champions


def _log_failed_run(tracking_config, failed: FailedFit, fold: str, params: dict, tags: dict) -> str:
    """A FAILED MLflow run for a fit that raised: the reason as tag `cssci.failure_reason` and param
    `failure_reason`."""
    client = tracking_config.client()
    run = client.create_run(
        get_or_create_experiment(tracking_config),
        run_name=f"{failed.spec.name} [{failed.spec.mode}, {fold}] FAILED",
        tags={
            **{k: str(v) for k, v in tags.items()},
            "cssci.failure_reason": failed.reason,
            "cssci.failure_stage": failed.stage,
        },
    )
    log_params(
        client,
        run.info.run_id,
        {
            "signature": failed.spec.signature.name,
            "classifier": failed.spec.classifier,
            "mode": failed.spec.mode,
            "failure_reason": failed.reason[:250],
            **params,
        },
    )
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id
