"""trained_models / model_results / predictions: the zoo per signature and mode, tracked in MLflow."""

from datetime import datetime
from typing import Literal

import dagster as dg
import pandas as pd
import polars as pl

from cssci_platform.defs.models.features import feature_matrix, feature_reliability
from cssci_platform.defs.splits.assets import patient_splits, split_name, split_roles
from cssci_platform.lib.classifiers import CLASSIFIER_NAMES
from cssci_platform.lib.modeling.chains import ChainSettings
from cssci_platform.lib.modeling.results import metric_rows, model_row, prediction_rows, run_metrics, run_params
from cssci_platform.lib.modeling.signatures import Signature, parse_signature, standard_signatures
from cssci_platform.lib.modeling.training import MODES, FailedFit, TrainedModel, champion_candidates, fit_signature
from cssci_platform.lib.outcome_rules import SCORE_SUFFIX, OutcomeRuleError, labels_above_training_mean
from cssci_platform.lib.model_tracking import (
    get_or_create_experiment,
    log_model_run,
    log_params,
    register_champion,
    registered_model_name,
    select_champion,
)
from cssci_platform.lib.warehouse import append_rows, replace_rows
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource


MODEL_INPUTS = [feature_matrix, patient_splits, feature_reliability]
CHAIN_PARAMS = {"harmonize", "unseen_center_policy", "small_center", "min_center_size", "unharmonized_classes", "icc_threshold", "rank_test", "rank_alpha", "spearman_threshold", "mrmr_k",
                "lasso", "lasso_rule", "pca_components", "label_rule"}


class ModelingConfig(dg.Config):
    experiment: str = "demo"
    signatures: list[str] | None = None  # default: Rad, DL_/Rad+DL_ per backbone in the matrix, Clinical, Combined
    classifiers: list[str] = list(CLASSIFIER_NAMES)
    modes: list[str] = list(MODES)
    grid: str = "fast"  # or "full"
    cv_folds: int = 10
    split: str | None = None
    folds: list[str] = ["holdout"]  # ["all"]: every fold (leave-one-center-out centers, r<i>f<k>); champions come from the first
    harmonize: bool = True
    unseen_center_policy: str = "none"
    small_center: str = "pool"  # centers under min_center_size training patients: pool | unseen | error
    min_center_size: int = 2
    unharmonized_classes: list[str] = ["shape"]  # radiomics feature classes ComBat passes through
    icc_threshold: float | None = None  # e.g. 0.75 with feature_reliability materialized
    rank_test: bool = True
    rank_alpha: float = 0.05
    spearman_threshold: float | None = 0.9
    mrmr_k: int | None = 20
    lasso: bool = True
    lasso_rule: str = "min"
    pca_components: int = 32
    seed: int = 42
    # "above_training_mean": leakage_safe labels are study_outcome's score above the training patients' mean
    # (per fold); paper_faithful keeps study_outcome's cohort-mean labels, as published.
    label_rule: Literal["fixed", "above_training_mean"] = "fixed"
    study_run: str | None = None  # `cssci run` sets it: the MLflow study run these model runs belong to

    def chain(self, icc_table: pd.DataFrame | None) -> ChainSettings:
        return ChainSettings(harmonize=self.harmonize, unseen_center_policy=self.unseen_center_policy,
                             small_center=self.small_center, min_center_size=self.min_center_size,
                             unharmonized_classes=tuple(self.unharmonized_classes), icc_table=icc_table,
                             icc_threshold=self.icc_threshold or 0.75, rank_test=self.rank_test, rank_alpha=self.rank_alpha,
                             spearman_threshold=self.spearman_threshold, mrmr_k=self.mrmr_k, lasso=self.lasso,
                             lasso_cv=self.cv_folds, lasso_rule=self.lasso_rule, pca_components=self.pca_components, seed=self.seed)


