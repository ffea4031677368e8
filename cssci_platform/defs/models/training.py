"""trained_models / model_results / predictions: the zoo per signature and mode, tracked in MLflow.

The zoo runs as Dagster steps: `plan_fit_units` packs the fit units (fold x mode x signature) into two steps per
worker of the executor, longest first (`lib.modeling.zoo.fit_steps`), `fit_unit` fits and logs one step's units,
`register_zoo` registers the champions and writes the tables. The method's libraries (scikit-learn, MLflow) are
imported inside the ops, so loading the definitions does not import them.
"""

import importlib
import pickle
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import dagster as dg

from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability
from cssci_platform.defs.models.jobs import FIT_NATIVE_THREADS, FIT_UNITS_METADATA, modeling_workers
from cssci_platform.defs.splits.assets import patient_splits, study_split_folds
from cssci_platform.lib.queries import modeling as queries
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource

if TYPE_CHECKING:
    import pandas as pd

    from cssci_platform.lib.model_tracking import TrackingConfig
    from cssci_platform.lib.modeling.chains import ChainSettings
    from cssci_platform.lib.modeling.training import FailedFit
    from cssci_platform.lib.modeling.zoo import FitUnit, ZooFit
    from cssci_platform.lib.study_config import StudyConfig

MODEL_INPUTS = [feature_matrix, patient_splits, feature_reliability]
ZOO_ASSETS = ("model_results", "predictions", "trained_models")  # the MLflow runs' dagster_asset tag
STEP_FILES = ".modeling_steps"  # beside the warehouse: the fit steps' inputs and results, removed by the fan-in
INPUTS_FILE = "inputs.pkl"


@dataclass(frozen=True)
class ZooInputs:
    """What every fit step reads (written once by `plan_fit_units`, read from a file: never through the IO
    manager): the feature matrix, folds, classes, chain settings, change scores and the run's MLflow tags."""

    matrix: "pd.DataFrame"
    split: str
    folds: "dict[str, pd.Series]"
    classes: list[str]
    chain: "ChainSettings"
    scores: "pd.Series | None"
    tags: dict[str, str]
    manifest_hash: str
    units: "list[FitUnit]"


@dg.op(
    ins={key.path[-1]: dg.In(dg.Nothing) for key in (a.key for a in MODEL_INPUTS)},
    out=dg.DynamicOut(str),
    description="The zoo's fit units (fold x mode x signature) packed into two steps per worker, longest first, one "
    "dynamic output each; writes the inputs every fit step reads to one file",
)
def plan_fit_units(
    context: dg.OpExecutionContext,
    study: StudyResource,
    cohort: CohortResource,
    warehouse: WarehouseResource,
    tracking: TrackingResource,
) -> Iterator[dg.DynamicOutput[str]]:
    from cssci_platform.lib.model_tracking import get_or_create_experiment
    from cssci_platform.lib.modeling.chains import ChainSettings
    from cssci_platform.lib.modeling.zoo import fit_steps, fit_units, labels_for_mode, no_units_reason, outcome_classes
    from cssci_platform.lib.outcome_rules import OutcomeRuleError
    from cssci_platform.lib.study_runs import STUDY_TAG

    config = study.config()
    manifest = cohort.load()
    split, folds = study_split_folds(warehouse, config)
    with warehouse.connect() as con:
        matrix = queries.stored_feature_matrix(con).to_pandas().set_index("patient_key")
        outcome = queries.modelled_outcome(con, split)
    units = fit_units(matrix, folds, config.models, list(config.modes))
    if not units:
        raise dg.Failure(no_units_reason(config.models.signatures, list(config.modes), list(folds)))
    chain = ChainSettings(
        config.harmonization,
        config.selection,
        _icc_table(warehouse, config),
        config.models.cv_folds,
        config.models.seed,
    )
    scores = _scores(warehouse, config)
    try:  # an outcome rule that cannot label a fold fails the step here, before any fit
        for roles in folds.values():
            for mode in config.modes:
                labels_for_mode(matrix, roles, scores, mode)
    except OutcomeRuleError as error:
        raise dg.Failure(str(error)) from None
    get_or_create_experiment(tracking.config(config.name))  # once, before fit steps log side by side
    tags = {**({STUDY_TAG: context.run.tags[STUDY_TAG]} if STUDY_TAG in context.run.tags else {}), "split": split}
    inputs = ZooInputs(
        matrix,
        split,
        folds,
        outcome_classes(manifest.spec, outcome),
        chain,
        scores,
        tags,
        manifest.manifest_sha256,
        units,
    )
    folder = _step_folder(warehouse, context.run_id)
    path = folder / INPUTS_FILE
    path.write_bytes(pickle.dumps(inputs, protocol=pickle.HIGHEST_PROTOCOL))
    steps = fit_steps(units, matrix, config.models, modeling_workers(_execution_config(context)))
    context.log.info(f"{len(units)} fit units in {len(steps)} steps, longest first")
    for position, step in enumerate(steps):  # in this order the executor starts them
        yield dg.DynamicOutput(
            f"{path}#{','.join(map(str, step.units))}", mapping_key=f"s{position:03d}_{step.key}",
            metadata={FIT_UNITS_METADATA: len(step.units)},
        )


