"""Loading a registered pipeline back: by alias (`load_champion`) or by any models:/ or runs:/ URI.

MLflow >= 3.17 refuses to deserialize any model unless `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`; it is set (by
`scoped_mlflow_globals`) only while loading from our own registry.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from typing import Any

import mlflow
import mlflow.sklearn

from cssci_platform.lib.model_tracking.registry import (
    CHAMPION,
    ModelVersionInfo,
    champion_version,
)
from cssci_platform.lib.model_tracking.store import (
    TrackingConfig,
    scoped_mlflow_globals,
)


def load_champion(config: TrackingConfig, model_name: str, alias: str = CHAMPION) -> tuple[Any, ModelVersionInfo]:
    """The sklearn pipeline that `models:/<model_name>@<alias>` names, and that version's info.

    The alias is resolved once and the model loaded by version number, so the pipeline and the returned
    version always agree even if the alias moves meanwhile.
    """
    version = champion_version(config, model_name, alias)
    return _loaded_version(config, version), version


LOADED_VERSIONS = 16  # champions kept loaded per process: a scoring batch loads each once, not once per patient
_loaded: OrderedDict[tuple, Any] = OrderedDict()


def _loaded_version(config: TrackingConfig, version: ModelVersionInfo) -> Any:
    """The pipeline of a registered version, loaded once per process. A version's model never changes once
    registered; the run and model ids in the key tell apart a version number reused by a store made anew."""
    key = (config.tracking_uri, config.registry_uri, version.uri, version.run_id, version.model_id)
    if key in _loaded:
        _loaded.move_to_end(key)
        return _loaded[key]
    pipeline = _loaded[key] = load_model(config, version.uri)
    if len(_loaded) > LOADED_VERSIONS:
        _loaded.popitem(last=False)
    return pipeline


def load_model(config: TrackingConfig, model_uri: str) -> Any:
    """`mlflow.sklearn.load_model` against this config's tracking/registry (any models:/ or runs:/ URI)."""
    import cssci_platform.lib.model_tracking.skops_io  # noqa: F401  (before MLflow imports skops.io: without torch)

    with scoped_mlflow_globals(config), tempfile.TemporaryDirectory() as download:
        return mlflow.sklearn.load_model(model_uri, dst_path=download)  # MLflow would leave its copy in /tmp