@dg.multi_asset(
    group_name="modeling", can_subset=False,
    specs=[dg.AssetSpec("trained_models", kinds={"mlflow", "scikitlearn"}, deps=MODEL_INPUTS,
                        description="One MLflow run per signature x classifier x mode; the best per signature registered as champion"),
           dg.AssetSpec("model_results", kinds={"duckdb"}, deps=MODEL_INPUTS,
                        description="CV, test and validation metrics per model, named as in the studies' tables"),
           dg.AssetSpec("predictions", kinds={"duckdb"}, deps=MODEL_INPUTS,
                        description="Class probabilities of every model for every scored patient")],
)
def trained_models(context: dg.AssetExecutionContext, config: ModelingConfig, cohort: CohortResource,
                   warehouse: WarehouseResource, tracking: TrackingResource):
    matrix = warehouse.frame("SELECT * FROM feature_matrix").to_pandas().set_index("patient_key")
    manifest = cohort.load()
    outcome = warehouse.frame("SELECT any_value(outcome) AS o FROM splits WHERE split = ?",
                              [split_name(warehouse, config.split)])["o"][0]
    variable = manifest.spec.outcomes.get(outcome)
    classes = list(variable.levels) if variable is not None and variable.levels else ["0", "1"]
    scores = _scores(warehouse, outcome) if config.label_rule == "above_training_mean" else None
    chain = config.chain(_icc_table(warehouse) if config.icc_threshold is not None else None)
    tracking_config = tracking.config(config.experiment)
    runs, failures = [], []
    for fold in _folds(warehouse, config):
        roles = split_roles(warehouse, config.split, fold)
        split_table = pd.DataFrame({"patient_key": roles.index, "role": roles.to_numpy(), "fold": fold})
        example = matrix.loc[roles.reindex(matrix.index) == "train"].head(3).drop(columns=["cohort", "label"])
        for mode in config.modes:
            labelled, threshold = _labelled(matrix, roles, scores, mode)
            for signature in _signatures(config, matrix):
                context.log.info(f"training {signature.name} ({mode}, fold {fold})")
                params = {**config.model_dump(include=CHAIN_PARAMS), "outcome": outcome,
                          **({"outcome_threshold": threshold} if threshold is not None else {})}
                for model in fit_signature(labelled, roles, signature, config.classifiers, mode, classes, chain,  # type: ignore[arg-type]
                                           config.grid, config.cv_folds):
                    tags = {**tracking.run_tags(context, signature=signature.name, classifier=model.spec.classifier,
                                                mode=mode, manifest_hash=manifest.manifest_sha256),
                            "split": str(roles.name), "fold": fold, **_study_tag(config)}
                    if isinstance(model, FailedFit):
                        context.log.warning(f"fit failed, the study goes on: {model.spec.name} [{mode}, {fold}] at the "
                                            f"{model.stage}: {model.reason}")
                        failures.append((fold, model, _log_failed_run(tracking_config, model, fold, params, tags)))
                        continue
                    for note in model.small_sample:
                        context.log.warning(f"{model.spec.name} [{mode}, {fold}]: {note}")
                    logged = log_model_run(
                        tracking_config, run_name=f"{model.spec.name} [{mode}, {fold}]", model=model.pipeline,
                        input_example=example, params={**run_params(model, config.grid, config.cv_folds, config.seed), **params},
                        metrics=run_metrics(model), selected_features=_final_features(model),
                        tags={**tags, **_warning_tags(model)},
                        selection_reports=model.selection, split_table=split_table)
                    runs.append((fold, model, logged, labelled["label"]))
    first_fold = runs[0][0] if runs else "-"
    champions = _register_champions(tracking_config, config.experiment, [(m, lg) for f, m, lg, _ in runs if f == first_fold])
    _store(warehouse, runs, champions, split_name(warehouse, config.split), matrix, failures)
    runs = [(f, m, lg) for f, m, lg, _ in runs]
    models = [m for _, m, _ in runs]
    yield dg.MaterializeResult(asset_key="trained_models", metadata={
        "mlflow_runs": len(runs), "failed_fits": len(failures), "experiment": config.experiment, "tracking_uri": tracking.tracking_uri,
        "fits_that_failed": dg.MetadataValue.md(_failure_table([f for _, f, _ in failures])),
        "small_sample_warnings": sum(bool(m.small_sample) for m in models),
        "champions_from_fold": first_fold, "champions": dg.MetadataValue.md(_champion_table(champions))})
    yield dg.MaterializeResult(asset_key="model_results", metadata={
        "table": dg.MetadataValue.md(_results_table([m for f, m, _ in runs if f == first_fold])), "models": len(models),
        "across_folds": dg.MetadataValue.md(_fold_summary(runs)),
        "leakage_safe_vs_paper_faithful": dg.MetadataValue.md(_mode_delta_table([m for f, m, _ in runs if f == first_fold]))})
    yield dg.MaterializeResult(asset_key="predictions", metadata={"rows": sum(len(m.predictions) for m in models)})


