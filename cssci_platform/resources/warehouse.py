from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl

from cssci_platform.lib import warehouse


class WarehouseResource(dg.ConfigurableResource):
    """The DuckDB warehouse file (`CSSCI_WAREHOUSE`)."""

    path: str

    @contextmanager
    def connect(self, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        with warehouse.connect(Path(self.path), read_only=read_only) as con:
            yield con

    def frame(self, sql: str, parameters: list | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return con.execute(sql, parameters or []).pl()