@dg.op(description="The fit units of one step (every classifier of a signature in one mode on one fold), each fit "
       "logged as its MLflow run")
def fit_unit(
    context: dg.OpExecutionContext, study: StudyResource, tracking: TrackingResource, planned: str
) -> dg.Output[str]:
    """`planned`: '<inputs file>#<unit indices>'. Returns the file holding each unit's (index, [(fit, run id, model
    URI)]); its metadata: the wall seconds spent fitting and logging and the step's CPU seconds (all threads). A
    unit that raises fails the step, naming the unit and what it was doing (a classifier's own error is a recorded
    failed fit, not this)."""
    from threadpoolctl import threadpool_info, threadpool_limits

    # threadpoolctl limits the native pools already loaded: lib.modeling.zoo loads scikit-learn's OpenMP and the
    # OpenBLAS of NumPy and SciPy; LightGBM and XGBoost, loaded when their estimators are made, take n_jobs threads
    importlib.import_module("cssci_platform.lib.modeling.zoo")
    path, indices = planned.rsplit("#", 1)
    inputs: ZooInputs = pickle.loads(Path(path).read_bytes())
    config = study.config()
    tracking_config = tracking.config(config.name)
    done, fitting, logging, cpu = [], 0.0, 0.0, time.process_time()
    with threadpool_limits(limits=FIT_NATIVE_THREADS):
        threads = max(pool["num_threads"] for pool in threadpool_info())
        for index in map(int, indices.split(",")):
            unit = inputs.units[index]
            started = time.perf_counter()
            fits = _fit(inputs, config, unit)
            fitting += time.perf_counter() - started
            started = time.perf_counter()
            done.append((index, [(fit, *_logged(context, tracking_config, fit, unit, inputs, config))
                                 for fit in fits]))
            logging += time.perf_counter() - started
    result = Path(path).parent / f"unit_{indices.split(',')[0]}.pkl"
    result.write_bytes(pickle.dumps(done, protocol=pickle.HIGHEST_PROTOCOL))
    return dg.Output(
        str(result),
        metadata={"units": len(done), "models": sum(len(fits) for _, fits in done),
                  "seconds_fitting": round(fitting, 2), "seconds_logging": round(logging, 2),
                  "seconds_cpu": round(time.process_time() - cpu, 2), "native_threads": threads},
    )


def _execution_config(context: dg.OpExecutionContext) -> dict:
    """The run's executor settings (`execution: {config: ...}`), {} where the run gives none."""
    return (context.run_config.get("execution") or {}).get("config") or {}


def _unit_name(unit: "FitUnit") -> str:
    return f"fit unit {unit.signature}, {unit.mode}, fold {unit.fold}"


def _fit(inputs: ZooInputs, config: "StudyConfig", unit: "FitUnit") -> "list[ZooFit]":
    from cssci_platform.lib.modeling.zoo import train_unit
    from cssci_platform.lib.outcome_rules import OutcomeRuleError

    try:
        return train_unit(
            inputs.matrix, inputs.folds, inputs.classes, config.models, unit, inputs.chain, inputs.scores
        )
    except OutcomeRuleError as error:
        raise dg.Failure(f"{_unit_name(unit)}: {error}") from None
    except Exception as error:
        raise dg.Failure(f"{_unit_name(unit)}: fitting failed: {type(error).__name__}: {error}") from error


