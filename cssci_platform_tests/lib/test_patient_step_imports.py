"""What a patient feature step loads at import (issue 18, memory): a patient worker should not carry torch, MLflow or
scikit-learn (about 1.3 GB of its 1.6 GB peak, benchmarks/patient_memory.py) for work that needs none of them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("torch", "torchvision", "mlflow", "sklearn", "shap", "matplotlib")


def heavy_modules_after_importing(*modules: str) -> list[str]:
    code = ("import importlib, sys\n"
            f"for name in {list(modules)!r}: importlib.import_module(name)\n"
            f"print(','.join(m for m in {list(HEAVY)!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return [m for m in done.stdout.strip().split(",") if m]


def test_the_feature_step_libraries_import_no_torch_mlflow_or_sklearn() -> None:
    assert heavy_modules_after_importing(
        "cssci_platform.lib.preprocessing", "cssci_platform.lib.feature_extraction", "cssci_platform.lib.radiomics",
        "cssci_platform.lib.feature_store", "cssci_platform.resources.image_store") == []


NETWORK_AND_TRACKING = ("torch", "torchvision", "mlflow", "shap", "matplotlib")


def test_the_feature_step_assets_import_no_torch_mlflow_shap_or_matplotlib() -> None:
    """scikit-learn stays (the study config's split and harmonization sections import it; ~100 MB)."""
    loaded = heavy_modules_after_importing("cssci_platform.defs.features.assets", "cssci_platform.defs.ingest.assets",
                                           "cssci_platform.defs.embeddings.assets", "cssci_platform.resources.study")
    assert [m for m in loaded if m in NETWORK_AND_TRACKING] == []


def test_the_whole_definitions_import_no_torch_mlflow_shap_or_matplotlib() -> None:
    """What every run process loads (a patient run, a fit step): the networks, MLflow and the report's libraries
    load in the steps that use them."""
    code = ("import sys\nfrom cssci_platform.definitions import defs\ndefs()\n"
            f"print(','.join(m for m in {list(NETWORK_AND_TRACKING)!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == ""
