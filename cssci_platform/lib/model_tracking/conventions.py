"""Our MLflow conventions: registered model names, the standard run tags, and the keys and values MLflow accepts
(metric/param/tag keys made safe, params as JSON, metrics as real numbers, everything in batches)."""

from __future__ import annotations

import json
import math
import numbers
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

TAG_SIGNATURE = "signature"
TAG_CLASSIFIER = "classifier"
TAG_MODE = "mode"
TAG_MANIFEST_HASH = "manifest_hash"
TAG_DAGSTER_RUN_ID = "dagster_run_id"
TAG_DAGSTER_ASSET = "dagster_asset"
TAG_DAGSTER_PARTITION = "dagster_partition"
TAG_STUDY_RUN = "cssci.study_run"  # the MLflow study run of a `cssci run` (Dagster run tag of the same name)
TAG_PARENT_RUN = "mlflow.parentRunId"  # MLflow's own tag: the UI nests a run under this one
_SAFE_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_UNSAFE_KEY_CHARS = re.compile(r"[^A-Za-z0-9_.\- ]+")  # MLflow also allows ':' except on Windows; we never emit it
_MAX_KEY, _MAX_PARAM, _MAX_TAG, _BATCH = 250, 6000, 8000, 100


def registered_model_name(experiment: str, signature: str, mode: str = "leakage_safe") -> str:
    """`cssci.<experiment>.<signature>.<mode>`, e.g. `cssci.demo.Rad_plus_DL_resnet34.leakage_safe`.

    MLflow only forbids '/' and ':' in names, but names also travel in `models:/<name>@<alias>` URIs and
    REST query strings, so each part keeps only letters, digits, '_' and '-' ('+' becomes '_plus_', any
    other run of characters one '_'); '.' only separates the parts, so a name parses back unambiguously.
    """
    return ".".join(["cssci", *(name_part(part) for part in (experiment, signature, mode))])


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


def in_study_run(tags: Mapping[str, Any], study_run: str | None = None) -> dict[str, Any]:
    """`tags` of a run that belongs to a study run (`study_run`, else the one `tags` name as `cssci.study_run`):
    both `cssci.study_run` and `mlflow.parentRunId` set to it, so MLflow nests the run under its study run.
    Tags of a run outside any study come back unchanged."""
    study = study_run or tags.get(TAG_STUDY_RUN)
    if not study:
        return dict(tags)
    return {**tags, TAG_STUDY_RUN: str(study), TAG_PARENT_RUN: str(study)}


def mlflow_key(name: str) -> str:
    """A metric/param/tag key MLflow accepts: '/'-separated segments of letters, digits, '_', '-', '.', ' '."""
    segments = [_UNSAFE_KEY_CHARS.sub("_", segment).strip() for segment in str(name).split("/")]
    key = "/".join(segment for segment in segments if segment not in ("", ".", ".."))
    if not key or len(key) > _MAX_KEY:
        raise ValueError(f"{name!r} cannot be an MLflow key: it must hold 1 to {_MAX_KEY} usable characters")
    return key


def param_values(params: Mapping[str, Any], n_selected_features: int = 0) -> dict[str, str]:
    values = {"n_selected_features": str(n_selected_features)} if n_selected_features else {}
    for key, value in _safe_keys(params, "param").items():
        text = json.dumps(jsonable(value), sort_keys=True) if isinstance(value, (dict, list, tuple)) else str(value)
        if len(text) > _MAX_PARAM:
            raise ValueError(
                f"param {key!r} is {len(text)} characters (MLflow keeps {_MAX_PARAM}); log it as an artifact"
            )
        values[key] = text
    return values


def metric_values(metrics: Mapping[str, float]) -> dict[str, float]:
    values = {}
    for key, value in _safe_keys(metrics, "metric").items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise TypeError(f"metric {key!r} must be a real number, got {value!r}")
        values[key] = float(value)
    return values


def tag_values(tags: Mapping[str, Any]) -> dict[str, str]:
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


def jsonable(value: Any) -> Any:
    """JSON-ready copy: numpy scalars to Python, tuples to lists, NaN/inf to None."""
    if isinstance(value, Mapping):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    if hasattr(value, "tolist") and hasattr(value, "ndim"):  # numpy scalars and arrays
        return jsonable(value.tolist()) if value.ndim else jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def in_batches(items: Sequence[Any], size: int = _BATCH) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def name_part(text: str) -> str:
    part = re.sub(r"[^A-Za-z0-9_-]+", "_", str(text).replace("+", "_plus_"))
    part = re.sub(r"_{2,}", "_", part).strip("_-")
    if not part:
        raise ValueError(f"{text!r} leaves nothing usable in a registered model name")
    return part


def require_safe_name(model_name: str) -> None:
    if not _SAFE_NAME.match(model_name):
        raise ValueError(
            f"registered model name {model_name!r} may hold only letters, digits, '_', '-' and '.'; "
            "build it with registered_model_name()"
        )
