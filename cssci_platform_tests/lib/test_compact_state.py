"""A persisted chain stores its feature names compactly and loads back as the very same model (lib/compact_state)."""

from __future__ import annotations

import copy
import io
import json
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from cssci_platform.lib.compact_state import SEPARATOR, pack_names, unpack_names
from cssci_platform.lib.model_tracking.skops_io import skops_io
from cssci_platform.lib.modeling.chains import ChainSettings, build_pipeline
from cssci_platform.lib.modeling.signatures import Signature
from cssci_platform.lib.selection import pipeline_reports

COLUMNS = 600  # wide enough that a node per name dominates the file, as in a real Rad+DL chain (2,690)


def _rows(seed: int = 0, n: int = 45) -> tuple[pd.DataFrame, pd.Series]:
    rng = np.random.default_rng(seed)
    names = [f"rad__original__firstorder_f{i:03d}__lesion" for i in range(COLUMNS)]
    X = pd.DataFrame(rng.normal(size=(n, COLUMNS)), columns=names)
    X[names[:5]] = 1.0  # constant: dropped by the chain and named in its report
    X["center"] = np.repeat(["A", "B", "C"], n // 3)
    y = pd.Series((X[names[7]] + rng.normal(scale=0.5, size=n) > 0).astype(int))
    return X, y


@pytest.fixture(scope="module")
def fitted():
    X, y = _rows()
    columns = [c for c in X.columns if c != "center"]
    model = build_pipeline(Signature("rad"), columns, LogisticRegression(max_iter=2000), ChainSettings(lasso_cv=3))
    return model.fit(X, y), X


def _string_nodes(schema: object) -> int:
    if isinstance(schema, dict):
        return int(schema.get("__class__") == "str") + sum(_string_nodes(value) for value in schema.values())
    if isinstance(schema, list):
        return sum(_string_nodes(value) for value in schema)
    return 0


def _same(a: object, b: object) -> bool:
    """Equal values and equal container types, all the way down (numpy arrays: dtype and values; other objects:
    their attributes)."""
    if a is b:  # e.g. a module function such as ChannelPCA's channel_of, restored by reference
        return True
    if type(a) is not type(b):
        return False
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and bool(np.all((a == b) | pd.isna(a) & pd.isna(b)))
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, float) and np.isnan(a):
        return bool(np.isnan(b))
    if hasattr(a, "__dict__"):  # estimators, SelectionReport, ComBat's estimates, PCA
        return _same(vars(a), vars(b))
    return a == b


def test_a_persisted_chain_writes_its_feature_names_once_per_attribute(fitted):
    model, _ = fitted
    schema = json.loads(zipfile.ZipFile(io.BytesIO(skops_io.dumps(model))).read("schema.json"))
    # before: every name of every list, object array and report dict was a node (~9 per column here)
    assert _string_nodes(schema) < COLUMNS, _string_nodes(schema)


def test_skops_and_pickle_give_back_the_same_steps_and_predictions(fitted):
    model, X = fitted
    trusted = skops_io.get_untrusted_types(data=skops_io.dumps(model))
    for restored in (skops_io.loads(skops_io.dumps(model), trusted=trusted), pickle.loads(pickle.dumps(model)),
                     copy.deepcopy(model)):
        for (name, step), (_, back) in zip(model.steps, restored.steps, strict=True):
            assert _same(vars(step), vars(back)), name
        assert [r.to_dict() for r in pipeline_reports(model)] == [r.to_dict() for r in pipeline_reports(restored)]
        np.testing.assert_array_equal(model.predict_proba(X), restored.predict_proba(X))


def test_a_state_written_before_packing_loads_as_it_is(fitted):
    model, X = fitted
    step = model.named_steps["combat"]
    old = copy.copy(step.__dict__)  # what a model logged before this change hands to __setstate__
    fresh = type(step).__new__(type(step))
    fresh.__setstate__(old)
    assert _same(vars(step), vars(fresh))


def test_packing_keeps_kinds_and_leaves_what_it_cannot_pack():
    names = [f"f{i}" for i in range(20)]
    state = {
        "a_list": names,
        "a_tuple": tuple(names),
        "an_array": np.array(names, dtype=object),
        "statistic": {name: float(i) / 3 for i, name in enumerate(names)},
        "short": names[:3],
        "with_separator": [*names, f"x{SEPARATOR}y"],
        "numbers": list(range(20)),
        "mixed_dict": {**{name: 1.0 for name in names}, "n": 3},
    }
    packed = pack_names(state)
    assert set(packed["_packed_names"]) == {"a_list", "a_tuple", "an_array", "statistic"}
    assert packed["short"] is state["short"] and packed["with_separator"] is state["with_separator"]
    back = unpack_names(packed)
    assert list(back) == list(state)
    for key in state:
        assert _same(state[key], back[key]), key
    assert unpack_names({"plain": names}) == {"plain": names}
