"""How a fitted pipeline is stored: skops (MLflow 3's default format) with the types it must trust, pinned pip
requirements, and a pyfunc flavor that predicts probabilities.

skops stores classes by reference (module + name), so custom transformers must live in an importable module
(`cssci_platform.lib...`), never in `__main__`. The types skops does not trust by default are written into the
model's MLmodel as trusted, after checking that each comes from `TRUSTED_MODULE_PREFIXES`.
`serialization_format="cloudpickle"` is the escape hatch for objects skops cannot store.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from functools import cache
from importlib import metadata
from typing import Any, Literal

import mlflow
import mlflow.sklearn
import numpy as np
import pandas as pd
import yaml
from mlflow.models import Model, ModelSignature, infer_signature
from mlflow.models.model import MLMODEL_FILE_NAME
from mlflow.models.utils import (
    INPUT_EXAMPLE_PATH,
    SERVING_INPUT_PATH,
    _Example,  # MLflow's own conversion of an input example, kept per example
)

from cssci_platform.lib.model_tracking.store import (
    TrackingConfig,
    scoped_mlflow_globals,
)

TRUSTED_MODULE_PREFIXES = ("cssci_platform.", "sklearn.", "numpy.", "scipy.", "xgboost.", "lightgbm.", "collections.")
SerializationFormat = Literal["skops", "cloudpickle"]
_BASE_REQUIREMENTS = ("mlflow", "scikit-learn", "numpy", "pandas", "scipy")


def log_pipeline(
    config: TrackingConfig,
    model_id: str,
    run_id: str,
    model: Any,
    input_example: pd.DataFrame,
    trusted_types: list[str] | None,
) -> Any:
    """`mlflow.sklearn.log_model` into an existing LoggedModel, so no active run or global experiment is read.

    `trusted_types` None means cloudpickle.
    """
    serialization_format = "cloudpickle" if trusted_types is None else "skops"
    signature = model_signature(input_example, model.predict_proba(input_example))
    with scoped_mlflow_globals(config):
        return _ModelWrittenWithLibyaml.log(
            artifact_path=None,
            name="model",
            flavor=_SklearnWithoutServingCheck,
            sk_model=model,
            validate_serving_input=False,
            model_id=model_id,
            run_id=run_id,
            signature=signature,
            input_example=input_example,
            serialization_format=serialization_format,
            skops_trusted_types=trusted_types,
            pip_requirements=_pip_requirements(model, serialization_format, trusted_types or []),
            pyfunc_predict_fn="predict_proba",
        )


KEPT_PER_PROCESS = 8  # signatures and converted examples remembered: the models of one fit unit share their input
_signatures: OrderedDict[tuple, ModelSignature] = OrderedDict()
_examples: OrderedDict[bytes, _Example] = OrderedDict()


def _kept(cache: OrderedDict, key: Any, build: Callable[[], Any]) -> Any:
    """`cache[key]`, built once and kept among the KEPT_PER_PROCESS most recently used."""
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    value = cache[key] = build()
    if len(cache) > KEPT_PER_PROCESS:
        cache.popitem(last=False)
    return value


def model_signature(input_example: pd.DataFrame, probabilities: np.ndarray) -> ModelSignature:
    """MLflow's `infer_signature` of the input example and the predicted probabilities, inferred once per input
    columns, their types, where values are missing, the value types of text columns and the probabilities' shape:
    what the inference reads. With a wide feature matrix (30,000 columns) it took ~2 s of each model's logging, and
    every classifier of a fit unit logs the same input."""
    key = _signature_key(input_example, probabilities)
    return _kept(_signatures, key, lambda: infer_signature(input_example, probabilities))


def _signature_key(example: pd.DataFrame, probabilities: np.ndarray) -> tuple:
    text_value_types = tuple(
        (position, tuple(sorted({type(value).__name__ for value in example.iloc[:, position]})))
        for position, dtype in enumerate(example.dtypes) if not pd.api.types.is_numeric_dtype(dtype))
    return (tuple(map(str, example.columns)), tuple(map(str, example.dtypes)), tuple(example.isna().any().tolist()),
            text_value_types, probabilities.shape[1:], str(probabilities.dtype))


class _ModelWrittenWithLibyaml(Model):
    """An MLflow Model whose MLmodel file is written by libyaml's emitter (PyYAML's C binding) instead of PyYAML's
    pure-Python one that `Model.to_yaml` uses: the same text (tested), but the signature of a wide feature matrix
    is one long JSON string that the Python emitter scans character by character (0.2 s per write at 3,000
    columns, 0.9 s at 30,000, three writes per model)."""

    def to_yaml(self, stream: Any = None) -> str:
        return yaml.dump(self.to_dict(), stream=stream, Dumper=_SAFE_DUMPER, default_flow_style=False)


_SAFE_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # the pure-Python one where libyaml is missing


class _SklearnWithoutServingCheck:
    """mlflow.sklearn as the flavor `Model.log` saves with, minus MLflow's serving-input check: `log_model` re-loads
    the just-saved model and predicts the input example through the scoring server's JSON parser (about 40 % of a
    model's logging time with a wide feature matrix; its failure is only a warning). Model, signature, input example
    and requirements are stored exactly as `mlflow.sklearn.log_model` stores them."""

    __name__ = "mlflow.sklearn"

    @staticmethod
    def save_model(**kwargs: Any) -> None:
        kwargs.pop("validate_serving_input", None)
        input_example = kwargs.pop("input_example", None)
        if input_example is not None and kwargs.get("signature") is None:
            raise ValueError("save the model with its signature: mlflow.sklearn would infer it from the example")
        mlflow.sklearn.save_model(**kwargs)
        if input_example is not None:
            _add_example(kwargs["mlflow_model"], converted_example(input_example), kwargs["path"])


def converted_example(input_example: pd.DataFrame) -> _Example:
    """MLflow's `_Example` of an input example, converted once per example content (pickled frame: values, columns,
    index and types): pandas' `to_dict` behind it reads a wide frame column by column (~1 s per model at 15,909
    columns), and every classifier of a fit unit logs the same example."""
    key = hashlib.sha256(pickle.dumps(input_example, protocol=pickle.HIGHEST_PROTOCOL)).digest()
    return _kept(_examples, key, lambda: _Example(input_example))


def _add_example(mlflow_model: Model, example: _Example, path: str) -> None:
    """What `mlflow.sklearn.save_model` does with an input example, after the fact: the example's files, their
    entry in MLmodel, and their bytes in the model's size (MLflow counts them before writing the requirements)."""
    example.save(path)
    mlflow_model.saved_input_example_info = dict(example.info)
    if mlflow_model.model_size_bytes is not None:
        written = {example.info[key] for key in (INPUT_EXAMPLE_PATH, SERVING_INPUT_PATH) if key in example.info}
        mlflow_model.model_size_bytes += sum(os.path.getsize(os.path.join(path, name)) for name in written)
    mlflow_model.save(os.path.join(path, MLMODEL_FILE_NAME))


def require_fitted_classifier(model: Any, input_example: pd.DataFrame) -> None:
    if not isinstance(input_example, pd.DataFrame) or input_example.empty:
        raise ValueError("input_example must be a non-empty pandas DataFrame (a few training rows)")
    if not hasattr(model, "predict_proba"):
        raise TypeError(f"{type(model).__name__} has no predict_proba; the model signature is built from probabilities")


def skops_trusted_types(model: Any) -> list[str]:
    """The types skops would refuse by default, provided each comes from a module we trust."""
    from cssci_platform.lib.model_tracking.skops_io import skops_io  # imports all of scikit-learn: only when needed

    found = skops_io.get_untrusted_types(data=skops_io.dumps(model))
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
        distributions.update(packages_distributions().get(module, []))
    return sorted(f"{name}=={metadata.version(name)}" for name in distributions)


def _parts(model: Any) -> list[Any]:
    params = model.get_params(deep=True) if hasattr(model, "get_params") else {}
    return [model, *(value for value in params.values() if hasattr(value, "fit"))]


@cache
def packages_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> distributions, from the installed packages' metadata (a scan of ~0.7 s; once per
    process, or once before forking: `step_preload`)."""
    return metadata.packages_distributions()
