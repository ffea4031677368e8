"""The cluster profile's warehouse (lib/warehouse_server.py) on a real PostgreSQL server: the platform's own
connection, writers and named queries, unchanged, with PostgreSQL holding the rows and the wide tables as Parquet
files in the shared folder."""

from __future__ import annotations

import multiprocessing
import os
import shlex
import subprocess
import threading
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import polars as pl
import pytest
import yaml

from cssci_platform.cli.home import configure_environment
from cssci_platform.cli.output import next_steps
from cssci_platform.lib.profiles import CLUSTER_FILE_ENV, PROFILE_ENV, WAREHOUSE_SERVER_ENV
from cssci_platform.lib.queries.catalog import has_table, table_columns, table_names
from cssci_platform.lib.queries.summary import patients_per_status
from cssci_platform.lib.stage_inputs import source_digest
from cssci_platform.lib.warehouse import (
    SCHEMA,
    SCHEMA_DIGEST,
    WarehouseUnavailable,
    connect,
    replace_patient_radiomics,
    replace_rows,
    write_wide_table,
)
from cssci_platform.lib.warehouse_server import WIDE_TABLES_FOLDER, without_password
from cssci_platform_tests.cluster.servers import PostgresServer, free_port
from cssci_platform_tests.lib.test_warehouse import feature_rows, scan_row

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

PATIENT = {"patient_key": "P1", "center": "A", "cohort": "train", "manifest_line": 2}


