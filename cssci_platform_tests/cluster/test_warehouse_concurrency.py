"""Issue 15, concurrency: 8 writer processes replace patients' radiomics_features rows in one warehouse at once while
a reader takes snapshots; no row may be lost or duplicated and every snapshot must be consistent. For the local
DuckDB file (its lock), DuckLake (Parquet in a shared folder, catalog in a real PostgreSQL) and PostgreSQL itself."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cssci_platform.lib.cluster.duckdb_extensions import ExtensionUnavailable, packaged_extension_file
from cssci_platform.lib.cluster.warehouse_backends import (
    LAKE_ALIAS,
    DuckDBFileTarget,
    DuckLakeTarget,
    PlatformServerTarget,
    PostgresTarget,
    WarehouseTarget,
    attach_ducklake,
    attach_postgres,
    open_writer,
    prepare_table,
    read_frame,
)
from cssci_platform.lib.cluster.write_load import (
    SNAPSHOT_SQL,
    TABLE,
    final_problems,
    run_write_load,
    snapshot_problems,
    synthetic_feature_rows,
)
from cssci_platform.lib.warehouse import connect
from cssci_platform.lib.warehouse_server import connect_server
from cssci_platform_tests.cluster.servers import PostgresServer, free_port

pytestmark = [pytest.mark.cluster, pytest.mark.xdist_group("cluster")]

WRITERS, PATIENTS, ROWS, REWRITES = 8, 2, 400, 1


def ducklake_extensions_or_skip() -> None:
    """DuckLake is the measured alternative, not the chosen warehouse: without its packaged extension for this exact
    DuckDB version the DuckLake cases are skipped (also in CI), naming the pin they need."""
    version = f"v{duckdb.__version__}"
    try:
        for name in ("ducklake", "postgres_scanner"):
            packaged_extension_file(name, version)
    except ExtensionUnavailable as error:
        pytest.skip(f"DuckLake needs its extension offline: {error}")


def make_target(backend: str, postgres_server: PostgresServer, tmp_path: Path) -> WarehouseTarget:
    database = f"{backend}_{free_port()}"
    if backend == "duckdb_file":
        return DuckDBFileTarget(tmp_path / "warehouse.duckdb")
    if backend == "ducklake":
        ducklake_extensions_or_skip()
        return DuckLakeTarget(postgres_server.create_database(database), tmp_path / "shared" / "lake")
    if backend == "platform_postgres":
        return PlatformServerTarget(postgres_server.create_database(database), tmp_path / "shared" / "warehouse.duckdb")
    return PostgresTarget(postgres_server.create_database(database))


@pytest.mark.timeout(600)
@pytest.mark.parametrize("backend", ["duckdb_file", "ducklake", "postgres", "platform_postgres"])
def test_eight_writers_lose_and_duplicate_no_row_and_readers_see_whole_patients(
    backend: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    target = make_target(backend, postgres_server, tmp_path)

    result = run_write_load(target, WRITERS, PATIENTS, ROWS, rewrites=REWRITES, read_pause_s=0.0)

    assert result.problems == []
    assert [report.writes for report in sorted(result.reports, key=lambda r: r.writer)] == [PATIENTS + REWRITES] * 8
    assert result.rows_written == WRITERS * (PATIENTS + REWRITES) * ROWS
    assert result.snapshots >= 1  # at least one read overlapped the writes
    final = read_frame(target, f"SELECT count(*) AS n, count(DISTINCT patient_key) AS patients FROM {TABLE}")
    assert final.rows() == [(WRITERS * PATIENTS * ROWS, WRITERS * PATIENTS)]


@pytest.mark.parametrize("backend", ["duckdb_file", "ducklake", "postgres", "platform_postgres"])
def test_the_checks_see_a_lost_a_duplicated_and_a_half_written_patient(
    backend: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """The checks above can fail: rows appended without the replacing delete (duplicates), a patient never written
    (lost) and a partial patient are each reported."""
    target = make_target(backend, postgres_server, tmp_path)
    prepare_table(target, TABLE)
    writer = open_writer(target)
    try:
        writer.replace_patient_rows(TABLE, "W00-P0000", synthetic_feature_rows("W00-P0000", ROWS, "v1", 1))
        writer.replace_patient_rows(TABLE, "W00-P0001", synthetic_feature_rows("W00-P0001", ROWS, "v1", 2))
        # a duplicate: the same patient's rows again under another key's delete
        writer.replace_patient_rows(TABLE, "nobody", synthetic_feature_rows("W00-P0001", ROWS, "v2", 3))
        writer.replace_patient_rows(TABLE, "W01-P0000", synthetic_feature_rows("W01-P0000", ROWS // 2, "v1", 4))
    finally:
        writer.close()

    problems = final_problems(target, writers=3, patients=2, rows_per_patient=ROWS, rewrites=0)
    snapshot = snapshot_problems(read_frame(target, SNAPSHOT_SQL), ROWS)

    assert any(p.startswith("W00:") and "lost or duplicated" in p for p in problems)
    assert any(p.startswith("W01:") and "lost or duplicated" in p for p in problems)
    assert any(p.startswith("W02:") and "0 rows" in p for p in problems)
    assert sorted(p.split(":")[1].split()[0] for p in snapshot) == ["W00-P0001", "W01-P0000"]


def test_synthetic_patient_rows_have_the_warehouse_columns_and_unique_feature_keys() -> None:
    frame = synthetic_feature_rows("W00-P0000", 2250, "v1", 7)
    assert frame.height == 2250
    assert frame.select(["sequence", "roi", "segmentation", "channel", "feature"]).is_duplicated().sum() == 0
    from cssci_platform.lib.warehouse import schema_columns

    assert frame.columns == schema_columns(TABLE)
    assert frame.schema["value"] == pl.Float64


LOCK_WAIT_S = 5.0  # the other writer gives up after this (CSSCI_LOCK_WAIT_SECONDS) instead of 120 s


def write_one_patient(target: WarehouseTarget, key: str) -> tuple[float, str]:
    """In a separate process: replace one patient's rows; (seconds taken, error or '')."""
    os.environ["CSSCI_LOCK_WAIT_SECONDS"] = str(LOCK_WAIT_S)
    began = time.perf_counter()
    try:
        writer = open_writer(target)
        try:
            writer.replace_patient_rows(TABLE, key, synthetic_feature_rows(key, ROWS, "v1", 11))
        finally:
            writer.close()
    except Exception as error:  # noqa: BLE001  (returned to the test)
        return time.perf_counter() - began, f"{type(error).__name__}: {error}"
    return time.perf_counter() - began, ""


