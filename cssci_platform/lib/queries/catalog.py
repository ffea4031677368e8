"""Which tables and views the warehouse has, and their columns, the same in both profiles.

`local`: tables and views in the DuckDB file's `main` schema. `cluster`: tables in PostgreSQL's `public` schema
(attached as the connection's default database) plus the connection's temporary views (`patient_status`, the wide
tables kept as Parquet files: lib/warehouse_server.py). `information_schema` would list PostgreSQL's own catalog there,
and neither the temporary views, so both profiles ask DuckDB's catalog functions about the current database and schema
and the temporary catalog.
"""

from __future__ import annotations

import duckdb

IN_WAREHOUSE = "((database_name = current_database() AND schema_name = current_schema()) OR database_name = 'temp')"
TABLE_NAMES = (f"SELECT table_name FROM duckdb_tables() WHERE {IN_WAREHOUSE} "
               f"UNION SELECT view_name FROM duckdb_views() WHERE NOT internal AND {IN_WAREHOUSE}")
TABLE_EXISTS = f"SELECT count(*) FROM ({TABLE_NAMES}) WHERE table_name = ?"
TABLE_COLUMNS = ("SELECT column_name, data_type FROM duckdb_columns() "
                 f"WHERE table_name = ? AND {IN_WAREHOUSE} ORDER BY column_index")


def table_names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """Every table and view of the warehouse."""
    return {name for (name,) in con.execute(TABLE_NAMES).fetchall()}


def has_table(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    row = con.execute(TABLE_EXISTS, [name]).fetchone()
    return bool(row and row[0])


def table_columns(con: duckdb.DuckDBPyConnection, name: str) -> list[tuple[str, str]]:
    """(column, DuckDB type) of a table or view in order; [] when there is none of that name."""
    return [(column, kind) for column, kind in con.execute(TABLE_COLUMNS, [name]).fetchall()]
