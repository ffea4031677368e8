"""MLflow tracking and model registry: one MLflow run per fitted pipeline, champions as registry aliases.

Everything goes through an explicit `MlflowClient(tracking_uri, registry_uri)` built from a `TrackingConfig`; the
few MLflow calls that only read its process globals run inside `store.scoped_mlflow_globals`. The parts:

- `store`: the tracking config, its experiment, first opening of a sqlite store, MLflow's globals scoped to a config;
- `conventions`: registered model names, our run tags, keys and values MLflow accepts;
- `model_format`: how a pipeline is serialized (skops, trusted types, pinned requirements);
- `runs`: one finished run per fitted pipeline, with its artifacts and its logged model;
- `registry`: versions, champion/challenger aliases, the version an alias names;
- `model_card`: a version's description (model card) and its run's ROC / calibration plots;
- `loading`: a registered pipeline loaded back;
- `validation`: later (prospective) metrics logged against a registered version.

Imported lazily (PEP 562): a name loads its submodule (and MLflow) when first used, so a process that only
names these types (a patient worker, the CLI) does not pay MLflow's import (issue 18, memory).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cssci_platform.lib.lazy_exports import lazy_attribute

if TYPE_CHECKING:
    from cssci_platform.lib.model_tracking.conventions import (
        TAG_CLASSIFIER,
        TAG_DAGSTER_ASSET,
        TAG_DAGSTER_PARTITION,
        TAG_DAGSTER_RUN_ID,
        TAG_MANIFEST_HASH,
        TAG_MODE,
        TAG_PARENT_RUN,
        TAG_SIGNATURE,
        TAG_STUDY_RUN,
        in_study_run,
        mlflow_key,
        model_run_tags,
        registered_model_name,
    )
    from cssci_platform.lib.model_tracking.loading import load_champion, load_model
    from cssci_platform.lib.model_tracking.model_card import (
        ModelEvidence,
        RoleScores,
        log_evaluation_plots,
        model_card,
        model_evidence,
    )
    from cssci_platform.lib.model_tracking.model_format import (
        TRUSTED_MODULE_PREFIXES,
        SerializationFormat,
    )
    from cssci_platform.lib.model_tracking.registry import (
        CHALLENGER,
        CHAMPION,
        TRAIN_HINT,
        VERSION_TAGS_FROM_RUN,
        ChampionNotFoundError,
        ModelVersionInfo,
        champion_version,
        register_challenger,
        register_champion,
        register_model_version,
        select_champion,
        set_alias,
    )
    from cssci_platform.lib.model_tracking.runs import LoggedRun, log_model_run, log_params
    from cssci_platform.lib.model_tracking.store import (
        CLASSIC_ML_KIND,
        EXPERIMENT_KIND_TAG,
        STORE_LOCK_WAIT_SECONDS,
        TrackingConfig,
        existing_experiment_id,
        experiment_page_url,
        get_or_create_experiment,
        sqlite_tracking_uri,
    )
    from cssci_platform.lib.model_tracking.validation import log_metrics_to_version

_WHERE = {  # name -> the submodule that defines it
    "CHALLENGER": "registry",
    "CHAMPION": "registry",
    "CLASSIC_ML_KIND": "store",
    "ChampionNotFoundError": "registry",
    "EXPERIMENT_KIND_TAG": "store",
    "LoggedRun": "runs",
    "ModelEvidence": "model_card",
    "ModelVersionInfo": "registry",
    "RoleScores": "model_card",
    "STORE_LOCK_WAIT_SECONDS": "store",
    "SerializationFormat": "model_format",
    "TAG_CLASSIFIER": "conventions",
    "TAG_DAGSTER_ASSET": "conventions",
    "TAG_DAGSTER_PARTITION": "conventions",
    "TAG_DAGSTER_RUN_ID": "conventions",
    "TAG_MANIFEST_HASH": "conventions",
    "TAG_MODE": "conventions",
    "TAG_PARENT_RUN": "conventions",
    "TAG_SIGNATURE": "conventions",
    "TAG_STUDY_RUN": "conventions",
    "TRAIN_HINT": "registry",
    "TRUSTED_MODULE_PREFIXES": "model_format",
    "TrackingConfig": "store",
    "VERSION_TAGS_FROM_RUN": "registry",
    "champion_version": "registry",
    "existing_experiment_id": "store",
    "experiment_page_url": "store",
    "get_or_create_experiment": "store",
    "in_study_run": "conventions",
    "load_champion": "loading",
    "load_model": "loading",
    "log_evaluation_plots": "model_card",
    "log_metrics_to_version": "validation",
    "log_model_run": "runs",
    "log_params": "runs",
    "mlflow_key": "conventions",
    "model_card": "model_card",
    "model_evidence": "model_card",
    "model_run_tags": "conventions",
    "register_challenger": "registry",
    "register_champion": "registry",
    "register_model_version": "registry",
    "registered_model_name": "conventions",
    "select_champion": "registry",
    "set_alias": "registry",
    "sqlite_tracking_uri": "store",
}


def __getattr__(name: str) -> Any:
    return lazy_attribute(__name__, _WHERE, globals(), name)


__all__ = [
    "CHALLENGER",
    "CHAMPION",
    "CLASSIC_ML_KIND",
    "EXPERIMENT_KIND_TAG",
    "STORE_LOCK_WAIT_SECONDS",
    "TAG_CLASSIFIER",
    "TAG_DAGSTER_ASSET",
    "TAG_DAGSTER_PARTITION",
    "TAG_DAGSTER_RUN_ID",
    "TAG_MANIFEST_HASH",
    "TAG_MODE",
    "TAG_PARENT_RUN",
    "TAG_SIGNATURE",
    "TAG_STUDY_RUN",
    "TRAIN_HINT",
    "TRUSTED_MODULE_PREFIXES",
    "VERSION_TAGS_FROM_RUN",
    "ChampionNotFoundError",
    "LoggedRun",
    "ModelEvidence",
    "ModelVersionInfo",
    "RoleScores",
    "SerializationFormat",
    "TrackingConfig",
    "champion_version",
    "existing_experiment_id",
    "experiment_page_url",
    "get_or_create_experiment",
    "in_study_run",
    "load_champion",
    "load_model",
    "log_evaluation_plots",
    "log_metrics_to_version",
    "log_model_run",
    "log_params",
    "mlflow_key",
    "model_card",
    "model_evidence",
    "model_run_tags",
    "register_challenger",
    "register_champion",
    "register_model_version",
    "registered_model_name",
    "select_champion",
    "set_alias",
    "sqlite_tracking_uri",
]
