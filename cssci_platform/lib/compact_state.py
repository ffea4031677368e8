"""Fitted steps whose feature names are stored compactly when a model is persisted (skops, pickle, deepcopy).

A fitted chain carries each feature name many times: the columns it was given, the columns it kept, scikit-learn's
`feature_names_in_`, each step's `SelectionReport` (the kept names and a statistic per name). skops writes every
element of a list, tuple, dict or object array as its own JSON node (~400 bytes each, written by Python's JSON
encoder with indentation), so a Rad+DL chain of 2,690 columns held 34,000 name nodes: a 14 MB model that took
0.6 s to write, written twice per logged model (once to find the types it must trust, once by MLflow) and read back
once more (benchmarks/RESULTS.md, "Issue 18, session 10": `benchmarks/model_logging.py`).

`CompactNames.__getstate__` stores each long attribute of names as one string (the names joined by a separator no
name contains) and a name -> float dict as that string plus one float array; `__setstate__` restores the very
same values and container types, so nothing that uses a loaded model sees a difference, and a state written before
this (no packed entry) loads as it is.
"""

from __future__ import annotations

from typing import Any

import numpy as np

PACKED_KEY = "_packed_names"  # the state's entry listing what was packed: {attribute: [kind, joined names]}
SEPARATOR = "\x1f"  # ASCII unit separator: never in a feature name (a name holding it is left unpacked)
MIN_PACKED = 16  # shorter collections cost less as they are


def pack_names(state: dict[str, Any]) -> dict[str, Any]:
    """A copy of `state` with its long collections of names packed (see the module docstring)."""
    packed: dict[str, list[str]] = {}
    result = dict(state)
    for key, value in state.items():
        entry = _packed(value)
        if entry is not None:
            kind, names, values = entry
            packed[key] = [kind, SEPARATOR.join(names)]
            result[key] = values
    if packed:
        result[PACKED_KEY] = packed
    return result


def unpack_names(state: dict[str, Any]) -> dict[str, Any]:
    """The state as it was before `pack_names` (a state without packed entries is returned as it is)."""
    packed = state.get(PACKED_KEY)
    if not packed:
        return state
    result = {key: value for key, value in state.items() if key != PACKED_KEY}
    for key, (kind, joined) in packed.items():
        names = joined.split(SEPARATOR)
        if kind == "list":
            result[key] = names
        elif kind == "tuple":
            result[key] = tuple(names)
        elif kind == "object_array":
            result[key] = np.array(names, dtype=object)
        elif kind == "float_dict":
            result[key] = dict(zip(names, np.asarray(result[key], dtype=float).tolist(), strict=True))
        else:
            raise ValueError(f"unknown packed kind {kind!r} of attribute {key!r}; written by a newer cssci_platform?")
    return result


def _packed(value: Any) -> tuple[str, list[str], Any] | None:
    """(kind, names, what stays in the state) for a collection worth packing, else None."""
    if isinstance(value, (list, tuple)) and len(value) >= MIN_PACKED and _all_names(value):
        return ("list" if type(value) is list else "tuple"), list(value), None
    if isinstance(value, np.ndarray) and value.dtype == object and value.ndim == 1 and len(value) >= MIN_PACKED \
            and _all_names(value):
        return "object_array", [str(name) for name in value], None
    if type(value) is dict and len(value) >= MIN_PACKED and _all_names(value.keys()) \
            and all(type(number) is float or isinstance(number, np.floating) for number in value.values()):
        return "float_dict", list(value), np.fromiter(value.values(), dtype=float, count=len(value))
    return None


def _all_names(values: Any) -> bool:
    return all(type(name) is str and SEPARATOR not in name for name in values)


class CompactNames:
    """Mixin (before the scikit-learn base classes): the instance's state with its names packed."""

    def __getstate__(self) -> dict[str, Any]:
        parent = getattr(super(), "__getstate__", None)
        state = parent() if parent is not None else self.__dict__
        return pack_names(dict(state or {}))

    def __setstate__(self, state: dict[str, Any]) -> None:
        state = unpack_names(state)
        parent = getattr(super(), "__setstate__", None)
        if parent is not None:
            parent(state)
        else:  # a plain object or a frozen dataclass: as pickle restores one without __setstate__
            self.__dict__.update(state)
