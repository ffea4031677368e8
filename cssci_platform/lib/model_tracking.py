"""MLflow tracking and model registry: one MLflow run per fitted pipeline, champions as registry aliases.

Global state. MLflow keeps the tracking and registry URIs in process globals (mirrored into the
`MLFLOW_TRACKING_URI` / `MLFLOW_REGISTRY_URI` environment variables), and `log_model` / `load_model` read
them. Everything here goes through an explicit `MlflowClient(tracking_uri, registry_uri)`; the few calls
that can only use the globals run inside `_scoped_mlflow_globals`, which sets them under a process-wide lock
and restores them exactly afterwards (environment variables included). No MLflow "active run" is ever
started: the model is created with `create_logged_model` and attached to its run by id, so a caller's own
active run or `mlflow.set_experiment` cannot redirect it.

Model format. Pipelines are saved with skops (MLflow 3's default format). skops stores classes by reference
(module + name), so custom transformers must live in an importable module (`cssci_platform.lib...`), never
in `__main__`. The types skops does not trust by default are written into the model's MLmodel as trusted,
after checking that each comes from `TRUSTED_MODULE_PREFIXES`. MLflow >= 3.17 refuses to deserialize any
model unless `MLFLOW_ALLOW_PICKLE_DESERIALIZATION=true`; we set it only while loading from our own registry.
`serialization_format="cloudpickle"` is the escape hatch for objects skops cannot store.

Artifacts of a run: `selection/selected_features.json`, `selection/reports.json`, `splits/split.csv`, and
the caller's extra files. In MLflow 3 the model itself is a LoggedModel (`models:/<model_id>`) stored under
`<experiment artifact location>/models/<model_id>/`, linked to the run, not inside the run's artifacts.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote

import mlflow
import mlflow.sklearn
import pandas as pd
from mlflow import MlflowClient
from mlflow.entities import Metric, Param
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

CHAMPION = "champion"
CHALLENGER = "challenger"
TAG_SIGNATURE = "signature"
TAG_CLASSIFIER = "classifier"
TAG_MODE = "mode"
TAG_MANIFEST_HASH = "manifest_hash"
TAG_DAGSTER_RUN_ID = "dagster_run_id"
TAG_DAGSTER_ASSET = "dagster_asset"
TAG_DAGSTER_PARTITION = "dagster_partition"
VERSION_TAGS_FROM_RUN = (TAG_SIGNATURE, TAG_CLASSIFIER, TAG_MODE, TAG_MANIFEST_HASH)
TRUSTED_MODULE_PREFIXES = ("cssci_platform.", "sklearn.", "numpy.", "scipy.", "xgboost.", "lightgbm.", "collections.")
TRAIN_HINT = "materialize the `trained_models` asset (Dagster UI, or `cssci demo`)"
SerializationFormat = Literal["skops", "cloudpickle"]

_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]+")  # MLflow also allows ':' except on Windows; we never emit it
_MAX_KEY, _MAX_PARAM, _MAX_TAG, _BATCH = 250, 6000, 8000, 100
_BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy")
_MLFLOW_GLOBALS_LOCK = threading.RLock()
_STORE_OPEN_LOCK = threading.Lock()
_OPENED_STORES: set[str] = set()
_SCOPED_ENV = {  # set inside _scoped_mlflow_globals besides the URIs; restored afterwards
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # our own registry: see the module docstring
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no tqdm bars in Dagster logs and CLI output
}


class ChampionNotFoundError(LookupError):
    """No registered model of that name, or no version carries the asked alias."""


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs and models go. `artifact_root` defaults to `<folder of the sqlite file>/mlflow-artifacts`."""

    tracking_uri: str
    experiment_name: str
    artifact_root: str | None = None
    registry_uri: str | None = None

    def client(self) -> MlflowClient:
        with _first_open_of_sqlite_store(self.tracking_uri):
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri or self.tracking_uri)


@dataclass(frozen=True)
class LoggedRun:
    run_id: str
    experiment_id: str
    model_id: str
    model_uri: str  # models:/<model_id>, what register_model_version takes
    artifact_uri: str  # the run's own artifacts (features, split, extras)