def _logged(
    context: dg.OpExecutionContext,
    tracking_config: "TrackingConfig",
    fit: "ZooFit",
    unit: "FitUnit",
    inputs: ZooInputs,
    config: "StudyConfig",
) -> tuple[str, str]:
    """The fit logged as its MLflow run: (run id, model URI); an error names the unit and the model."""
    from cssci_platform.lib.model_tracking import model_run_tags
    from cssci_platform.lib.modeling.results import settings_params

    run_tags = {
        **inputs.tags,
        "fold": fit.fold,
        **model_run_tags(
            signature=fit.model.spec.signature.name,
            classifier=fit.model.spec.classifier,
            mode=fit.model.spec.mode,
            manifest_hash=inputs.manifest_hash,
            dagster_run_id=context.run.run_id,
            dagster_asset=",".join(ZOO_ASSETS),
        ),
    }
    params = settings_params(inputs.chain, config.outcome, fit.outcome_threshold)
    try:
        return _log_fit(context, tracking_config, fit, config, params, run_tags, inputs.matrix)
    except Exception as error:
        raise dg.Failure(
            f"{_unit_name(unit)}: logging {fit.model.spec.name} to MLflow failed: {type(error).__name__}: {error}"
        ) from error


@dg.op(
    out={key: dg.Out(dg.Nothing) for key in ("trained_models", "model_results", "predictions")},
    description="Fan-in: the fits in training order; registers each signature's champion, writes model_results and "
    "predictions",
)
def register_zoo(
    context: dg.OpExecutionContext,
    study: StudyResource,
    warehouse: WarehouseResource,
    tracking: TrackingResource,
    fitted: list[str],
) -> Iterator[dg.Output]:
    from cssci_platform.lib.modeling.results import write_zoo_results
    from cssci_platform.lib.modeling.zoo import champions_fold

    config = study.config()
    folder = _step_folder(warehouse, context.run_id)
    inputs: ZooInputs = pickle.loads((folder / INPUTS_FILE).read_bytes())
    units = sorted(unit for path in fitted for unit in pickle.loads(Path(path).read_bytes()))  # serial order
    if [index for index, _ in units] != list(range(len(inputs.units))):
        raise dg.Failure(f"the fit steps returned units {[i for i, _ in units]} of {len(inputs.units)}: "
                         "re-run trained_models")
    logged = [entry for _, unit_logged in units for entry in unit_logged]
    first_fold = champions_fold(fit for fit, _, _ in logged)
    champions = _register_champions(
        tracking.config(config.name),
        config.name,
        [(f.model, run_id, uri) for f, run_id, uri in logged if f.fold == first_fold and not f.failed],
        {run_id: f.labels for f, run_id, _ in logged if f.fold == first_fold and not f.failed},
        config.outcome.name,
    )
    with warehouse.connect() as con:
        write_zoo_results(con, logged, champions, inputs.split, inputs.matrix["cohort"])
    for result in _materializations(logged, champions, first_fold, config.name, tracking.tracking_uri):
        yield dg.Output(None, output_name=str(result.asset_key.path[-1]), metadata=result.metadata)
    shutil.rmtree(folder, ignore_errors=True)


@dg.graph_multi_asset(
    group_name="modeling",
    can_subset=False,
    ins={a.key.path[-1]: dg.AssetIn(a.key, dagster_type=dg.Nothing) for a in MODEL_INPUTS},
    outs={
        "trained_models": dg.AssetOut(
            kinds={"mlflow", "scikitlearn"},
            description="One MLflow run per signature x classifier x mode; the best per signature registered as "
            "champion",
        ),
        "model_results": dg.AssetOut(
            kinds={"duckdb"}, description="CV, test and validation metrics per model, named as in the studies' tables"
        ),
        "predictions": dg.AssetOut(
            kinds={"duckdb"}, description="Class probabilities of every model for every scored patient"
        ),
    },
)
def trained_models(feature_matrix, patient_splits, feature_reliability):
    """The zoo as parallel steps: plan_fit_units -> fit_unit per fold x mode x signature -> register_zoo."""
    fitted = plan_fit_units(
        feature_matrix=feature_matrix, patient_splits=patient_splits, feature_reliability=feature_reliability
    ).map(fit_unit)
    return register_zoo(fitted.collect())


