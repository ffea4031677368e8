"""Loading a registered pipeline back: by alias (`load_champion`) or by any models:/ or runs:/ URI.

MLflow >= 3.17 refuses to deserialize any model unless `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`; it is set (by
`scoped_mlflow_globals`) only while loading from our own registry. A skops model is read here directly (`load_model`),
with the types its MLmodel trusts, as MLflow reads it: the same trust, placed in the same store.
"""

from __future__ import annotations

import tempfile
from collections import OrderedDict
from pathlib import Path
from typing import Any

import mlflow
import mlflow.artifacts
import mlflow.sklearn
import yaml

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


MLMODEL_FILE = "MLmodel"  # the model's description in its artifacts (flavors, signature)
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
    """The pipeline an MLflow sklearn-flavor model holds, against this config's tracking/registry (any models:/ or
    runs:/ URI), as `mlflow.sklearn.load_model` reads it, except that its MLmodel is parsed by libyaml: MLflow's
    `yaml.safe_load` (pure Python) took 0.35 s for the signature of a 2,700-column matrix on every load. A skops
    model is read with the types its MLmodel trusts (what MLflow does); any other format goes to MLflow's loader."""
    from cssci_platform.lib.model_tracking.skops_io import skops_io  # before MLflow imports skops.io: without torch

    with scoped_mlflow_globals(config), tempfile.TemporaryDirectory() as download:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=download))
        flavor = _sklearn_flavor(local / MLMODEL_FILE, model_uri)
        if flavor.get("serialization_format") != "skops" or flavor.get("code"):
            return mlflow.sklearn.load_model(str(local))  # pickle formats, bundled code: MLflow's own path
        return skops_io.load(local / flavor["pickled_model"], trusted=flavor.get("skops_trusted_types"))


def _sklearn_flavor(mlmodel: Path, model_uri: str) -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the pure-Python one where libyaml is missing
    with open(mlmodel, encoding="utf-8") as stream:
        flavors = (yaml.load(stream, Loader=loader) or {}).get("flavors", {})
    if "sklearn" not in flavors:
        raise ValueError(f"{model_uri} is not a scikit-learn model (its flavors: {sorted(flavors)})")
    return flavors["sklearn"]