@dataclass(frozen=True)
class ModelVersionInfo:
    name: str
    version: str
    run_id: str | None
    model_id: str | None
    source: str
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def sqlite_tracking_uri(db_path: str | Path) -> str:
    """`sqlite:////abs/path/mlflow.db` for a database file (created with its tables on first use)."""
    return f"sqlite:///{Path(db_path).expanduser().resolve()}"


def registered_model_name(experiment: str, signature: str, mode: str = "leakage_safe") -> str:
    """`cssci.<experiment>.<signature>.<mode>`, e.g. `cssci.demo.Rad_plus_DL_resnet34.leakage_safe`.

    MLflow only forbids '/' and ':' in names, but names also travel in `models:/<name>@<alias>` URIs and
    REST query strings, so each part keeps only letters, digits, '_' and '-' ('+' becomes '_plus_', any
    other run of characters one '_'); '.' only separates the parts, so a name parses back unambiguously.
    """
    return ".".join(["cssci", *(_name_part(part) for part in (experiment, signature, mode))])


def model_run_tags(
    *,
    signature: str,
    classifier: str,
    mode: str,
    manifest_hash: str | None = None,
    dagster_run_id: str | None = None,
    dagster_asset: str | None = None,
    dagster_partition: str | None = None,
) -> dict[str, str]:
    """Our standard run tags (None values left out)."""
    tags = {
        TAG_SIGNATURE: signature,
        TAG_CLASSIFIER: classifier,
        TAG_MODE: mode,
        TAG_MANIFEST_HASH: manifest_hash,
        TAG_DAGSTER_RUN_ID: dagster_run_id,
        TAG_DAGSTER_ASSET: dagster_asset,
        TAG_DAGSTER_PARTITION: dagster_partition,
    }
    return {key: value for key, value in tags.items() if value is not None}


def mlflow_key(name: str) -> str:
    """A metric/param/tag key MLflow accepts: '/'-separated segments of letters, digits, '_', '-', '.', ' '."""
    segments = [_UNSAFE_KEY_CHARS.sub("_", segment).strip() for segment in str(name).split("/")]
    key = "/".join(segment for segment in segments if segment not in ("", ".", ".."))
    if not key or len(key) > _MAX_KEY:
        raise ValueError(f"{name!r} cannot be an MLflow key: it must hold 1 to {_MAX_KEY} usable characters")
    return key


def get_or_create_experiment(config: TrackingConfig) -> str:
    """The experiment's id; a new experiment stores its artifacts under our artifact root, not ./mlruns."""
    client = config.client()
    existing = client.get_experiment_by_name(config.experiment_name)
    if existing is None:
        try:
            return client.create_experiment(config.experiment_name, artifact_location=_artifact_location(config))
        except MlflowException as error:  # another process created it in between
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = client.get_experiment_by_name(config.experiment_name)
    if existing.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {config.experiment_name!r} (id {existing.experiment_id}) is deleted: restore it "
            f"(`mlflow experiments restore --experiment-id {existing.experiment_id}`) or use another name"
        )
    return existing.experiment_id


