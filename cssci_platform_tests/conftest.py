"""Fixtures shared by every test folder."""

import os
from collections.abc import Iterator

import pytest

# What the command line sets for its processes (cli/home.configure_environment), here for the tests' own processes
# too: under `-n 2` torch's OpenMP threads spin while waiting and take the cores the other worker needs (two trainings
# beside a busy process ran 1.5x faster with passive waiting, benchmarks/openmp_wait.py).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

# What runner.configure_environment sets (or reads) for a command's home.
STORE_VARIABLES = ("CSSCI_HOME", "CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME",
                   "CSSCI_MLFLOW_URI", "CSSCI_EXPERIMENT_CONFIG", "CSSCI_LOG_DIR", "CSSCI_DEBUG", "CSSCI_PROFILE",
                   "CSSCI_CLUSTER_FILE", "CSSCI_DAGSTER_STORAGE_URL", "CSSCI_WAREHOUSE_SERVER",
                   "CSSCI_CELERY_BROKER")


@pytest.fixture(autouse=True)
def store_variables_restored() -> Iterator[None]:
    """Every test leaves the store variables as it found them: in-process CLI code sets them (`activate_study` sets
    CSSCI_EXPERIMENT_CONFIG), and a value left behind reached a later test's `cssci` subprocess on the same xdist
    worker, which then read another test's home (a CI failure of test_crash_safety after test_cli_hints)."""
    saved = {name: os.environ.get(name) for name in STORE_VARIABLES}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture
def restored_environment() -> Iterator[None]:
    """No store variable set while the test runs (in-process CLI code sets them); the environment restored after."""
    saved = dict(os.environ)
    for name in STORE_VARIABLES:
        os.environ.pop(name, None)
    yield
    os.environ.clear()
    os.environ.update(saved)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The `long_running` tests first (a stable sort: otherwise in file order). Under `-n 2` each worker starts on
    them and the short tests fill in around them, instead of one worker running a five-minute test alone at the end
    while the other is idle."""
    items.sort(key=lambda item: item.get_closest_marker("long_running") is None)
