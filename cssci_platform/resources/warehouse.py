from collections.abc import Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

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

    def reading(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]:
        """A connection for a patient step to read its inputs on: a connection of its own here (in a batch,
        `HandOverWarehouse` gives it the one the step before it wrote with)."""
        return self.connect()

    def frame(self, sql: str, parameters: list | None = None) -> pl.DataFrame:
        with self.connect() as con:
            return con.execute(sql, parameters or []).pl()


class PatientWarehouse(Protocol):
    """What a patient step opens the warehouse with: `connect()` for its writes, `reading()` for its inputs."""

    def connect(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...

    def reading(self) -> AbstractContextManager[duckdb.DuckDBPyConnection]: ...


class HandOverWarehouse:
    """The warehouse of patient steps run one after another in one process (`patient_batch_job`): the connection a
    step writes with stays open and is handed to the next step's read of its inputs (the rows that write just made),
    then closed before that step's work. Opening the warehouse costs ~45 ms (DuckDB creates a database instance each
    time), so a patient opens it once per step that writes instead of once per read and write. A connection is never
    held while a step computes, so another process's write waits at most for a step's read; `release` closes a held
    one (after each patient)."""

    def __init__(self, warehouse_resource: WarehouseResource) -> None:
        self._warehouse = warehouse_resource
        self._held: tuple[ExitStack, duckdb.DuckDBPyConnection] | None = None

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.release()
        stack = ExitStack()
        con = stack.enter_context(self._warehouse.connect())
        try:
            yield con
        except BaseException:
            stack.close()
            raise
        self._held = stack, con

    @contextmanager
    def reading(self) -> Iterator[duckdb.DuckDBPyConnection]:
        if self._held is None:
            with self._warehouse.connect() as con:
                yield con
            return
        stack, con = self._held
        self._held = None
        with stack:
            yield con

    def release(self) -> None:
        if self._held is not None:
            stack, _ = self._held
            self._held = None
            stack.close()
