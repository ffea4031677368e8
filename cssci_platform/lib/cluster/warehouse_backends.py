"""Three warehouses for patient rows written by many processes at once, behind one writer interface.

- `DuckDBFileTarget`: today's local warehouse, one DuckDB file; each write opens a short-lived connection and waits
  while another process holds the file's lock (`lib.warehouse.connect`).
- `DuckLakeTarget`: DuckLake, Parquet data files in a shared folder, catalog in PostgreSQL (many writers; a commit
  that conflicts with a concurrent one is retried).
- `PostgresTarget`: PostgreSQL itself as the warehouse (COPY into the table inside the replacing transaction).
- `PlatformServerTarget`: the cluster profile's warehouse as the platform writes it (`lib/warehouse_server.py`:
  PostgreSQL through DuckDB's postgres extension, a short connection per write, as the assets do).

Every write replaces one patient's rows (delete + insert) in one transaction, as `lib.warehouse.replace_rows` does,
so a reader sees a patient's old rows or its new rows, never both and never part of them.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import polars as pl

from cssci_platform.lib.cluster.duckdb_extensions import load_packaged_extension
from cssci_platform.lib.warehouse import SCHEMA, connect, replace_rows, schema_columns
from cssci_platform.lib.warehouse_server import connect_server

LAKE_ALIAS = "lake"
CONFLICT_RETRIES = 50  # DuckLake commits that lost a race with another writer's commit are retried this often


@dataclass(frozen=True)
class DuckDBFileTarget:
    """The local DuckDB file (one writing process at a time)."""

    path: Path


@dataclass(frozen=True)
class DuckLakeTarget:
    """DuckLake: `catalog` is the libpq conninfo of a PostgreSQL database, `data_path` the shared Parquet folder."""

    catalog: str
    data_path: Path


@dataclass(frozen=True)
class PostgresTarget:
    """PostgreSQL as the warehouse: `conninfo` in libpq key=value or URL form."""

    conninfo: str


@dataclass(frozen=True)
class PlatformServerTarget:
    """The platform's cluster warehouse: PostgreSQL at `conninfo`; `path` the warehouse path in the shared home (its
    folder holds the wide tables)."""

    conninfo: str
    path: Path


WarehouseTarget = DuckDBFileTarget | DuckLakeTarget | PostgresTarget | PlatformServerTarget


@dataclass(frozen=True)
class WriteOutcome:
    rows: int
    conflict_retries: int  # commits redone after a conflict with another writer (DuckLake)


class PatientRowsWriter(Protocol):
    def replace_patient_rows(self, table: str, patient_key: str, frame: pl.DataFrame) -> WriteOutcome: ...

    def close(self) -> None: ...


def backend_name(target: WarehouseTarget) -> str:
    return {DuckDBFileTarget: "duckdb_file", DuckLakeTarget: "ducklake", PostgresTarget: "postgres",
            PlatformServerTarget: "platform_postgres"}[type(target)]


# ---- table definitions -----------------------------------------------------------------------------------------------


def postgres_columns(table: str) -> str:
    """The warehouse SCHEMA's column list in PostgreSQL's spelling (DOUBLE -> DOUBLE PRECISION, FLOAT -> REAL)."""
    columns = re.sub(r"\bDOUBLE\b", "DOUBLE PRECISION", SCHEMA[table])
    return re.sub(r"\bFLOAT\b", "REAL", columns)


def ducklake_columns(table: str) -> str:
    """The SCHEMA's column list without what DuckLake tables do not support (primary keys, non-literal defaults)."""
    columns = SCHEMA[table].replace(" PRIMARY KEY", "")
    return re.sub(r"\s+DEFAULT\s+current_timestamp", "", columns)


def prepare_table(target: WarehouseTarget, table: str) -> None:
    """Create `table` in the target (once, before writers start), with an index on patient_key in PostgreSQL so the
    per-patient delete does not scan the table."""
    if isinstance(target, DuckDBFileTarget):
        with connect(target.path):  # creates every warehouse table
            return
    if isinstance(target, PlatformServerTarget):
        with connect_server(target.conninfo, target.path, read_only=False):  # creates every table and index
            return
    if isinstance(target, DuckLakeTarget):
        with duckdb.connect() as con:
            attach_ducklake(con, target)
            con.execute(f"CREATE TABLE IF NOT EXISTS {LAKE_ALIAS}.{table} ({ducklake_columns(table)})")
        return
    import psycopg

    with psycopg.connect(target.conninfo) as pg:
        pg.execute(f"CREATE TABLE IF NOT EXISTS {table} ({postgres_columns(table)})")
        if "patient_key" in schema_columns(table):
            pg.execute(f"CREATE INDEX IF NOT EXISTS {table}_patient_key ON {table} (patient_key)")


# ---- writers ------------------------------------------------------------------------------------------------


class DuckDBFileWriter:
    """Each write opens the file (waiting for the lock while another process writes), replaces, and closes it."""

    def __init__(self, target: DuckDBFileTarget) -> None:
        self.path = target.path

    def replace_patient_rows(self, table: str, patient_key: str, frame: pl.DataFrame) -> WriteOutcome:
        with connect(self.path) as con:
            return WriteOutcome(replace_rows(con, table, {"patient_key": patient_key}, frame), 0)

    def close(self) -> None:
        return None


class PlatformServerWriter:
    """Each write opens a cluster warehouse connection (DuckDB, PostgreSQL attached), replaces, and closes it."""

    def __init__(self, target: PlatformServerTarget) -> None:
        self.target = target

    def replace_patient_rows(self, table: str, patient_key: str, frame: pl.DataFrame) -> WriteOutcome:
        with connect_server(self.target.conninfo, self.target.path, read_only=False) as con:
            return WriteOutcome(replace_rows(con, table, {"patient_key": patient_key}, frame), 0)

    def close(self) -> None:
        return None