def log_model_run(
    config: TrackingConfig,
    *,
    run_name: str,
    model: Any,
    input_example: pd.DataFrame,
    params: Mapping[str, Any] | None = None,
    metrics: Mapping[str, float] | None = None,
    tags: Mapping[str, Any] | None = None,
    selected_features: Sequence[str] = (),
    selection_reports: Sequence[Any] = (),
    split_table: Any = None,
    extra_artifacts: Mapping[str, str | Path] | None = None,
    serialization_format: SerializationFormat = "skops",
) -> LoggedRun:
    """One finished MLflow run for one fitted classifier pipeline, with the pipeline logged as its model.

    Metric and param names are made MLflow-safe with `mlflow_key`. `selection_reports` are `SelectionReport`s
    or dicts. `split_table` is a pandas or polars frame with at least patient_key and role. `extra_artifacts`
    maps a run-relative file name to its text (str) or to a file to copy (Path). The model's signature is
    inferred from `input_example` and `model.predict_proba`, and its pyfunc flavor predicts probabilities.
    Metrics are logged before the model, so MLflow 3 also shows them on the model's page.
    """
    _require_fitted_classifier(model, input_example)
    tag_values, param_values = _tag_values(tags or {}), _param_values(params or {}, len(selected_features))
    metric_values = _metric_values(metrics or {})
    _check_artifact_names(extra_artifacts or {})
    trusted_types = _skops_trusted_types(model) if serialization_format == "skops" else None
    client = config.client()
    experiment_id = get_or_create_experiment(config)
    run = client.create_run(experiment_id, run_name=run_name, tags=tag_values)
    run_id = run.info.run_id
    try:
        _log_values(client, run_id, param_values, metric_values)
        _log_selection(client, run_id, selected_features, selection_reports)
        if split_table is not None:
            client.log_text(run_id, _split_csv(split_table), "splits/split.csv")
        _log_extra_artifacts(client, run_id, extra_artifacts or {})
        logged_model = client.create_logged_model(
            experiment_id, name="model", source_run_id=run_id, tags=tag_values, params=param_values,
            model_type="sklearn",
        )
        model_info = _log_pipeline(config, logged_model.model_id, run_id, model, input_example, trusted_types)
    except BaseException:
        client.set_terminated(run_id, "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")
    return LoggedRun(run_id, experiment_id, model_info.model_id, model_info.model_uri, run.info.artifact_uri)


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
) -> ModelVersionInfo:
    """Register the run's model as a version of `model_name` (idempotent per model_uri) and point `alias` at it.

    The version's tags copy the run's signature/classifier/mode/manifest_hash tags, plus `selection_metric`
    and `selection_value` from `chosen_by`. Moving an alias leaves the earlier versions registered.
    """
    _require_safe_name(model_name)
    client = config.client()
    _ensure_registered_model(client, model_name)
    version = _existing_version(client, model_name, run_id, model_uri)
    if version is None:
        version_tags = _version_tags(client, run_id, chosen_by, tags or {})
        with _scoped_mlflow_globals(config):  # the registry store resolves models:/<model_id> via the global URI
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
    return _version_info(client.get_model_version(model_name, version.version))


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
    return _version_info(client.get_model_version(model_name, str(version)))


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
    return _version_info(client.get_model_version(model_name, str(registered.aliases[alias])))


def load_champion(config: TrackingConfig, model_name: str, alias: str = CHAMPION) -> tuple[Any, ModelVersionInfo]:
    """The sklearn pipeline that `models:/<model_name>@<alias>` names, and that version's info.

    The alias is resolved once and the model loaded by version number, so the pipeline and the returned
    version always agree even if the alias moves meanwhile.
    """
    version = champion_version(config, model_name, alias)
    return load_model(config, version.uri), version


def load_model(config: TrackingConfig, model_uri: str) -> Any:
    """`mlflow.sklearn.load_model` against this config's tracking/registry (any models:/ or runs:/ URI)."""
    with _scoped_mlflow_globals(config), tempfile.TemporaryDirectory() as download:
        return mlflow.sklearn.load_model(model_uri, dst_path=download)  # MLflow would leave its copy in /tmp


def log_metrics_to_version(
    config: TrackingConfig,
    model_name: str,
    version: str | int,
    metrics: Mapping[str, float],
    *,
    step: int,
    timestamp_ms: int | None = None,
    tags: Mapping[str, Any] | None = None,
) -> str:
    """Log later (e.g. prospective validation) metrics for a registered version; returns the run id used.

    Each version gets one validation run (`validate <name> v<version>`, tagged `registered_model_name`,
    `registered_model_version`, `source_run_id`), created on first use; every call adds points at `step`
    (e.g. the number of patients with a known outcome), so the run's metric history is the validation
    trajectory. The training run is never touched. Points are also linked to the version's LoggedModel, so
    MLflow 3 shows them on the model's page, and the version gets a `validation_run_id` tag.
    """
    client = config.client()
    info = _version_info(client.get_model_version(model_name, str(version)))
    run_id = _validation_run(config, client, info, tags or {})
    timestamp = timestamp_ms if timestamp_ms is not None else int(time.time() * 1000)
    entries = [
        Metric(key, value, timestamp, step, model_id=info.model_id) for key, value in _metric_values(metrics).items()
    ]
    for chunk in _chunks(entries, _BATCH):
        client.log_batch(run_id, metrics=chunk)
    client.set_model_version_tag(model_name, info.version, "validation_run_id", run_id)
    return run_id


