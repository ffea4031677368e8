"""The model registry: versions of a registered model, champions and challengers as aliases, and the version an
alias names (with a message that says what exists and what to run when it names none)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from mlflow import MlflowClient
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from cssci_platform.lib.model_tracking.conventions import (
    TAG_CLASSIFIER,
    TAG_MANIFEST_HASH,
    TAG_MODE,
    TAG_SIGNATURE,
    require_safe_name,
    tag_values,
)
from cssci_platform.lib.model_tracking.model_card import (
    ModelEvidence,
    log_evaluation_plots,
    model_card,
    selected_features,
)
from cssci_platform.lib.model_tracking.store import (
    TrackingConfig,
    scoped_mlflow_globals,
)

CHAMPION = "champion"
CHALLENGER = "challenger"
VERSION_TAGS_FROM_RUN = (TAG_SIGNATURE, TAG_CLASSIFIER, TAG_MODE, TAG_MANIFEST_HASH)
TRAIN_HINT = "materialize the `trained_models` asset (Dagster UI, or `cssci demo`)"


class ChampionNotFoundError(LookupError):
    """No registered model of that name, or no version carries the asked alias."""


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    model_id: str | None
    source: str | None  # where the version's model is stored (models:/<model_id>); MLflow allows none
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def select_champion(candidates: Iterable[tuple[str, float]], *, higher_is_better: bool = True) -> str:
    """The key (e.g. run id) with the best finite metric; ties go to the smallest key, whatever the order."""
    scored: dict[str, float] = {}
    for key, value in candidates:
        if key in scored:
            raise ValueError(f"candidate {key!r} is listed twice")
        scored[key] = float("nan") if value is None else float(value)
    finite = [(key, value) for key, value in scored.items() if math.isfinite(value)]
    if not finite:
        raise ValueError(f"no candidate has a finite metric value: {scored}")
    sign = -1.0 if higher_is_better else 1.0
    return min(finite, key=lambda item: (sign * item[1], item[0]))[0]


def register_model_version(
    config: TrackingConfig,
    model_name: str,
    *,
    run_id: str,
    model_uri: str,
    alias: str | None = None,
    chosen_by: tuple[str, float] | None = None,
    description: str | None = None,
    tags: Mapping[str, Any] | None = None,
    evidence: ModelEvidence | None = None,
) -> ModelVersionInfo:
    """Register the run's model as a version of `model_name` (idempotent per model_uri) and point `alias` at it.

    The version's tags copy the run's signature/classifier/mode/manifest_hash tags, plus `selection_metric`
    and `selection_value` from `chosen_by`. Its description is `description`, else a model card built from the run
    and `evidence` (`model_card.model_evidence`: patients per class, AUC intervals); with evidence the run also
    gets its ROC and calibration plots (`plots/`). Moving an alias leaves the earlier versions registered.
    """
    require_safe_name(model_name)
    client = config.client()
    _ensure_registered_model(client, model_name)
    version = _existing_version(client, model_name, run_id, model_uri)
    if version is None:
        version_tags = _version_tags(client, run_id, chosen_by, tags or {})
        if description is None:
            with scoped_mlflow_globals(config):  # no download progress bar
                features = selected_features(client, run_id)
            description = model_card(client.get_run(run_id), features, evidence, model_name)
        if evidence is not None:
            log_evaluation_plots(client, run_id, evidence)
        with scoped_mlflow_globals(config):  # the registry store resolves models:/<model_id> via the global URI
            version = client.create_model_version(
                model_name,
                source=model_uri,
                run_id=run_id,
                tags=version_tags,
                description=description,
                model_id=_model_id_of(model_uri),
            )
    if alias is not None:
        client.set_registered_model_alias(model_name, alias, version.version)
    return version_info(client.get_model_version(model_name, version.version))


def register_champion(
    config: TrackingConfig, model_name: str, *, run_id: str, model_uri: str, **kwargs: Any
) -> ModelVersionInfo:
    return register_model_version(config, model_name, run_id=run_id, model_uri=model_uri, alias=CHAMPION, **kwargs)


def register_challenger(
    config: TrackingConfig, model_name: str, *, run_id: str, model_uri: str, **kwargs: Any
) -> ModelVersionInfo:
    return register_model_version(config, model_name, run_id=run_id, model_uri=model_uri, alias=CHALLENGER, **kwargs)


def set_alias(config: TrackingConfig, model_name: str, version: str | int, alias: str) -> ModelVersionInfo:
    """Point `alias` at an existing version, e.g. promote the challenger: `set_alias(cfg, name, v, CHAMPION)`."""
    client = config.client()
    client.set_registered_model_alias(model_name, alias, str(version))
    return version_info(client.get_model_version(model_name, str(version)))


def champion_version(config: TrackingConfig, model_name: str, alias: str = CHAMPION) -> ModelVersionInfo:
    """The version `alias` points at, or a `ChampionNotFoundError` that says what exists and what to run."""
    client = config.client()
    try:
        registered = client.get_registered_model(model_name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_DOES_NOT_EXIST":
            raise
        raise ChampionNotFoundError(_missing_model_message(client, config, model_name)) from None
    if alias not in registered.aliases:
        versions = sorted((str(v.version) for v in client.search_model_versions(f"name = '{model_name}'")), key=int)
        aliases = {name: str(version) for name, version in registered.aliases.items()}
        raise ChampionNotFoundError(
            f"registered model {model_name!r} has version(s) {versions} but none carries the alias {alias!r} "
            f"(aliases: {aliases or 'none'}) in {config.registry_uri or config.tracking_uri}; "
            f"{TRAIN_HINT} to register a {alias}, or set it with set_alias()"
        )
    return version_info(client.get_model_version(model_name, str(registered.aliases[alias])))


def _ensure_registered_model(client: MlflowClient, model_name: str) -> None:
    try:
        client.create_registered_model(model_name)
    except MlflowException as error:
        if error.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def _existing_version(client: MlflowClient, model_name: str, run_id: str, model_uri: str) -> ModelVersion | None:
    versions = client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    same = sorted((version for version in versions if version.source == model_uri), key=lambda v: int(v.version))
    return same[0] if same else None


def _version_tags(
    client: MlflowClient, run_id: str, chosen_by: tuple[str, float] | None, extra: Mapping[str, Any]
) -> dict[str, str]:
    run_tags = client.get_run(run_id).data.tags
    tags = {key: run_tags[key] for key in VERSION_TAGS_FROM_RUN if key in run_tags}
    if chosen_by is not None:
        tags.update(selection_metric=str(chosen_by[0]), selection_value=repr(float(chosen_by[1])))
    tags.update(tag_values(extra))
    return tags


def _model_id_of(model_uri: str) -> str | None:
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri)
    return match.group(1) if match else None


def version_info(version: ModelVersion) -> ModelVersionInfo:
    return ModelVersionInfo(
        name=version.name,
        version=str(version.version),
        run_id=version.run_id,
        model_id=getattr(version, "model_id", None),
        source=version.source,
        aliases=tuple(version.aliases or ()),
        tags=dict(version.tags or {}),
    )


def _missing_model_message(client: MlflowClient, config: TrackingConfig, model_name: str) -> str:
    known = sorted(model.name for model in client.search_registered_models(max_results=50))
    listing = f"registered models there: {', '.join(known)}" if known else "no model is registered there yet"
    return (
        f"no registered model {model_name!r} in the MLflow registry {config.registry_uri or config.tracking_uri} "
        f"({listing}); {TRAIN_HINT} to train and register it"
    )
