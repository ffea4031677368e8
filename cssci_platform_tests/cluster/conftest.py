"""The cluster tests' servers (PostgreSQL, Redis, MLflow tracking server on 127.0.0.1) and their marker."""

import pytest

from cssci_platform_tests.cluster.servers import (  # noqa: F401  (fixtures used by name)
    mlflow_server,
    postgres_server,
    redis_url,
    shared_folder,
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "cluster: starts real servers on 127.0.0.1 (PostgreSQL, Redis, MLflow); skipped where their "
        "binaries are absent unless CSSCI_CLUSTER_TESTS=1, where absence fails")