# ---- run contents -------------------------------------------------------------------------------------------


def log_params(client: MlflowClient, run_id: str, params: Mapping[str, Any]) -> None:
    """Params of any platform run, as model runs log theirs: MLflow-safe keys, lists and dicts as JSON, in batches."""
    _log_values(client, run_id, _param_values(params), {})


def _log_values(client: MlflowClient, run_id: str, params: Mapping[str, str], metrics: Mapping[str, float]) -> None:
    timestamp = int(time.time() * 1000)
    for chunk in _chunks([Param(key, value) for key, value in params.items()], _BATCH):
        client.log_batch(run_id, params=chunk)
    for chunk in _chunks([Metric(key, value, timestamp, 0) for key, value in metrics.items()], _BATCH):
        client.log_batch(run_id, metrics=chunk)


def _log_selection(client: MlflowClient, run_id: str, features: Sequence[str], reports: Sequence[Any]) -> None:
    if features:
        names = [str(name) for name in features]
        client.log_text(run_id, json.dumps(names, indent=1), "selection/selected_features.json")
    if reports:
        dicts = [report.to_dict() if hasattr(report, "to_dict") else dict(report) for report in reports]
        client.log_text(run_id, json.dumps(_jsonable(dicts), indent=1), "selection/reports.json")


def _split_csv(split_table: Any) -> str:
    missing = {"patient_key", "role"} - set(split_table.columns)
    if missing:
        raise ValueError(f"split_table lacks column(s) {sorted(missing)}; it has {list(split_table.columns)}")
    if isinstance(split_table, pd.DataFrame):
        return split_table.to_csv(index=False)
    if hasattr(split_table, "write_csv"):  # polars
        return split_table.write_csv()
    raise TypeError(f"split_table must be a pandas or polars DataFrame, got {type(split_table).__name__}")