@contextlib.contextmanager
def open_replacing_transaction(target: WarehouseTarget, key: str) -> Iterator[None]:
    """Another writer in the middle of replacing patient `key`: rows deleted and inserted, not yet committed."""
    frame = synthetic_feature_rows(key, ROWS, "v1", 12)
    if isinstance(target, PostgresTarget):
        import psycopg

        with psycopg.connect(target.conninfo) as pg, pg.transaction():
            pg.execute(f"DELETE FROM {TABLE} WHERE patient_key = %s", [key])
            with pg.cursor().copy(f"COPY {TABLE} FROM STDIN (FORMAT csv)") as copy:
                copy.write(frame.write_csv(include_header=False))
            yield
        return
    with contextlib.ExitStack() as stack:
        if isinstance(target, DuckDBFileTarget):
            con, table = stack.enter_context(connect(target.path)), TABLE
        elif isinstance(target, PlatformServerTarget):
            con, table = stack.enter_context(connect_server(target.conninfo, target.path, read_only=False)), TABLE
        else:
            con, table = stack.enter_context(duckdb.connect()), f"{LAKE_ALIAS}.{TABLE}"
            attach_ducklake(con, target)
        con.execute("BEGIN TRANSACTION")
        con.execute(f"DELETE FROM {table} WHERE patient_key = ?", [key])
        con.register("incoming", frame)
        con.execute(f"INSERT INTO {table} SELECT * FROM incoming")
        yield
        con.execute("COMMIT")