@pytest.fixture
def server_url(postgres_server: PostgresServer, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh warehouse database, selected as the cluster profile does (every command sets the variable)."""
    database = f"wh_{free_port()}"
    postgres_server.create_database(database)
    url = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}/{database}"
    monkeypatch.setenv(WAREHOUSE_SERVER_ENV, url)
    return url


def postgres_rows(url: str, sql: str) -> list[tuple]:
    import psycopg

    with psycopg.connect(url) as pg:
        return pg.execute(sql).fetchall()


def test_patient_rows_go_to_postgres_and_no_warehouse_file_is_written(server_url: str, tmp_path: Path) -> None:
    path = tmp_path / "home" / "warehouse.duckdb"

    with connect(path) as con:
        replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1"), scan_row("P1", kind="mask", voxels=9)])
        replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1")])  # a re-materialization replaces
    with connect(path, read_only=True) as con:
        read = con.execute("SELECT patient_key, kind, size, spacing, direction FROM scans").fetchall()

    stored = postgres_rows(server_url, "SELECT patient_key, kind, size FROM public.scans")
    assert stored == [("P1", "image", [20, 24, 16])]
    assert read == [("P1", "image", [20, 24, 16], [0.8, 0.8, 1.5], [1.0, 0, 0, 0, 1, 0, 0, 0, 1])]
    assert not path.exists() and not path.with_name(path.name + ".lock").exists()
    assert set(SCHEMA) <= {name for (name,) in postgres_rows(
        server_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}
    indexed = {name for (name,) in postgres_rows(server_url, "SELECT indexname FROM pg_indexes")}
    assert {"radiomics_features_patient_key", "embeddings_patient_key", "qc_issues_patient_key"} <= indexed


def test_a_write_that_fails_midway_leaves_the_patients_old_rows(server_url: str, tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1")])
    broken = [{**scan_row("P1", kind="mask"), "no_such_column": 1}]  # the delete runs, then the insert fails

    with pytest.raises(duckdb.BinderException), connect(path) as con:
        replace_rows(con, "scans", {"patient_key": "P1"}, broken)

    assert postgres_rows(server_url, "SELECT kind FROM public.scans") == [("image",)]


def test_wide_tables_wider_than_postgres_allows_are_parquet_files_read_through_views(server_url: str,
                                                                                     tmp_path: Path) -> None:
    """PostgreSQL holds at most 1,600 columns; a feature matrix has thousands. The table is replaced atomically and
    every later connection reads it under its name."""
    path = tmp_path / "shared" / "warehouse.duckdb"
    rng = np.random.default_rng(3)
    wide = pd.DataFrame(rng.normal(size=(4, 2000)), columns=[f"rad__f{i}" for i in range(2000)])
    wide.insert(0, "patient_key", ["P1", "P2", "P3", "P4"])

    with connect(path) as con:
        write_wide_table(con, "feature_matrix", wide)
        assert con.execute("SELECT count(*) FROM feature_matrix").fetchone() == (4,)  # the writer sees it at once
    with connect(path, read_only=True) as con:
        read = con.execute("SELECT * FROM feature_matrix ORDER BY patient_key").df()
        columns = [name for name, _ in table_columns(con, "feature_matrix")]
        present = has_table(con, "feature_matrix"), has_table(con, "harmonized_features")
    narrower = wide.iloc[:, :11]
    with connect(path) as con:
        write_wide_table(con, "feature_matrix", narrower)
    with connect(path, read_only=True) as con:
        reread = con.execute("SELECT * FROM feature_matrix ORDER BY patient_key").df()

    pd.testing.assert_frame_equal(read, wide)
    assert columns == list(wide.columns) and present == (True, False)
    pd.testing.assert_frame_equal(reread, narrower)
    assert sorted(p.name for p in (path.parent / WIDE_TABLES_FOLDER).iterdir()) == ["feature_matrix.parquet"]


def test_named_queries_read_the_cluster_warehouse_as_they_read_the_file(server_url: str, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The same writes into PostgreSQL and into a local file answer the same named queries and give the same source
    digest (the stages' staleness key), so a cluster home skips and re-runs stages as a local one does."""
    answers = []
    for server in (server_url, ""):
        monkeypatch.setenv(WAREHOUSE_SERVER_ENV, server)
        path = tmp_path / ("server" if server else "local") / "warehouse.duckdb"
        with connect(path) as con:
            replace_rows(con, "patients", {"patient_key": "P1"}, [PATIENT])
            replace_rows(con, "patients", {"patient_key": "P2"}, [{**PATIENT, "patient_key": "P2"}])
            replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1")])
            features = replace_patient_radiomics(con, "P1", pl.DataFrame(feature_rows("P1", {"a": 1.0, "b": 2.0})))
            replace_rows(con, "qc_issues", {"patient_key": "P2"}, [
                {"patient_key": "P2", "stage": "scans", "code": "missing", "message": "no T2", "severity": "error"}])
        with connect(path, read_only=True) as con:
            answers.append((patients_per_status(con), source_digest(con), features,
                            {"patients", "patient_status", "scans"} <= table_names(con)))

    assert answers[0] == answers[1]
    assert answers[0][0] == [("features", 1), ("quarantined", 1)]


def test_an_unreachable_server_is_named_without_its_password(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"postgresql://cssci:s3cret-pw@127.0.0.1:{free_port()}/warehouse"
    monkeypatch.setenv(WAREHOUSE_SERVER_ENV, url)

    with pytest.raises(WarehouseUnavailable) as raised, connect(tmp_path / "warehouse.duckdb"):
        pass

    message = str(raised.value)
    assert "s3cret-pw" not in message
    assert without_password(url) in message and "cssci:***@127.0.0.1" in message
    assert "`warehouse` URL" in message


def first_write(url: str, folder: str, key: str, start: object) -> str:
    """A process's first write into a fresh cluster warehouse, at the same moment as the others (spawned)."""
    import os

    os.environ[WAREHOUSE_SERVER_ENV] = url
    start.wait()  # type: ignore[attr-defined]
    with connect(Path(folder) / "warehouse.duckdb") as con:
        replace_rows(con, "scans", {"patient_key": key}, [scan_row(key)])
    return key


def test_eight_processes_writing_first_into_a_new_warehouse_all_create_it_and_write(server_url: str,
                                                                                    tmp_path: Path) -> None:
    """The first writes of a cluster study come from many workers at once; each creates the tables it misses, and
    those that collide in PostgreSQL's catalog try again instead of failing the patient."""
    with multiprocessing.get_context("spawn").Manager() as manager:
        start = manager.Barrier(8)
        with multiprocessing.get_context("spawn").Pool(8) as pool:
            keys = pool.starmap(first_write, [(server_url, str(tmp_path), f"P{i}", start) for i in range(8)])

    assert sorted(keys) == [f"P{i}" for i in range(8)]
    assert postgres_rows(server_url, "SELECT count(DISTINCT patient_key), count(*) FROM public.scans") == [(8, 8)]
    assert postgres_rows(server_url, "SELECT count(*) FROM public.warehouse_schema") == [(1,)]


def test_the_explore_hint_of_a_cluster_home_reads_the_postgres_warehouse(
        server_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The summary's `explore:` command opened the home's DuckDB file, which a cluster home does not have: it must
    read the cluster warehouse, run as printed from a shell without the platform's variables."""
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump({"dagster_storage": server_url, "warehouse": server_url,
                                            "mlflow_tracking_uri": "http://127.0.0.1:9"}), encoding="utf-8")
    monkeypatch.setenv(PROFILE_ENV, "cluster")
    monkeypatch.setenv(CLUSTER_FILE_ENV, str(cluster_file))
    home = tmp_path / "home"
    values = configure_environment(home)
    with connect(Path(values["CSSCI_WAREHOUSE"])) as con:
        replace_rows(con, "patients", {"patient_key": "P1"}, [PATIENT])
    [explore] = [step for step in next_steps(home, Path(values["CSSCI_WAREHOUSE"]), values["CSSCI_MLFLOW_URI"])
                 if step.what == "explore"]

    shell = {name: value for name, value in os.environ.items() if not name.startswith("CSSCI_")}
    done = subprocess.run(shlex.split(explore.command), env=shell, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr[-2000:]
    assert "P1" in done.stdout and "features" not in done.stdout and "registered" in done.stdout
    assert server_url not in explore.command  # no password in the printed line: it is read from the cluster file


def test_after_the_server_dropped_its_connections_the_next_connection_works(server_url: str, tmp_path: Path) -> None:
    """A process keeps its DuckDB with PostgreSQL attached across connections; when the server ends those sessions
    (a restart, a failover, an administrator), the process's next statements reach the warehouse again."""
    import psycopg

    path = tmp_path / "warehouse.duckdb"
    with connect(path) as con:
        replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1")])
    database = server_url.rsplit("/", 1)[1]
    with psycopg.connect(server_url.rsplit("/", 1)[0] + "/postgres", autocommit=True) as admin:
        ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                              "WHERE datname = %s AND pid <> pg_backend_pid()", [database]).fetchone()
    assert ended and ended[0] >= 1  # the process's attached DuckDB held at least one session

    with connect(path, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM scans").fetchone() == (1,)
    with connect(path) as con:
        replace_rows(con, "scans", {"patient_key": "P2"}, [scan_row("P2")])
        assert con.execute("SELECT count(*) FROM scans").fetchone() == (2,)


def test_recording_the_schema_waits_for_another_process_recording_it(server_url: str, tmp_path: Path) -> None:
    """Two processes recording the applied schema of a new warehouse at once each deleted nothing (the other's row
    not yet committed) and inserted their own: two rows (the eight-process test above failed so once). The
    platform's recording now waits for the other transaction and replaces its row."""
    import psycopg

    path = tmp_path / "warehouse.duckdb"
    with connect(path):
        pass
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute("DELETE FROM warehouse_schema")  # as in a new warehouse before any process recorded it
    with psycopg.connect(server_url) as other:
        other.execute("INSERT INTO warehouse_schema VALUES (%s)", [SCHEMA_DIGEST])  # recording, not committed
        writer = threading.Thread(target=lambda: connect(path).__enter__().close())
        writer.start()
        writer.join(timeout=2)
        waited = writer.is_alive()
        other.commit()
    writer.join(timeout=60)

    assert waited and not writer.is_alive()
    assert postgres_rows(server_url, "SELECT digest FROM warehouse_schema") == [(SCHEMA_DIGEST,)]
