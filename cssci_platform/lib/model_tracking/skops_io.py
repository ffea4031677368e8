"""`skops.io` imported without importing torch: import this module before MLflow first saves or loads a model.

skops.io lists the scikit-learn types it trusts when it is imported, with `sklearn.utils.all_estimators()`. That
walks every scikit-learn package with `pkgutil.walk_packages`, which imports each package to find its subpackages,
`sklearn.externals.array_api_compat.torch` included, and that package imports torch: 4-8 s of a 5-10 s import under
the suite's load (benchmarks/RESULTS.md, session 9), paid by every process that logs or loads a model (the modeling
forkserver, report and scoring runs, `cssci predict`), although `all_estimators` then skips everything under
`sklearn.externals`. While skops.io is imported, that one package name is held by an empty module, so the walk does
not enter it; the list of trusted types is the same (tested), and the name is released afterwards, so torch and
scikit-learn's array-API support import normally later.
"""

import sys
import types

_TORCH_WRAPPER = "sklearn.externals.array_api_compat.torch"


def _import_skops_io() -> types.ModuleType:
    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    placeholder = None
    if _TORCH_WRAPPER not in sys.modules:
        placeholder = sys.modules[_TORCH_WRAPPER] = types.ModuleType(_TORCH_WRAPPER)
    try:
        import skops.io
    finally:
        if placeholder is not None and sys.modules.get(_TORCH_WRAPPER) is placeholder:
            del sys.modules[_TORCH_WRAPPER]
    return skops.io


skops_io = _import_skops_io()