def _check_artifact_names(artifacts: Mapping[str, str | Path]) -> None:
    for name in artifacts:
        relative = Path(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.name:
            raise ValueError(f"extra artifact name {name!r} must be a relative file path inside the run")


def _log_extra_artifacts(client: MlflowClient, run_id: str, artifacts: Mapping[str, str | Path]) -> None:
    for name, content in artifacts.items():
        relative = Path(name)
        if isinstance(content, Path):
            with tempfile.TemporaryDirectory() as folder:
                copy = Path(folder) / relative.name
                shutil.copyfile(content, copy)
                client.log_artifact(run_id, str(copy), relative.parent.as_posix() if relative.parent.parts else None)
        else:
            client.log_text(run_id, str(content), relative.as_posix())


def _log_pipeline(
    config: TrackingConfig,
    model_id: str,
    run_id: str,
    model: Any,
    input_example: pd.DataFrame,
    skops_trusted_types: list[str] | None,
) -> Any:
    """`mlflow.sklearn.log_model` into an existing LoggedModel, so no active run or global experiment is read.

    `skops_trusted_types` None means cloudpickle.
    """
    serialization_format = "cloudpickle" if skops_trusted_types is None else "skops"
    signature = infer_signature(input_example, model.predict_proba(input_example))
    with _scoped_mlflow_globals(config):
        return mlflow.sklearn.log_model(
            model,
            name="model",
            model_id=model_id,
            run_id=run_id,
            signature=signature,
            input_example=input_example,
            serialization_format=serialization_format,
            skops_trusted_types=skops_trusted_types,
            pip_requirements=_pip_requirements(model, serialization_format, skops_trusted_types or []),
            pyfunc_predict_fn="predict_proba",
        )


def _require_fitted_classifier(model: Any, input_example: pd.DataFrame) -> None:
    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        raise ValueError("input_example must be a non-empty pandas DataFrame (a few training rows)")
    if not hasattr(model, "predict_proba"):
        raise TypeError(f"{type(model).__name__} has no predict_proba; the model signature is built from probabilities")


def _skops_trusted_types(model: Any) -> list[str]:
    """The types skops would refuse by default, provided each comes from a module we trust."""
    import skops.io  # first import takes ~2.5 s (it imports all of scikit-learn), so only when needed

    found = skops.io.get_untrusted_types(data=skops.io.dumps(model))
    foreign = [name for name in found if not name.startswith(TRUSTED_MODULE_PREFIXES)]
    if foreign:
        raise ValueError(
            f"the pipeline holds types from modules outside {TRUSTED_MODULE_PREFIXES}: {foreign}; move them into "
            "cssci_platform, or pass serialization_format='cloudpickle' if you trust them"
        )
    return found


def _pip_requirements(model: Any, serialization_format: str, trusted_types: Sequence[str]) -> list[str]:
    """Pinned requirements from the pipeline's own modules (MLflow's inference would take ~5 s a model)."""
    modules = {name.split(".")[0] for name in trusted_types}
    modules |= {type(part).__module__.split(".")[0] for part in _parts(model)}
    distributions = set(_BASE_REQUIREMENTS) | {serialization_format}
    for module in modules - {"builtins", "collections"}:
        distributions.update(_packages_distributions().get(module, []))
    return sorted(f"{name}=={metadata.version(name)}" for name in distributions)


def _parts(model: Any) -> list[Any]:
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    return [model, *(value for value in params.values() if hasattr(value, "fit"))]


@cache
def _packages_distributions() -> Mapping[str, list[str]]:
    return metadata.packages_distributions()


# ---- values -------------------------------------------------------------------------------------------------


def _param_values(params: Mapping[str, Any], n_selected_features: int = 0) -> dict[str, str]:
    values = {"n_selected_features": str(n_selected_features)} if n_selected_features else {}
    for key, value in _safe_keys(params, "param").items():
        text = json.dumps(_jsonable(value), sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
        if len(text) > _MAX_PARAM:
            raise ValueError(
                f"param {key!r} is {len(text)} characters (MLflow keeps {_MAX_PARAM}); log it as an artifact"
            )
        values[key] = text
    return values


def _metric_values(metrics: Mapping[str, float]) -> dict[str, float]:
    values = {}
    for key, value in _safe_keys(metrics, "metric").items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"metric {key!r} must be a real number, got {value!r}")
        values[key] = float(value)
    return values


def _tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
    values = {key: str(value) for key, value in _safe_keys(tags, "tag").items()}
    too_long = [key for key, value in values.items() if len(value) > _MAX_TAG]
    if too_long:
        raise ValueError(f"tag(s) {too_long} exceed MLflow's {_MAX_TAG} characters; log them as artifacts")
    return values


def _safe_keys(mapping: Mapping[str, Any], what: str) -> dict[str, Any]:
    safe: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for name, value in mapping.items():
        key = mlflow_key(name)
        if key in origin:
            raise ValueError(f"{what} names {origin[key]!r} and {name!r} both become {key!r} in MLflow; rename one")
        origin[key] = name
        safe[key] = value
    return safe


def _jsonable(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, tuples to lists, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(item) for item in value]
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy scalars and arrays
        return _jsonable(value.tolist()) if value.ndim else _jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _name_part(text: str) -> str:
    part = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text).replace("+", "_plus_"))
    part = re.sub(r"_{2,}", "_", part).strip("_-")
    if not part:
        raise ValueError(f"{text!r} leaves nothing usable in a registered model name")
    return part


def _require_safe_name(model_name: str) -> None:
    if not _SAFE_NAME.match(model_name):
        raise ValueError(
            f"registered model name {model_name!r} may hold only letters, digits, '_', '-' and '.'; "
            "build it with registered_model_name()"
        )


# ---- registry -----------------------------------------------------------------------------------------------


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
    tags.update(_tag_values(extra))
    return tags


