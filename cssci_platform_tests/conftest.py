"""Fixtures shared by every test folder."""

import os
from collections.abc import Iterator

import pytest

# What runner.configure_environment sets (or reads) for a command's home.
STORE_VARIABLES = ("CSSCI_HOME", "CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME",
                   "CSSCI_MLFLOW_URI", "CSSCI_EXPERIMENT_CONFIG", "CSSCI_LOG_DIR", "CSSCI_DEBUG")


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """No store variable set while the test runs (in-process CLI code sets them); the environment restored after."""
    saved = dict(os.environ)
    for name in STORE_VARIABLES:
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)