@pytest.mark.timeout(300)
@pytest.mark.parametrize("backend", [
    pytest.param("duckdb_file", marks=pytest.mark.xfail(
        strict=True, reason="the defect issue 15 names: one writing process per DuckDB file, others wait for the lock "
        "(the local profile keeps it)")),
    "ducklake",
    "postgres",
    "platform_postgres",
])
def test_a_writer_does_not_wait_for_another_writers_open_transaction(
    backend: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    target = make_target(backend, postgres_server, tmp_path)
    prepare_table(target, TABLE)
    with open_replacing_transaction(target, "W00-P0000"), \
            multiprocessing.get_context("spawn").Pool(1) as pool:
        seconds, error = pool.apply(write_one_patient, (target, "W01-P0000"))

    assert error == ""
    assert seconds < LOCK_WAIT_S
    counts = read_frame(target, f"SELECT patient_key, count(*) AS n FROM {TABLE} GROUP BY 1 ORDER BY 1").rows()
    assert counts == [("W00-P0000", ROWS), ("W01-P0000", ROWS)]


def test_duckdb_reads_the_postgres_warehouse_through_the_packaged_extension(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    try:
        packaged_extension_file("postgres_scanner", f"v{duckdb.__version__}")
    except ExtensionUnavailable as error:
        pytest.skip(f"DuckDB reads PostgreSQL through its postgres extension: {error}")
    target = make_target("postgres", postgres_server, tmp_path)
    prepare_table(target, TABLE)
    writer = open_writer(target)
    try:
        for index in range(3):
            key = f"W00-P{index:04d}"
            writer.replace_patient_rows(TABLE, key, synthetic_feature_rows(key, ROWS, "v1", index))
    finally:
        writer.close()
    query = ("SELECT patient_key, sequence, roi, segmentation, feature, value FROM {table} "
             "WHERE channel = 'original' ORDER BY 1, 2, 3, 4, 5")

    with duckdb.connect() as con:
        attach_postgres(con, target.conninfo)
        through_duckdb = con.execute(query.format(table=f"wh.{TABLE}")).pl()

    assert through_duckdb.height == 3 * ROWS // 5
    assert through_duckdb.equals(read_frame(target, query.format(table=TABLE)))


def test_every_warehouse_table_is_created_in_postgres_and_list_columns_round_trip(
    postgres_server: PostgresServer, tmp_path: Path
) -> None:
    from cssci_platform.lib.warehouse import SCHEMA

    target = make_target("postgres", postgres_server, tmp_path)
    for table in SCHEMA:
        prepare_table(target, table)
    scans = pl.DataFrame({
        "patient_key": ["W00-P0000", "W00-P0000"], "sequence": ["sag_T1", "sag_T2"], "kind": ["image", "mask"],
        "size": [[256, 256, 12], [256, 256, 12]], "spacing": [[0.5, 0.5, 3.0], [0.5, 0.5, 3.5]],
        "mask_voxels": [None, 1234],
    })
    embeddings = pl.DataFrame({"patient_key": ["W00-P0000"], "embedding": [[0.25, -1.5, 3.0]]},
                              schema={"patient_key": pl.String, "embedding": pl.List(pl.Float32)})
    writer = open_writer(target)
    try:
        writer.replace_patient_rows("scans", "W00-P0000", scans)
        writer.replace_patient_rows("scans", "W00-P0000", scans)  # replaced, not doubled
        writer.replace_patient_rows("embeddings", "W00-P0000", embeddings)
    finally:
        writer.close()

    stored = read_frame(target, "SELECT sequence, size, spacing, mask_voxels FROM scans ORDER BY sequence")
    assert stored.rows() == [("sag_T1", [256, 256, 12], [0.5, 0.5, 3.0], None),
                             ("sag_T2", [256, 256, 12], [0.5, 0.5, 3.5], 1234)]
    assert read_frame(target, "SELECT embedding FROM embeddings").rows() == [([0.25, -1.5, 3.0],)]
    created = read_frame(target, "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
    assert set(created["table_name"]) == set(SCHEMA)