def _model_id_of(model_uri: str) -> str | None:
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)", model_uri)
    return match.group(1) if match else None


def _version_info(version: ModelVersion) -> ModelVersionInfo:
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


def _validation_run(
    config: TrackingConfig, client: MlflowClient, info: ModelVersionInfo, extra_tags: Mapping[str, Any]
) -> str:
    experiment_id = get_or_create_experiment(config)
    filter_string = (
        f"tags.registered_model_name = '{info.name}' and tags.registered_model_version = '{info.version}' "
        "and tags.run_kind = 'validation'"
    )
    existing = client.search_runs([experiment_id], filter_string, order_by=["attributes.start_time ASC"], max_results=1)
    if existing:
        return existing[0].info.run_id
    tags = {
        "run_kind": "validation",
        "registered_model_name": info.name,
        "registered_model_version": info.version,
        "source_run_id": info.run_id or "",
        **_tag_values(extra_tags),
    }
    run = client.create_run(experiment_id, run_name=f"validate {info.name} v{info.version}", tags=tags)
    client.set_terminated(run.info.run_id, "FINISHED")  # a finished run still accepts new metric points
    return run.info.run_id


# ---- MLflow process globals ---------------------------------------------------------------------------------


@contextmanager
def _first_open_of_sqlite_store(tracking_uri: str) -> Iterator[None]:
    """Hold a file lock beside a sqlite store while this process opens it for the first time.

    `MlflowClient(...)` opens its tracking store at once, and the store creates and migrates the tables of
    an empty database without any lock, so processes that open a new database together (parallel Dagster
    steps) break each other's migrations. Under the lock the first one creates the tables (~1 s) and the
    others find them in place.
    """
    database = _sqlite_path(tracking_uri)
    if database is None or tracking_uri in _OPENED_STORES:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with _STORE_OPEN_LOCK, _exclusive_file_lock(database.with_name(database.name + ".init-lock")):
        yield
        _OPENED_STORES.add(tracking_uri)


STORE_LOCK_WAIT_SECONDS = 120.0  # creating MLflow's tables takes ~1 s; far longer means a stuck process holds it


@contextmanager
def _exclusive_file_lock(path: Path, wait_seconds: float = STORE_LOCK_WAIT_SECONDS) -> Iterator[None]:
    import fcntl  # POSIX only, like the Linux/macOS hosts this platform runs on

    with open(path, "a") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {wait_seconds:.0f} s for {path}, held by another process opening the same "
                                       "MLflow store; if none is running, delete that file") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = unquote(tracking_uri.removeprefix("sqlite:///").split("?")[0])
    return Path(database).expanduser().resolve() if database and database != ":memory:" else None


def _artifact_location(config: TrackingConfig) -> str | None:
    root = Path(config.artifact_root) if config.artifact_root else _default_artifact_root(config.tracking_uri)
    if root is None:
        return None  # a tracking server decides
    return (root.expanduser().resolve() / _name_part(config.experiment_name)).as_uri()


def _default_artifact_root(tracking_uri: str) -> Path | None:
    database = _sqlite_path(tracking_uri)
    return database.parent / "mlflow-artifacts" if database else None


@contextmanager
def _scoped_mlflow_globals(config: TrackingConfig) -> Iterator[None]:
    """Point MLflow's process-global URIs at `config` (and set `_SCOPED_ENV`), then restore all of it."""
    from mlflow.tracking._model_registry import utils as registry_state  # MLflow has no public getter for these
    from mlflow.tracking._tracking_service import utils as tracking_state

    with _MLFLOW_GLOBALS_LOCK:
        names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", *_SCOPED_ENV)
        saved_env = {name: os.environ.get(name) for name in names}
        saved_tracking_uri, saved_registry_uri = tracking_state._tracking_uri, registry_state._registry_uri
        try:
            mlflow.set_tracking_uri(config.tracking_uri)
            mlflow.set_registry_uri(config.registry_uri or config.tracking_uri)
            os.environ.update(_SCOPED_ENV)
            yield
        finally:
            mlflow.set_tracking_uri(saved_tracking_uri)
            registry_state._registry_uri = saved_registry_uri
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