def attach_ducklake(con: duckdb.DuckDBPyConnection, target: DuckLakeTarget) -> None:
    """Load the packaged ducklake and postgres extensions (offline) and attach the lake as `lake`."""
    con.execute("SET enable_progress_bar = false")  # long lake queries would draw bars on stdout
    load_packaged_extension(con, "postgres_scanner")
    load_packaged_extension(con, "ducklake")
    target.data_path.mkdir(parents=True, exist_ok=True)
    con.execute(f"ATTACH 'ducklake:postgres:{target.catalog}' AS {LAKE_ALIAS} (DATA_PATH '{target.data_path}/')")


def is_conflict(error: duckdb.Error) -> bool:
    text = str(error).lower()
    return "conflict" in text or "concurrent" in text


class DuckLakeWriter:
    """One connection per writer process; a transaction that conflicts with another writer's commit is rolled back
    and redone (up to CONFLICT_RETRIES times, with a short growing pause)."""

    def __init__(self, target: DuckLakeTarget) -> None:
        self.con = duckdb.connect()
        attach_ducklake(self.con, target)

    def replace_patient_rows(self, table: str, patient_key: str, frame: pl.DataFrame) -> WriteOutcome:
        for attempt in range(CONFLICT_RETRIES + 1):
            try:
                self._replace_once(f"{LAKE_ALIAS}.{table}", patient_key, frame)
                return WriteOutcome(frame.height, attempt)
            except duckdb.Error as error:
                if not is_conflict(error) or attempt == CONFLICT_RETRIES:
                    raise
                time.sleep(min(0.01 * 2**attempt, 0.5))
        raise AssertionError("unreachable")

    def _replace_once(self, table: str, patient_key: str, frame: pl.DataFrame) -> None:
        con = self.con
        con.execute("BEGIN TRANSACTION")
        try:
            con.execute(f"DELETE FROM {table} WHERE patient_key = ?", [patient_key])
            con.register("incoming", frame)
            names = ", ".join(frame.columns)
            con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming")
            con.unregister("incoming")
            con.execute("COMMIT")
        except BaseException:
            try:
                con.execute("ROLLBACK")
            except duckdb.Error:
                pass  # a failed COMMIT already ended the transaction
            raise

    def close(self) -> None:
        self.con.close()


class PostgresWriter:
    """One connection per writer process; DELETE then COPY in one transaction (CSV for flat frames; row by row, with
    psycopg adapting lists to arrays, where a column holds lists: scans' size/spacing, embeddings)."""

    def __init__(self, target: PostgresTarget) -> None:
        import psycopg

        self.connection = psycopg.connect(target.conninfo)

    def replace_patient_rows(self, table: str, patient_key: str, frame: pl.DataFrame) -> WriteOutcome:
        names = ", ".join(frame.columns)
        with self.connection.transaction(), self.connection.cursor() as cursor:
            cursor.execute(f"DELETE FROM {table} WHERE patient_key = %s", [patient_key])
            if any(isinstance(dtype, pl.List | pl.Array) for dtype in frame.dtypes):
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN") as copy:
                    for row in frame.iter_rows():
                        copy.write_row(row)
            else:
                with cursor.copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
                    copy.write(frame.write_csv(include_header=False, null_value=""))
        return WriteOutcome(frame.height, 0)

    def close(self) -> None:
        self.connection.close()


def open_writer(target: WarehouseTarget) -> PatientRowsWriter:
    if isinstance(target, DuckDBFileTarget):
        return DuckDBFileWriter(target)
    if isinstance(target, DuckLakeTarget):
        return DuckLakeWriter(target)
    if isinstance(target, PlatformServerTarget):
        return PlatformServerWriter(target)
    return PostgresWriter(target)


# ---- reads ------------------------------------------------------------------------------------------------


def attach_postgres(con: duckdb.DuckDBPyConnection, conninfo: str, alias: str = "wh") -> None:
    """Attach a PostgreSQL warehouse read-only to a DuckDB connection (the postgres extension loaded offline from its
    pip package), so DuckDB SQL reads its tables as `<alias>.<table>`, filters and columns pushed down to PostgreSQL."""
    load_packaged_extension(con, "postgres_scanner")
    con.execute(f"ATTACH '{conninfo}' AS {alias} (TYPE postgres, READ_ONLY)")


def read_frame(target: WarehouseTarget, sql: str) -> pl.DataFrame:
    """Run one read query (table names unqualified) as one snapshot of the warehouse and return a polars frame.
    DuckDB file: a read-only connection (waits while a writer holds the lock); DuckLake: the lake attached as the
    default database; PostgreSQL: one statement (its own MVCC snapshot) through psycopg."""
    if isinstance(target, DuckDBFileTarget):
        with connect(target.path, read_only=True) as con:
            return con.execute(sql).pl()
    if isinstance(target, PlatformServerTarget):
        with connect_server(target.conninfo, target.path, read_only=True) as con:
            return con.execute(sql).pl()
    if isinstance(target, DuckLakeTarget):
        with duckdb.connect() as con:
            attach_ducklake(con, target)
            con.execute(f"USE {LAKE_ALIAS}")
            return con.execute(sql).pl()
    import psycopg

    with psycopg.connect(target.conninfo) as pg, pg.cursor() as cursor:
        cursor.execute(sql)
        names = [column.name for column in cursor.description or []]
        return pl.DataFrame(cursor.fetchall(), schema=names, orient="row")
