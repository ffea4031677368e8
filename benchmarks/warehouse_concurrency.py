"""Issue 15: which warehouse takes concurrent writers. N writer processes replace patients' radiomics_features rows
(~2,250 rows per patient, the demo's size) at once, side by side in one run, into

- ``duckdb_file``: the local DuckDB file with its lock (each write opens a short connection, waiting for the lock),
- ``ducklake``: DuckLake, Parquet data in a shared folder, catalog in PostgreSQL (conflicting commits retried),
- ``postgres``: PostgreSQL as the warehouse (DELETE + COPY per patient in one transaction, psycopg),
- ``platform_postgres``: the same PostgreSQL written the way the platform's cluster profile writes it
  (lib/warehouse_server.py: DuckDB with PostgreSQL attached, a short connection per write, as the assets do),

while the parent process reads snapshots (and checks each is consistent); afterwards every writer's rows are counted
(lost / duplicated) and the whole table is read back into a polars frame by each read path. A real PostgreSQL server
is started on 127.0.0.1 (cssci_platform_tests/cluster/servers.py) and removed afterwards.

    .venv/bin/python benchmarks/warehouse_concurrency.py --writers 1,8 --patients 10 --rounds 2

DuckLake and DuckDB's postgres extension load offline from the pip packages duckdb-extension-ducklake and
duckdb-extension-postgres-scanner, which must match DuckDB's version exactly; where they are absent those parts are
reported as skipped. Figures go to benchmarks/_work/warehouse_concurrency/results.json with `uptime` at start and
end: the machine may be shared, so say so with the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

import duckdb  # noqa: E402
import polars as pl  # noqa: E402

from cssci_platform.lib.cluster.duckdb_extensions import (  # noqa: E402
    ExtensionUnavailable,
    packaged_extension_file,
)
from cssci_platform.lib.cluster.warehouse_backends import (  # noqa: E402
    DuckDBFileTarget,
    DuckLakeTarget,
    PlatformServerTarget,
    PostgresTarget,
    WarehouseTarget,
    attach_postgres,
    read_frame,
)
from cssci_platform.lib.cluster.write_load import TABLE, run_write_load  # noqa: E402
from cssci_platform_tests.cluster.servers import PostgresServer, running_postgres  # noqa: E402

WORK = REPO_ROOT / "benchmarks" / "_work" / "warehouse_concurrency"


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def extensions_problem(*names: str) -> str:
    """'' when the packaged extensions `names` match this DuckDB, else why not."""
    try:
        for name in names:
            packaged_extension_file(name, f"v{duckdb.__version__}")
    except ExtensionUnavailable as error:
        return str(error)
    return ""


def make_target(backend: str, server: PostgresServer, root: Path, label: str) -> WarehouseTarget:
    if backend == "duckdb_file":
        return DuckDBFileTarget(root / label / "warehouse.duckdb")
    if backend == "ducklake":
        return DuckLakeTarget(server.create_database(f"lake_{label}"), root / label / "shared" / "lake")
    if backend == "platform_postgres":  # the platform's cluster warehouse (lib/warehouse_server.py)
        return PlatformServerTarget(server.create_database(f"pwh_{label}"), root / label / "shared" / "warehouse")
    return PostgresTarget(server.create_database(f"wh_{label}"))


def timed(read: Any) -> tuple[float, int]:
    began = time.perf_counter()
    frame = read()
    return round(time.perf_counter() - began, 3), frame.height


def postgres_via_duckdb(conninfo: str) -> pl.DataFrame:
    """DuckDB reads the PostgreSQL table through its postgres extension (loaded offline from the pip package)."""
    with duckdb.connect() as con:
        attach_postgres(con, conninfo)
        return con.execute(f"SELECT * FROM wh.{TABLE}").pl()


def read_paths(target: WarehouseTarget, extensions_ok: bool) -> dict[str, Any]:
    """Seconds to read the whole table into a polars frame, per read path (the frame a feature matrix starts from)."""
    sql = f"SELECT * FROM {TABLE}"
    reads: dict[str, Any] = {"native": timed(lambda: read_frame(target, sql))}
    if isinstance(target, PostgresTarget):
        reads = {"psycopg_fetchall": reads["native"]}
        reads["duckdb_postgres_extension"] = (timed(lambda: postgres_via_duckdb(target.conninfo)) if extensions_ok
                                              else "skipped: extension not packaged for this DuckDB")
    if isinstance(target, DuckLakeTarget):
        reads["parquet_files"] = len(list(target.data_path.rglob("*.parquet")))
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--writers", default="1,8", help="comma-separated writer counts (each a separate run)")
    parser.add_argument("--patients", type=int, default=10, help="patients per writer")
    parser.add_argument("--rows", type=int, default=2250, help="radiomics_features rows per patient")
    parser.add_argument("--rewrites", type=int, default=1, help="patients each writer writes a second time")
    parser.add_argument("--rounds", type=int, default=1, help="repeats; backends alternate order between rounds")
    parser.add_argument("--backends", default="duckdb_file,ducklake,postgres,platform_postgres")
    args = parser.parse_args()

    WORK.mkdir(parents=True, exist_ok=True)
    lake_problem = extensions_problem("ducklake", "postgres_scanner")
    scanner_ok = not extensions_problem("postgres_scanner")
    backends = [b for b in args.backends.split(",") if b != "ducklake" or not lake_problem]
    record: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "duckdb": duckdb.__version__, "uptime_start": uptime()},
        "settings": vars(args), "ducklake_skipped": lake_problem, "runs": [],
    }
    root = Path(tempfile.mkdtemp(prefix="cssci_wh_bench_"))
    try:
        with running_postgres() as server:
            import psycopg

            with psycopg.connect(server.conninfo()) as pg:
                version = pg.execute("SHOW server_version").fetchone()
            record["machine"]["postgres"] = version[0] if version else "?"
            record["machine"]["psycopg"] = psycopg.__version__
            for round_index in range(args.rounds):
                order = backends if round_index % 2 == 0 else backends[::-1]
                for writers in [int(n) for n in args.writers.split(",")]:
                    for backend in order:
                        label = f"{backend}_{writers}_{round_index}"
                        target = make_target(backend, server, root, label)
                        result = run_write_load(target, writers, args.patients, args.rows, args.rewrites)
                        summary = result.summary() | {"round": round_index, "reads": read_paths(target, scanner_ok)}
                        summary["problems"] = summary["problems"][:10]
                        record["runs"].append(summary)
                        print(json.dumps(summary), flush=True)
                        shutil.rmtree(root / label, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    record["machine"]["uptime_end"] = uptime()
    (WORK / "results.json").write_text(json.dumps(record, indent=2))
    print(json.dumps(record["machine"]))
    print(f"written {WORK / 'results.json'}")


if __name__ == "__main__":
    main()