def _step_folder(warehouse: WarehouseResource, run_id: str) -> Path:
    folder = Path(warehouse.path).parent / STEP_FILES / run_id
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def _log_fit(
    context: dg.OpExecutionContext,
    tracking_config: "TrackingConfig",
    fit: "ZooFit",
    config: "StudyConfig",
    params: dict,
    tags: dict,
    matrix: "pd.DataFrame",
) -> tuple[str, str]:
    """One MLflow run per fit: (run id, model URI; '' for a fit that failed)."""
    import pandas as pd

    from cssci_platform.lib.model_tracking import log_model_run
    from cssci_platform.lib.modeling.chains import pipeline_input_columns
    from cssci_platform.lib.modeling.results import final_features, run_metrics, run_params, warning_tags
    from cssci_platform.lib.modeling.training import FailedFit

    model, where = fit.model, f"[{fit.model.spec.mode}, {fit.fold}]"
    if isinstance(model, FailedFit):
        context.log.warning(
            f"fit failed, the study goes on: {model.spec.name} {where} at the {model.stage}: {model.reason}"
        )
        return _log_failed_run(tracking_config, model, fit.fold, params, tags), ""
    for note in model.small_sample:
        context.log.warning(f"{model.spec.name} {where}: {note}")
    example = matrix.loc[fit.roles.reindex(matrix.index) == "train", pipeline_input_columns(model.pipeline)].head(3)
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
    from cssci_platform.lib.modeling.zoo_summary import (
        champion_table,
        failure_table,
        fold_summary,
        mode_delta_table,
        results_table,
    )

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


def _scores(warehouse: WarehouseResource, config: "StudyConfig") -> "pd.Series | None":
    """The change scores leakage_safe labels are re-derived from per fold (rule change_above_mean), else None."""
    import pandas as pd

    from cssci_platform.lib.outcome_rules import SCORE_SUFFIX

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


def _icc_table(warehouse: WarehouseResource, config: "StudyConfig") -> "pd.DataFrame | None":
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


def _register_champions(tracking_config, experiment: str, runs: list, labels: "dict[str, pd.Series]",
                        outcome: str) -> dict[str, dict]:
    """Register each signature's champion (`choose_champions`) in the MLflow model registry, described by its model
    card and with its ROC and calibration plots (the evidence: its predictions against the labels it was evaluated
    on); `runs`: (model, run id, model URI) of the champions' fold; `labels`: run id -> the fit's labels."""
    from cssci_platform.lib.model_tracking import model_evidence, register_champion, registered_model_name
    from cssci_platform.lib.modeling.zoo import choose_champions

    uris = {run_id: uri for _, run_id, uri in runs}
    champions = {}
    for signature, (model, run_id) in choose_champions([(model, run_id) for model, run_id, _ in runs]).items():
        name = registered_model_name(experiment, signature)
        evidence = model_evidence(model.predictions, labels[run_id], model.classes, outcome)
        version = register_champion(
            tracking_config, name, run_id=run_id, model_uri=uris[run_id],
            chosen_by=("cv_auc_mean", model.cv_score_mean), evidence=evidence,
        )
        champions[signature] = {
            "model": model.spec.name,
            "registered_model": name,
            "version": version.version,
            "run_id": run_id,
            "cv_auc": model.cv_score_mean,
        }
    return champions


def _log_failed_run(tracking_config: "TrackingConfig", failed: "FailedFit", fold: str, params: dict,
                    tags: dict) -> str:
    """A FAILED MLflow run for a fit that raised: the reason as tag `cssci.failure_reason` and param
    `failure_reason`."""
    from cssci_platform.lib.model_tracking import get_or_create_experiment, in_study_run, log_params

    client = tracking_config.client()
    run = client.create_run(
        get_or_create_experiment(tracking_config),
        run_name=f"{failed.spec.name} [{failed.spec.mode}, {fold}] FAILED",
        tags={
            **in_study_run({k: str(v) for k, v in tags.items()}),  # nested under the study run, like the model runs
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
