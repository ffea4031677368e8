"""The `cluster` profile's warehouse: PostgreSQL, which many steps on many machines write at once (row-level locks:
writers of different patients never wait for each other), chosen by measurement (benchmarks/RESULTS.md, "Warehouse
with concurrent writers").

DuckDB stays the query engine, so every named query and writer of `lib.warehouse` runs unchanged: a connection is an
in-memory DuckDB with the PostgreSQL database attached (DuckDB's postgres extension, loaded offline from its pinned pip
package) as its default database. DuckDB turns a write into PostgreSQL statements in one PostgreSQL transaction, and
a read into scans with filters pushed down. What PostgreSQL cannot hold stays beside it:

- the wide cohort tables (`feature_matrix`, `harmonized_features`, `feature_reliability`: one column per feature,
  thousands where PostgreSQL allows 1,600) are Parquet files in `wide_tables/` beside the warehouse path, on the
  folder every machine shares; a write replaces the file atomically (written aside, then renamed), and each connection
  reads them through temporary views of the same names;
- `patient_status` (a DuckDB view) is a temporary view of each connection;
- `radiomics_wide` (the local file's PIVOT view of `radiomics_features`, for people exploring the DuckDB file; no step
  reads it) is not kept: its columns change with the data, and keeping one definition in step across concurrent
  writers would serialize them. Pivot `radiomics_features` in the query instead.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import duckdb

from cssci_platform.lib.cluster.duckdb_extensions import ExtensionUnavailable, load_packaged_extension
from cssci_platform.lib.warehouse import (
    PATIENT_STATUS_VIEW,
    SCHEMA,
    SCHEMA_DIGEST,
    WarehouseUnavailable,
    create_schema,
    schema_applied,
    schema_columns,
)

if TYPE_CHECKING:
    import pandas as pd

SERVER_DATABASE = "warehouse"  # the name PostgreSQL is attached under (the connection's default database)
WIDE_TABLES_FOLDER = "wide_tables"  # beside the warehouse path: the wide cohort tables as Parquet files
WIDE_TABLES_VARIABLE = "cssci_wide_tables"  # a connection's DuckDB variable: its wide tables' folder (server only)
# Statements that lost a race with another process creating the same tables (the first writes of a new warehouse)
SCHEMA_RACE = re.compile(r"already exists|duplicate key|could not serialize|deadlock detected", re.IGNORECASE)
SCHEMA_ATTEMPTS = 5


def wide_tables_folder(warehouse: Path) -> Path:
    return Path(warehouse).parent / WIDE_TABLES_FOLDER


@contextmanager
def connect_server(url: str, warehouse: Path, read_only: bool) -> Iterator[duckdb.DuckDBPyConnection]:
    """A DuckDB connection whose default database is the PostgreSQL warehouse at `url` (tables created on the first
    write), with the temporary views of the wide tables kept beside `warehouse` and of `patient_status`. A
    `read_only` connection creates nothing; unlike the local file's, it does not refuse writes (PostgreSQL's
    permissions do, for a user given only SELECT).

    Each is a new connection (its own transactions and temporary views) to this process's in-memory DuckDB that has
    PostgreSQL attached (`_attached`): loading the extension into a new DuckDB costs ~80 ms, more than a patient's
    write itself (20-40 ms), and the assets open a short connection per write."""
    instance = _attached(url)
    con = instance.cursor()
    try:
        con.execute(f"USE {SERVER_DATABASE}")
        if not read_only:
            _create_tables(con, url)
        _create_views(con, wide_tables_folder(warehouse))
        yield con
    finally:
        con.close()


_INSTANCES: dict[tuple[int, str], duckdb.DuckDBPyConnection] = {}  # (process, url) -> DuckDB with PostgreSQL attached
_INSTANCES_GUARD = threading.Lock()


def _attached(url: str) -> duckdb.DuckDBPyConnection:
    """This process's in-memory DuckDB with the warehouse at `url` attached (a forked child attaches its own). The
    extension replaces a PostgreSQL session the server ended (restart, failover) by a new one on its next statement
    (cluster/test_warehouse_server.py)."""
    key = (os.getpid(), url)
    with _INSTANCES_GUARD:
        instance = _INSTANCES.get(key)
        if instance is None:
            instance = _INSTANCES[key] = _attach(url)
        return instance


def _attach(url: str) -> duckdb.DuckDBPyConnection:
    instance = duckdb.connect()
    try:
        load_packaged_extension(instance, "postgres_scanner")
    except ExtensionUnavailable as error:
        instance.close()
        raise WarehouseUnavailable(f"the cluster warehouse needs DuckDB's postgres extension: {error}") from None
    try:
        instance.execute(f"ATTACH {_literal(url)} AS {SERVER_DATABASE} (TYPE postgres)")
    except duckdb.Error as error:
        instance.close()
        raise WarehouseUnavailable(
            f"cannot reach the cluster warehouse {without_password(url)}: {_first_line(error, url)}; check the "
            "server is up and the cluster file's `warehouse` URL (host, port, database, user, password)") from None
    return instance


def _create_tables(con: duckdb.DuckDBPyConnection, url: str) -> None:
    """`ensure_schema` without DuckDB views, with an index on each table's patient_key (a patient's replacing write
    deletes by it: without the index every write would scan the whole table). Processes that create the tables of a
    new warehouse at the same moment collide in PostgreSQL's catalog (one wins, the others fail): they try again and
    find the tables there."""
    for attempt in range(1, SCHEMA_ATTEMPTS + 1):
        try:
            if not schema_applied(con):
                create_schema(con, persistent_views=False)
                _create_patient_indexes(con)
                _record_schema(con)
            return
        except duckdb.Error as error:
            if not SCHEMA_RACE.search(str(error)) or attempt == SCHEMA_ATTEMPTS:
                raise WarehouseUnavailable(f"cannot create the tables of the cluster warehouse "
                                           f"{without_password(url)}: {_first_line(error, url)}") from None
            con.execute("CALL pg_clear_cache()")  # the extension's view of the catalog predates the other's tables
            time.sleep(0.05 * attempt)


def _record_schema(con: duckdb.DuckDBPyConnection) -> None:
    """`record_schema` as one PostgreSQL transaction that locks the table first: two processes recording it at the
    same moment would otherwise each delete nothing (the other's row not yet committed) and leave two rows."""
    statement = ("BEGIN; LOCK TABLE public.warehouse_schema IN EXCLUSIVE MODE; DELETE FROM public.warehouse_schema; "
                 f"INSERT INTO public.warehouse_schema VALUES ({_literal(SCHEMA_DIGEST)}); COMMIT;")
    con.execute(f"CALL postgres_execute('{SERVER_DATABASE}', {_literal(statement)})")


def _create_patient_indexes(con: duckdb.DuckDBPyConnection) -> None:
    for table in SCHEMA:
        if "patient_key" in schema_columns(table):
            statement = f"CREATE INDEX IF NOT EXISTS {table}_patient_key ON public.{table} (patient_key)"
            con.execute(f"CALL postgres_execute('{SERVER_DATABASE}', {_literal(statement)})")


def _create_views(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    con.execute(f"SET VARIABLE {WIDE_TABLES_VARIABLE} = ?", [str(folder)])
    con.execute(temporary(PATIENT_STATUS_VIEW))
    for file in sorted(folder.glob("*.parquet")) if folder.is_dir() else []:
        _create_wide_view(con, file.stem, file)


def temporary(view: str) -> str:
    """A `CREATE OR REPLACE VIEW` statement as the connection's temporary view (PostgreSQL cannot hold DuckDB SQL)."""
    return view.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW", 1)


def _create_wide_view(con: duckdb.DuckDBPyConnection, table: str, file: Path) -> None:
    con.execute(f'CREATE OR REPLACE TEMP VIEW "{table}" AS SELECT * FROM read_parquet({_literal(str(file))})')


def server_wide_tables(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The wide tables' folder of a cluster warehouse connection; None for the local DuckDB file."""
    row = con.execute(f"SELECT getvariable('{WIDE_TABLES_VARIABLE}')").fetchone()
    return Path(row[0]) if row and row[0] else None


def write_wide_parquet(con: duckdb.DuckDBPyConnection, folder: Path, table: str, frame: pd.DataFrame) -> None:
    """Replace the wide table `table` (its Parquet file) atomically: readers see the old file or the new one."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / f"{table}.parquet"
    partial = folder / f".{table}.{os.getpid()}.partial.parquet"
    con.register("incoming_wide", frame)
    try:
        con.execute(f"COPY (SELECT * FROM incoming_wide) TO {_literal(str(partial))} (FORMAT parquet)")
    finally:
        con.unregister("incoming_wide")
    os.replace(partial, final)
    _create_wide_view(con, table, final)


def without_password(url: str) -> str:
    """`url` with its password replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urlunsplit(parts._replace(netloc=netloc))


def _first_line(error: Exception, url: str) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    password = urlsplit(url).password
    return text.replace(password, "***") if password else text


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"
