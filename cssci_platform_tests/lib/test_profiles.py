"""The profile switch (`CSSCI_PROFILE`, `CSSCI_CLUSTER_FILE`): what each profile selects, and the precise errors of
a wrong setting or cluster file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from cssci_platform.cli.home import configure_environment
from cssci_platform.lib.profiles import (
    CLUSTER_FILE_ENV,
    DAGSTER_STORAGE_ENV,
    PROFILE_ENV,
    WAREHOUSE_SERVER_ENV,
    ProfileError,
    active_profile,
)
from cssci_platform.lib.warehouse import warehouse_server

SERVERS = {"dagster_storage": "postgresql://cssci:secret@127.0.0.1:5433/dagster",
           "warehouse": "postgresql://cssci:secret@127.0.0.1:5433/warehouse",
           "mlflow_tracking_uri": "http://127.0.0.1:5055/"}


def cluster_file(folder: Path, document: object = SERVERS) -> Path:
    path = folder / "cluster.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


@pytest.fixture
def no_profile(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (PROFILE_ENV, CLUSTER_FILE_ENV, DAGSTER_STORAGE_ENV, WAREHOUSE_SERVER_ENV, "CSSCI_MLFLOW_URI"):
        monkeypatch.delenv(name, raising=False)


def test_local_is_the_default_and_needs_no_file() -> None:
    assert active_profile({}).name == "local" and active_profile({}).servers is None
    assert active_profile({PROFILE_ENV: ""}).name == "local"


def test_the_cluster_profile_reads_its_servers_from_the_cluster_file(tmp_path: Path) -> None:
    path = cluster_file(tmp_path)
    profile = active_profile({PROFILE_ENV: "cluster", CLUSTER_FILE_ENV: str(path)})
    assert profile.name == "cluster" and profile.source == path.resolve() and profile.servers is not None
    assert profile.servers.dagster_storage == SERVERS["dagster_storage"]
    assert profile.servers.warehouse == SERVERS["warehouse"]
    assert profile.servers.mlflow_tracking_uri == "http://127.0.0.1:5055"
    assert profile.servers.celery_broker is None  # optional: without it steps run where their run runs
    assert profile.servers.celery_visibility_timeout_s == 3600  # Celery's default for Redis


@pytest.mark.parametrize(("environment", "document", "expected"), [
    ({PROFILE_ENV: "clustr"}, None, "CSSCI_PROFILE='clustr' is not a profile; choose one of local, cluster"),
    ({PROFILE_ENV: "cluster"}, None, "CSSCI_PROFILE=cluster needs CSSCI_CLUSTER_FILE"),
    ({PROFILE_ENV: "cluster", CLUSTER_FILE_ENV: "/nonexistent/cluster.yaml"}, None,
     "CSSCI_CLUSTER_FILE: /nonexistent/cluster.yaml is not a file"),
    ({PROFILE_ENV: "cluster"}, ["a list"],
     "must hold a mapping with the keys dagster_storage, warehouse, mlflow_tracking_uri, celery_broker, "
     "celery_visibility_timeout_s"),
    ({PROFILE_ENV: "cluster"}, {**SERVERS, "brokr": "redis://x"},
     "brokr: unknown key; allowed: dagster_storage, warehouse, mlflow_tracking_uri, celery_broker, "
     "celery_visibility_timeout_s"),
    ({PROFILE_ENV: "cluster"}, {"dagster_storage": SERVERS["dagster_storage"]},
     "mlflow_tracking_uri: required key is missing"),
    ({PROFILE_ENV: "cluster"}, {**SERVERS, "dagster_storage": "sqlite:///dagster.db"},
     "dagster_storage: must be a PostgreSQL URL with host and database"),
    ({PROFILE_ENV: "cluster"}, {key: value for key, value in SERVERS.items() if key != "warehouse"},
     "warehouse: required key is missing"),
    ({PROFILE_ENV: "cluster"}, {**SERVERS, "warehouse": "/shared/warehouse.duckdb"},
     "warehouse: must be a PostgreSQL URL with host and database"),
    ({PROFILE_ENV: "cluster"}, {**SERVERS, "mlflow_tracking_uri": "sqlite:///mlflow.db"},
     "mlflow_tracking_uri: must be the http(s) URL of an MLflow tracking server"),
    ({PROFILE_ENV: "cluster"}, {**SERVERS, "celery_visibility_timeout_s": 5},
     "celery_visibility_timeout_s: must be at least 10 seconds"),
    ({PROFILE_ENV: "cluster"}, {**SERVERS, "celery_broker": "amqp://guest@127.0.0.1//"},
     "celery_broker: must be a Redis URL"),
])
def test_a_wrong_setting_or_cluster_file_says_what_and_where(tmp_path: Path, environment: dict, document: object,
                                                             expected: str) -> None:
    if document is not None:
        environment = {**environment, CLUSTER_FILE_ENV: str(cluster_file(tmp_path, document))}
    with pytest.raises(ProfileError) as error:
        active_profile(environment)
    assert expected in str(error.value)
    if document is not None:
        assert str(tmp_path / "cluster.yaml") in str(error.value)


def test_a_cluster_home_stores_its_runs_in_postgres_and_logs_to_the_tracking_server(
        tmp_path: Path, no_profile: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "cluster")
    monkeypatch.setenv(CLUSTER_FILE_ENV, str(cluster_file(tmp_path)))
    values = configure_environment(tmp_path / "home")
    assert values["CSSCI_MLFLOW_URI"] == "http://127.0.0.1:5055"
    assert values[DAGSTER_STORAGE_ENV] == "postgresql+psycopg2://cssci:secret@127.0.0.1:5433/dagster"
    assert values[WAREHOUSE_SERVER_ENV] == os.environ[WAREHOUSE_SERVER_ENV] == SERVERS["warehouse"]
    instance = yaml.safe_load((tmp_path / "home" / "dagster_home" / "dagster.yaml").read_text(encoding="utf-8"))
    assert instance["storage"] == {"postgres": {"postgres_url": {"env": DAGSTER_STORAGE_ENV}}}
    assert "secret" not in (tmp_path / "home" / "dagster_home" / "dagster.yaml").read_text(encoding="utf-8")
    assert instance["run_monitoring"]["enabled"] is True  # the rest of the instance settings are kept


def test_a_local_home_keeps_dagsters_default_storage_and_its_own_mlflow_store(
        tmp_path: Path, no_profile: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(WAREHOUSE_SERVER_ENV, SERVERS["warehouse"])  # left over from elsewhere: the home decides
    values = configure_environment(tmp_path / "home")
    assert WAREHOUSE_SERVER_ENV not in values and WAREHOUSE_SERVER_ENV not in os.environ
    assert warehouse_server() is None  # the local home's rows go to its own DuckDB file
    assert values["CSSCI_MLFLOW_URI"] == f"sqlite:///{(tmp_path / 'home').resolve() / 'mlflow.db'}"
    instance = yaml.safe_load((tmp_path / "home" / "dagster_home" / "dagster.yaml").read_text(encoding="utf-8"))
    assert "storage" not in instance


def test_a_home_stays_in_the_profile_it_was_set_up_with(tmp_path: Path, no_profile: None,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    configure_environment(tmp_path / "home")
    monkeypatch.setenv(PROFILE_ENV, "cluster")
    monkeypatch.setenv(CLUSTER_FILE_ENV, str(cluster_file(tmp_path)))
    with pytest.raises(ProfileError, match="was set up with the local profile .* set CSSCI_PROFILE=local, or use "
                                           "another home"):
        configure_environment(tmp_path / "home")


def test_a_cluster_home_refuses_an_mlflow_store_outside_the_cluster(tmp_path: Path, no_profile: None,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "cluster")
    monkeypatch.setenv(CLUSTER_FILE_ENV, str(cluster_file(tmp_path)))
    monkeypatch.setenv("CSSCI_MLFLOW_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    with pytest.raises(ProfileError, match="unset CSSCI_MLFLOW_URI or change mlflow_tracking_uri"):
        configure_environment(tmp_path / "home")