def _scores(warehouse: WarehouseResource, outcome: str) -> pd.Series:
    rows = warehouse.frame("SELECT patient_key, value FROM outcomes WHERE outcome = ?", [outcome + SCORE_SUFFIX]).to_pandas()
    if rows.empty:
        raise dg.Failure(f"label_rule 'above_training_mean' needs the scores '{outcome}{SCORE_SUFFIX}' written by study_outcome "
                         "(rule change_above_mean); materialize study_outcome with that rule first")
    return pd.to_numeric(rows.set_index("patient_key")["value"])


def _labelled(matrix: pd.DataFrame, roles: pd.Series, scores: pd.Series | None, mode: str) -> tuple[pd.DataFrame, float | None]:
    """The matrix with this mode's labels: leakage_safe thresholds the scores at the training patients' mean."""
    if scores is None or mode != "leakage_safe":
        return matrix, None
    try:
        labels, threshold = labels_above_training_mean(scores.reindex(matrix.index), roles.reindex(matrix.index))
    except OutcomeRuleError as error:
        raise dg.Failure(str(error)) from None
    return matrix.assign(label=labels.where(matrix["label"].notna(), None)), threshold


def _study_tag(config: ModelingConfig) -> dict[str, str]:
    return {"cssci.study_run": config.study_run} if config.study_run else {}


def _folds(warehouse: WarehouseResource, config: ModelingConfig) -> list[str]:
    """`folds: [all]` trains on every fold of the split (leave-one-center-out, repeated k-fold); else `folds`."""
    if config.folds != ["all"]:
        return config.folds
    split = split_name(warehouse, config.split)
    return sorted(set(warehouse.frame("SELECT DISTINCT fold FROM splits WHERE split = ?", [split])["fold"]))


def _signatures(config: ModelingConfig, matrix: pd.DataFrame) -> list[Signature]:
    if config.signatures is not None:
        return [parse_signature(name) for name in config.signatures]
    backbones = sorted({c.split("__")[1] for c in matrix.columns if c.startswith("dl__")})
    return standard_signatures(backbones, with_clinical=any(c.startswith("clin__") for c in matrix.columns))


def _icc_table(warehouse: WarehouseResource) -> pd.DataFrame:
    try:
        table = warehouse.frame("SELECT feature, icc, ci_low, ci_high FROM feature_reliability WHERE kind = 'ICC3'")
    except Exception as error:  # duckdb CatalogException: the table does not exist yet
        raise dg.Failure("icc_threshold is set but feature_reliability has not been materialized") from error
    if table.is_empty():
        raise dg.Failure("icc_threshold is set but no patient has a repeat segmentation, so no ICC exists; "
                         "add mask__<sequence>__<roi>__<rater> columns or set icc_threshold: null")
    return table.to_pandas().set_index("feature")


