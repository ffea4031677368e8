"""The cluster servers start on 127.0.0.1, answer, and are stopped and deleted afterwards, also after a failure."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from cssci_platform_tests.cluster.servers import (
    CLUSTER_FLAG,
    MlflowServer,
    PostgresServer,
    find_binary,
    port_open,
    redis_ping,
    running_postgres,
    running_redis,
)

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]


def listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket listening on `port` (from /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


def test_postgres_answers_on_loopback_only(postgres_server: PostgresServer) -> None:
    import psycopg

    with psycopg.connect(postgres_server.conninfo()) as connection:
        version = connection.execute("SHOW server_version").fetchone()
        listen = connection.execute("SHOW listen_addresses").fetchone()
    assert version is not None and version[0]
    assert listen == ("127.0.0.1",)
    assert listening_addresses(postgres_server.port) == {"0100007F"}  # 127.0.0.1, nothing else


def test_redis_answers_on_loopback_only(redis_url: str) -> None:
    port = int(redis_url.rsplit(":", 1)[1].split("/")[0])
    assert redis_ping(port)
    assert listening_addresses(port) == {"0100007F"}


def test_servers_are_stopped_and_deleted_even_when_the_test_fails() -> None:
    with pytest.raises(ZeroDivisionError), running_postgres() as server:
        port, data_dir = server.port, server.data_dir
        assert port_open(port) and data_dir.is_dir()
        raise ZeroDivisionError  # a failing test body
    assert not data_dir.parent.exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()

    with pytest.raises(ZeroDivisionError), running_redis() as url:
        redis_port = int(url.rsplit(":", 1)[1].split("/")[0])
        assert redis_ping(redis_port)
        raise ZeroDivisionError
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", redis_port), timeout=1).close()


def test_mlflow_server_tracks_in_postgres_and_proxies_artifacts_into_the_shared_folder(
    mlflow_server: MlflowServer, tmp_path: Path
) -> None:
    from cssci_platform.lib.model_tracking.store import TrackingConfig, scoped_mlflow_globals

    config = TrackingConfig(tracking_uri=mlflow_server.url, experiment_name="cluster_smoke")
    client = config.client()
    experiment_id = client.create_experiment("cluster_smoke")
    assert client.get_experiment(experiment_id).artifact_location.startswith("mlflow-artifacts:")
    run = client.create_run(experiment_id)
    client.log_metric(run.info.run_id, "auc", 0.75)
    note = tmp_path / "note.txt"
    note.write_text("stored through the server")
    with scoped_mlflow_globals(config):  # mlflow-artifacts: URIs resolve against the global tracking URI
        client.log_artifact(run.info.run_id, str(note))
    client.set_terminated(run.info.run_id)

    stored = list(mlflow_server.artifacts_destination.rglob("note.txt"))
    assert [path.read_text() for path in stored] == ["stored through the server"]
    assert client.get_run(run.info.run_id).data.metrics == {"auc": 0.75}

    client.create_registered_model("cluster_smoke_model")
    version = client.create_model_version("cluster_smoke_model", f"runs:/{run.info.run_id}/note.txt",
                                          run.info.run_id)
    client.set_registered_model_alias("cluster_smoke_model", "champion", version.version)
    assert client.get_model_version_by_alias("cluster_smoke_model", "champion").version == version.version

    import psycopg

    with psycopg.connect(mlflow_server.backend_store_uri.replace("postgresql+psycopg://", "postgresql://")) as db:
        # the server is shared by the session's cluster tests: only this test's model
        aliases = db.execute("SELECT name, alias FROM registered_model_aliases WHERE name = %s",
                             ["cluster_smoke_model"]).fetchall()
    assert aliases == [("cluster_smoke_model", "champion")]


def test_an_absent_server_skips_locally_and_fails_where_cluster_tests_are_required(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(CLUSTER_FLAG, raising=False)
    with pytest.raises(pytest.skip.Exception, match="`no-such-server` not found: the Debian package `no-such-pkg`"):
        find_binary("no-such-server", "no-such-pkg")
    monkeypatch.setenv(CLUSTER_FLAG, "1")
    with pytest.raises(pytest.fail.Exception, match="CSSCI_CLUSTER_TESTS=1, so the cluster tests must run"):
        find_binary("no-such-server", "no-such-pkg")
