"""Package names loaded on first use (PEP 562): a package's `__getattr__` maps a name to the submodule defining it, so
importing the package, or a light part of it, does not import what its heavy submodules need (torch, MLflow)."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any


def lazy_attribute(package: str, where: Mapping[str, str], namespace: dict[str, Any], name: str) -> Any:
    """`name` of `package`, imported from its submodule `where[name]` and kept in the package's `namespace`."""
    if name not in where:
        raise AttributeError(f"module {package!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
    namespace[name] = value
    return value