def _final_features(model: TrainedModel) -> list[str]:
    return list(model.selection[-1]["kept"]) if model.selection else list(model.input_columns)


def _register_champions(tracking_config, experiment: str, runs: list) -> dict[str, dict]:
    """Per signature: the leakage-safe model with the best mean CV AUC on training folds (never test data)."""
    champions = {}
    for signature in sorted({m.spec.signature.name for m, _ in runs}):
        of_signature = [(m, logged) for m, logged in runs if m.spec.signature.name == signature]
        eligible = {id(m) for m in champion_candidates([m for m, _ in of_signature])}
        candidates = {logged.run_id: (m, logged) for m, logged in of_signature if id(m) in eligible}
        if not candidates:
            continue
        best = select_champion([(run_id, m.cv_score_mean) for run_id, (m, _) in candidates.items()])
        model, logged = candidates[best]
        name = registered_model_name(experiment, signature)
        version = register_champion(tracking_config, name, run_id=logged.run_id, model_uri=logged.model_uri,
                                    chosen_by=("cv_auc_mean", model.cv_score_mean))
        champions[signature] = {"model": model.spec.name, "registered_model": name, "version": version.version,
                                "run_id": logged.run_id, "cv_auc": model.cv_score_mean}
    return champions


def _store(warehouse: WarehouseResource, runs: list, champions: dict, split: str, matrix: pd.DataFrame,
           failures: list) -> None:
    now = datetime.now()
    versions = {c["run_id"]: c for c in champions.values()}
    models = [model_row(m, lg.run_id, lg.model_uri, versions.get(lg.run_id), split, fold, now) for fold, m, lg, _ in runs]
    metrics = [row for fold, m, lg, _ in runs for row in metric_rows(m, lg.run_id, split, fold, now)]
    metrics += [row for fold, m, lg, _ in runs for row in warning_rows(m, lg.run_id, split, fold, now)]
    metrics += [failure_row(f, run_id, split, fold, now) for fold, f, run_id in failures]
    cohorts = matrix["cohort"]
    predictions = [prediction_rows(m, cohorts, labels, lg.run_id, split, fold, now) for fold, m, lg, labels in runs]
    with warehouse.connect() as con:
        replace_rows(con, "trained_models", {}, models)
        replace_rows(con, "model_results", {}, metrics)
        con.execute("DELETE FROM predictions WHERE signature <> 'CNN'")
        if predictions:
            append_rows(con, "predictions", pl.concat(predictions))


def failure_row(failed: FailedFit, run_id: str, split: str, fold: str, created_at: datetime) -> dict:
    """A fit that raised, in model_results: role 'fit', metric 'failed', the reason in `reason`."""
    return {"result_name": failed.spec.name, "signature": failed.spec.signature.name, "classifier": failed.spec.classifier,
            "mode": failed.spec.mode, "role": "fit", "metric": "failed", "value": 1.0, "run_id": run_id, "split": split,
            "fold": fold, "created_at": created_at, "reason": f"{failed.stage}: {failed.reason}"}


def warning_rows(model: TrainedModel, run_id: str, split: str, fold: str, created_at: datetime) -> list[dict]:
    """Small-sample warnings of a model, in model_results: role 'cv', metric 'small_sample' (1 = degenerate CV)."""
    return [{"result_name": model.spec.name, "signature": model.spec.signature.name, "classifier": model.spec.classifier,
             "mode": model.spec.mode, "role": "cv", "metric": "small_sample", "value": float(model.degenerate_cv),
             "run_id": run_id, "split": split, "fold": fold, "created_at": created_at, "reason": note}
            for note in model.small_sample]


def _warning_tags(model: TrainedModel) -> dict[str, str]:
    tags = {"cssci.small_sample": " | ".join(model.small_sample)[:4000]} if model.small_sample else {}
    if model.decisions:
        tags["cssci.decisions"] = " | ".join(model.decisions)[:4000]
    return tags


def _log_failed_run(tracking_config, failed: FailedFit, fold: str, params: dict, tags: dict) -> str:
    """A FAILED MLflow run for a fit that raised: the reason as tag `cssci.failure_reason` and param `failure_reason`."""
    client = tracking_config.client()
    run = client.create_run(get_or_create_experiment(tracking_config), run_name=f"{failed.spec.name} [{failed.spec.mode}, {fold}] FAILED",
                            tags={**{k: str(v) for k, v in tags.items()}, "cssci.failure_reason": failed.reason,
                                  "cssci.failure_stage": failed.stage})
    log_params(client, run.info.run_id, {"signature": failed.spec.signature.name, "classifier": failed.spec.classifier,
                                         "mode": failed.spec.mode, "failure_reason": failed.reason[:250],
                                         **params})
    client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def _failure_table(failures: list[FailedFit]) -> str:
    if not failures:
        return "no fit failed"
    lines = ["| signature | classifier | mode | stage | reason |", "|---|---|---|---|---|"]
    lines += [f"| {f.spec.signature.name} | {f.spec.classifier} | {f.spec.mode} | {f.stage} | {f.reason[:200]} |" for f in failures]
    return "\n".join(lines)


def _test_auc(model: TrainedModel) -> float:
    test = model.metrics.get("test", {})
    return test.get("auc", test.get("auc_macro_ovr", float("nan")))


def _mode_delta_table(models: list[TrainedModel]) -> str:
    """Test AUC per model in both modes: how optimistic the published order of operations is on this cohort."""
    by_mode = {(m.spec.name, m.spec.mode): _test_auc(m) for m in models}
    names = sorted({name for name, _ in by_mode})
    lines = ["| model | leakage_safe test AUC | paper_faithful test AUC | paper_faithful - leakage_safe |", "|---|---|---|---|"]
    for name in names:
        safe, faithful = by_mode.get((name, "leakage_safe"), float("nan")), by_mode.get((name, "paper_faithful"), float("nan"))
        lines.append(f"| {name} | {safe:.3f} | {faithful:.3f} | {faithful - safe:+.3f} |")
    return "\n".join(lines)


def _fold_summary(runs: list) -> str:
    """Test AUC mean +- SD over folds per model and mode (one fold: the same as the results table)."""
    frame = pd.DataFrame([{"model": m.spec.name, "mode": m.spec.mode, "fold": f, "auc": _test_auc(m)} for f, m, _ in runs])
    if frame.empty:
        return "no models"
    grouped = frame.groupby(["model", "mode"])["auc"].agg(["mean", "std", "count"]).reset_index()
    lines = ["| model | mode | folds | test AUC mean | SD |", "|---|---|---|---|---|"]
    lines += [f"| {r.model} | {r.mode} | {r['count']} | {r['mean']:.3f} | {r['std']:.3f} |" for _, r in grouped.iterrows()]
    return "\n".join(lines)


def _champion_table(champions: dict) -> str:
    lines = ["| signature | champion | registered model | version | CV AUC |", "|---|---|---|---|---|"]
    lines += [f"| {s} | {c['model']} | {c['registered_model']} | {c['version']} | {c['cv_auc']:.3f} |" for s, c in champions.items()]
    return "\n".join(lines)


def _results_table(models: list[TrainedModel]) -> str:
    lines = ["| model | mode | CV AUC | test AUC | test acc | test sens | test spec |", "|---|---|---|---|---|---|---|"]
    for m in models:
        test = m.metrics.get("test", {})
        lines.append(f"| {m.spec.name} | {m.spec.mode} | {m.cv_score_mean:.3f} | {test.get('auc', test.get('auc_macro_ovr', float('nan'))):.3f} "
                     f"| {test.get('accuracy', test.get('top1_accuracy', float('nan'))):.3f} | {test.get('sensitivity', float('nan')):.3f} "
                     f"| {test.get('specificity', float('nan')):.3f} |")
    return "\n".join(lines)
