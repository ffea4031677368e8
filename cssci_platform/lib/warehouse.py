"""The DuckDB warehouse: table definitions and per-patient replace writes.

Tables are long and tidy. Every per-patient write replaces that patient's rows in one transaction, so a
re-materialization (e.g. after a file was fixed) leaves no stale rows and never touches other patients.
DuckDB allows one writing process per file: connections are short-lived and retried while another
process (a parallel patient run) holds the lock. In the cluster profile (CSSCI_WAREHOUSE_SERVER set from the cluster
file) `connect` returns a connection to the PostgreSQL warehouse instead, which many processes write at once; the
writers and named queries are the same (lib/warehouse_server.py).
"""

from __future__ import annotations

import fcntl  # POSIX only, like the Linux/macOS hosts this platform runs on
import hashlib
import os
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb
import polars as pl

from cssci_platform.lib.failures import ExplainedError, storage_problem
from cssci_platform.lib.profiles import WAREHOUSE_SERVER_ENV

if TYPE_CHECKING:
    import pandas as pd

SCHEMA: dict[str, str] = {
    "patients": """patient_key VARCHAR PRIMARY KEY, center VARCHAR, cohort VARCHAR, manifest_line INTEGER,
        outcome_date DATE, manifest_path VARCHAR, manifest_sha256 VARCHAR, updated_at TIMESTAMP""",
    "clinical": "patient_key VARCHAR, variable VARCHAR, value_number DOUBLE, value_text VARCHAR",
    "outcomes": "patient_key VARCHAR, outcome VARCHAR, value VARCHAR, outcome_date DATE",
    "scans": """patient_key VARCHAR, sequence VARCHAR, kind VARCHAR, roi VARCHAR, segmentation VARCHAR,
        path VARCHAR, sha256 VARCHAR, size INTEGER[], spacing DOUBLE[], origin DOUBLE[], direction DOUBLE[],
        mask_voxels BIGINT""",
    "qc_issues": """patient_key VARCHAR, stage VARCHAR, code VARCHAR, message VARCHAR, fix VARCHAR,
        file VARCHAR, severity VARCHAR, detected_at TIMESTAMP DEFAULT current_timestamp""",
    "preprocessed_channels": """patient_key VARCHAR, sequence VARCHAR, channel VARCHAR, image_path VARCHAR,
        source_sha256 VARCHAR, settings_digest VARCHAR""",
    "preprocessed_masks": """patient_key VARCHAR, sequence VARCHAR, roi VARCHAR, segmentation VARCHAR,
        mask_path VARCHAR, source_sha256 VARCHAR""",
    "radiomics_features": """patient_key VARCHAR, sequence VARCHAR, roi VARCHAR, segmentation VARCHAR,
        channel VARCHAR, feature VARCHAR, value DOUBLE, extractor_version VARCHAR, params_name VARCHAR,
        params_hash VARCHAR""",
    "roi_slices": """patient_key VARCHAR, sequence VARCHAR, roi VARCHAR, channel VARCHAR, axis VARCHAR,
        slice_index INTEGER, roi_area_px INTEGER, crop INTEGER[], slice_path VARCHAR, settings_digest VARCHAR,
        clipped_px INTEGER[]""",
    "networks": """network_id VARCHAR, backbone VARCHAR, sequence VARCHAR, channel VARCHAR, weights_id VARCHAR,
        parent_weights_id VARCHAR, split VARCHAR, fold VARCHAR, outcome VARCHAR, classes VARCHAR[],
        train_patients INTEGER, final_loss DOUBLE, checkpoint_path VARCHAR, checkpoint_sha256 VARCHAR,
        config_json VARCHAR, created_at TIMESTAMP""",
    "embeddings": """patient_key VARCHAR, center VARCHAR, sequence VARCHAR, channel VARCHAR, backbone VARCHAR,
        weights_id VARCHAR, network VARCHAR, embedding FLOAT[], created_at TIMESTAMP""",
    "splits": """split VARCHAR, fold VARCHAR, patient_key VARCHAR, role VARCHAR, outcome VARCHAR, seed INTEGER,
        created_at TIMESTAMP""",
    "trained_models": """result_name VARCHAR, signature VARCHAR, classifier VARCHAR, mode VARCHAR, run_id VARCHAR,
        model_uri VARCHAR, registered_model VARCHAR, model_version VARCHAR, champion BOOLEAN, best_params VARCHAR,
        cv_auc_mean DOUBLE, cv_auc_sd DOUBLE, threshold DOUBLE, n_features INTEGER, split VARCHAR, fold VARCHAR,
        created_at TIMESTAMP""",
    "model_results": """result_name VARCHAR, signature VARCHAR, classifier VARCHAR, mode VARCHAR, role VARCHAR,
        metric VARCHAR, value DOUBLE, run_id VARCHAR, split VARCHAR, fold VARCHAR, created_at TIMESTAMP,
        reason VARCHAR""",
    "prospective_predictions": """patient_key VARCHAR, center VARCHAR, signature VARCHAR, class_label VARCHAR,
        probability DOUBLE, risk_group VARCHAR, registered_model VARCHAR, model_version VARCHAR, run_id VARCHAR,
        predicted_at TIMESTAMP""",
    "inbox_events": """source VARCHAR, patient_key VARCHAR, status VARCHAR, reason VARCHAR, digest VARCHAR,
        seen_at TIMESTAMP""",
    # Outcomes recorded from follow-up files: source data, never rewritten by a manifest re-materialization.
    "recorded_outcomes": """patient_key VARCHAR, outcome VARCHAR, value VARCHAR, outcome_date DATE,
        source_file VARCHAR, source_sha256 VARCHAR, source_line INTEGER, recorded_at TIMESTAMP""",
    # Follow-up files applied (once per content): the ledger behind exactly-once application.
    "followup_files": """source_file VARCHAR, source_sha256 VARCHAR, recorded INTEGER, rejected INTEGER,
        applied_at TIMESTAMP""",
    # Corrections of admitted inbox arrivals: one row per changed column.
    "admission_changes": """patient_key VARCHAR, column_name VARCHAR, old_value VARCHAR, new_value VARCHAR,
        digest VARCHAR, changed_at TIMESTAMP""",
    # Content digests of inbox files, so a sensor tick re-reads only files whose size or mtime changed.
    "inbox_file_digests": "path VARCHAR PRIMARY KEY, size BIGINT, mtime_ns BIGINT, sha256 VARCHAR",
    "validation_metrics": """registered_model VARCHAR, model_version VARCHAR, signature VARCHAR, n_patients INTEGER,
        metric VARCHAR, value DOUBLE, test_auc_low DOUBLE, below_test_ci BOOLEAN, computed_at TIMESTAMP""",
    # The digest of the schema last applied to this file (SCHEMA_DIGEST): a connection skips the DDL when it matches.
    "warehouse_schema": "digest VARCHAR",
    "predictions": """patient_key VARCHAR, cohort VARCHAR, role VARCHAR, signature VARCHAR, classifier VARCHAR,
        mode VARCHAR, split VARCHAR, fold VARCHAR, class_label VARCHAR, probability DOUBLE, model_name VARCHAR,
        model_version VARCHAR, created_at TIMESTAMP, label VARCHAR""",
}


def schema_columns(table: str) -> list[str]:
    """The column names of a SCHEMA table, in order."""
    return [part.split()[0] for part in SCHEMA[table].replace("\n", " ").split(",")]


# Columns added after a table first shipped: existing warehouses get them on the next write.
ADDED_COLUMNS = {
    "predictions": {"label": "VARCHAR"},  # label: the outcome each model was evaluated against
    "roi_slices": {"clipped_px": "INTEGER[]"},  # pixels of the crop cut at the slice border, per side as in `crop`
    "model_results": {"reason": "VARCHAR"},  # why a fit failed (metric 'failed') or a small-sample warning
}

LOCK_RETRY_SECONDS = 120.0  # how long a write waits for another process' short write (parallel patient runs)
LOCK_WAIT_ENV = "CSSCI_LOCK_WAIT_SECONDS"  # overrides it, e.g. to fail fast on a DuckDB session left open
# Retries while another process holds the lock: 50 ms, doubling up to this. The holds are short writes (tens to
# hundreds of ms); a longer pause mostly sleeps past the moment the lock was freed (with 1 s, two patient workers
# slept ~9 s of a 38-s ingest), a shorter one burns CPU on failed opens (~8 ms each).
LOCK_RETRY_MAX_DELAY = 0.25


class WarehouseUnavailable(duckdb.IOException, ExplainedError):
    """The warehouse cannot be opened or written; the message says why (full disk, read-only, a folder, a lock
    held by another process: which) and what to do."""


def lock_wait_seconds() -> float:
    """How long `connect` waits for a lock another process holds: CSSCI_LOCK_WAIT_SECONDS, else LOCK_RETRY_SECONDS."""
    text = os.environ.get(LOCK_WAIT_ENV, "").strip()
    try:
        return max(0.0, float(text)) if text else LOCK_RETRY_SECONDS
    except ValueError:
        raise WarehouseUnavailable(f"{LOCK_WAIT_ENV}={text!r} is not a number of seconds") from None


def warehouse_server() -> str | None:
    """The PostgreSQL URL of the cluster profile's warehouse (set from the cluster file by every command); None for
    the local DuckDB file."""
    return os.environ.get(WAREHOUSE_SERVER_ENV, "").strip() or None


@contextmanager
def connect(path: Path, read_only: bool = False, lock_wait: float | None = None) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating tables on first write), waiting up to `lock_wait` seconds (default
    `lock_wait_seconds()`) while another process holds it: first for the platform's lock file beside it
    (`PlatformLock`), then for DuckDB's own lock (a session outside the platform). Raises `WarehouseUnavailable`
    naming the cause."""
    path = Path(path)
    server = warehouse_server()
    if server is not None:  # the cluster profile's PostgreSQL: no file, no lock
        from cssci_platform.lib.warehouse_server import connect_server  # the postgres extension: only there

        with connect_server(server, path, read_only) as con:
            yield con
        return
    _prepare_folder(path)
    wait = lock_wait_seconds() if lock_wait is None else lock_wait
    deadline = time.monotonic() + wait
    with PLATFORM_LOCKS.holding(path, read_only, deadline, wait):
        con = _open(path, read_only, deadline, wait)
        try:
            if not read_only:
                try:
                    ensure_schema(con)
                except duckdb.Error as error:
                    raise _unavailable(path, error) from None
            yield con
        finally:
            con.close()


class PlatformLock:
    """`<warehouse>.lock` beside the DuckDB file, locked (flock) by every process of the platform while it has the
    warehouse open: exclusively to write, shared to read, as DuckDB locks the file itself.

    DuckDB cannot wait for its lock: an open fails at once while another process holds the file, so a waiting
    process must retry, and each failed open costs ~8 ms of CPU (a database instance is created). Backing off between
    retries slept past the moment the lock was freed (two patient workers of a 24-patient ingest waited ~9 s of their
    ~38 s); the lock file is polled every `POLL_SECONDS` for a system call's cost, so a waiting process opens the
    warehouse right after the other closes it. Processes outside the platform (a user's DuckDB session) do not take
    it: for them `_open` still retries DuckDB's own lock. Nested or concurrent opens of one process share its lock
    (DuckDB shares its database instance within a process); the kernel releases it when a process dies."""

    POLL_SECONDS = 0.005
    SUFFIX = ".lock"

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held: dict[Path, tuple[int, int, int]] = {}  # lock file -> (fd, users, owning pid)

    @contextmanager
    def holding(self, warehouse: Path, read_only: bool, deadline: float, wait: float) -> Iterator[None]:
        real = Path(os.path.realpath(warehouse))  # one lock per file, however the path is spelled
        lock_file = real.with_name(real.name + self.SUFFIX)
        fd = self._enter(lock_file, read_only, deadline, wait, warehouse)
        try:
            yield
        finally:
            self._leave(lock_file, fd)

    def _enter(self, lock_file: Path, read_only: bool, deadline: float, wait: float, warehouse: Path) -> int | None:
        with self._guard:
            held = self._held.get(lock_file)
            if held is not None and held[2] == os.getpid():
                self._held[lock_file] = (held[0], held[1] + 1, held[2])
                return held[0]
        fd = _open_lock_file(lock_file)
        if fd is None:  # cannot create it (a read-only folder): DuckDB's own lock alone decides
            return None
        mode = fcntl.LOCK_SH if read_only else fcntl.LOCK_EX
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    holder = _lock_holder(fd)
                    os.close(fd)
                    raise WarehouseUnavailable(
                        f"the warehouse {warehouse} is locked by another process of the platform{holder} (waited "
                        f"{wait:.0f} s): wait for that command or run to finish and run the command again; set "
                        f"{LOCK_WAIT_ENV} to wait longer for it.") from None
                time.sleep(self.POLL_SECONDS)
        if not read_only:
            _name_holder(fd)
        with self._guard:
            self._held[lock_file] = (fd, 1, os.getpid())
        return fd

    def _leave(self, lock_file: Path, fd: int | None) -> None:
        if fd is None:
            return
        with self._guard:
            held = self._held.get(lock_file)
            if held is not None and held[0] == fd and held[1] > 1:
                self._held[lock_file] = (fd, held[1] - 1, held[2])
                return
            self._held.pop(lock_file, None)
        _name_holder(fd, clear=True)
        os.close(fd)  # releases the flock


def _open_lock_file(lock_file: Path) -> int | None:
    for flags in (os.O_RDWR | os.O_CREAT, os.O_RDONLY):
        try:
            return os.open(lock_file, flags, 0o644)
        except OSError:
            continue
    return None


def _name_holder(fd: int, clear: bool = False) -> None:
    """The writer's PID in the lock file, for the message of a process that waited in vain; best effort (a lock file
    opened read-only, on a file system turned read-only, cannot be written: DuckDB then says why the write fails)."""
    try:
        os.ftruncate(fd, 0)
        if not clear:
            os.pwrite(fd, str(os.getpid()).encode(), 0)
    except OSError:
        pass


def _lock_holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode().strip()
    except OSError:
        return ""
    return f" (PID {pid})" if pid.isdigit() else ""


PLATFORM_LOCKS = PlatformLock()


def _prepare_folder(path: Path) -> None:
    if path.is_dir():
        raise WarehouseUnavailable(f"the warehouse {path} is a folder, but a DuckDB file is expected there: point "
                                   "CSSCI_WAREHOUSE at a file (e.g. <folder>/warehouse.duckdb) or remove the folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:  # a file has the folder's name
        raise _unavailable(path.parent, NotADirectoryError(f"{path.parent} is a file, not a directory")) from None
    except OSError as error:
        raise _unavailable(path.parent, error) from None


def _open(path: Path, read_only: bool, deadline: float, wait: float) -> duckdb.DuckDBPyConnection:
    """DuckDB's own lock retried until `deadline` (the connection's, shared with the lock file's wait: `wait` s in
    all, as the message says)."""
    delay = 0.05
    while True:
        try:
            return duckdb.connect(str(path), read_only=read_only and path.exists())
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise _unavailable(path, error, wait) from None
            time.sleep(delay)
            delay = min(delay * 2, LOCK_RETRY_MAX_DELAY)


def _unavailable(path: Path, error: Exception, waited: float | None = None) -> WarehouseUnavailable:
    text = f"{type(error).__name__}: {error}"
    message = storage_problem(text, str(path)) or f"cannot open the warehouse {path}: {text}"
    if waited is not None and "lock" in text.lower():
        message += f" (waited {waited:.0f} s)"
    return WarehouseUnavailable(message)


PATIENT_STATUS_VIEW = """
CREATE OR REPLACE VIEW patient_status AS
SELECT p.patient_key, p.center, p.cohort,
       count(q.code) FILTER (WHERE q.severity = 'error') AS errors,
       count(q.code) FILTER (WHERE q.severity = 'warning') AS warnings,
       CASE WHEN count(q.code) FILTER (WHERE q.severity = 'error') > 0 THEN 'quarantined'
            WHEN EXISTS (SELECT 1 FROM radiomics_features r WHERE r.patient_key = p.patient_key) THEN 'features'
            WHEN EXISTS (SELECT 1 FROM scans s WHERE s.patient_key = p.patient_key) THEN 'scanned'
            ELSE 'registered' END AS status,
       string_agg(q.stage || ': ' || q.message, ' | ') FILTER (WHERE q.severity = 'error') AS reasons
FROM patients p LEFT JOIN qc_issues q USING (patient_key)
GROUP BY p.patient_key, p.center, p.cohort
"""


SCHEMA_DIGEST = hashlib.sha256(repr((SCHEMA, ADDED_COLUMNS, PATIENT_STATUS_VIEW)).encode()).hexdigest()[:16]


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create what is missing of the tables, added columns and views; skipped (one read instead of ~25 catalog
    statements per connection) when the file records that this very schema was applied."""
    if schema_applied(con):
        return
    create_schema(con)
    record_schema(con)


def schema_applied(con: duckdb.DuckDBPyConnection) -> bool:
    return _applied_schema(con) == SCHEMA_DIGEST


def create_schema(con: duckdb.DuckDBPyConnection, persistent_views: bool = True) -> None:
    """Create what is missing of the tables, added columns and (where the database can hold DuckDB's: not the
    cluster warehouse) views."""
    for table, columns in SCHEMA.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    for table, added in ADDED_COLUMNS.items():
        for column, kind in added.items():
            con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
    if persistent_views:
        con.execute(PATIENT_STATUS_VIEW)


def record_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Record that SCHEMA_DIGEST was applied, so later connections skip the DDL."""
    with transaction(con):
        con.execute("DELETE FROM warehouse_schema")
        con.execute("INSERT INTO warehouse_schema VALUES (?)", [SCHEMA_DIGEST])


def _applied_schema(con: duckdb.DuckDBPyConnection) -> str | None:
    try:
        row = con.execute("SELECT digest FROM warehouse_schema").fetchone()
    except duckdb.CatalogException:  # a warehouse written before the schema was recorded, or a new one
        return None
    return row[0] if row else None


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[duckdb.DuckDBPyConnection]:
    """Everything written inside is committed together, or rolled back together when anything raises."""
    con.execute("BEGIN TRANSACTION")
    try:
        yield con
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def replace_rows(
    con: duckdb.DuckDBPyConnection, table: str, where: Mapping[str, str], rows: Sequence[Mapping] | pl.DataFrame
) -> int:
    """Delete the rows matching `where` and insert `rows`, in one transaction; returns rows inserted."""
    condition = " AND ".join(f"{column} = ?" for column in where) or "TRUE"
    with transaction(con):
        con.execute(f"DELETE FROM {table} WHERE {condition}", list(where.values()))
        return append_rows(con, table, rows)


def append_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Mapping] | pl.DataFrame) -> int:
    """Insert rows without deleting any (the caller deleted what they replace in the same connection)."""
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(list(rows), infer_schema_length=None)
    if frame.height:
        con.register("incoming", frame)
        names = ", ".join(frame.columns)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming")
        con.unregister("incoming")
    return frame.height


WIDE_COLUMN = "sequence || '__' || roi || '__' || channel || '__' || feature"  # a radiomics_wide column's name
PRIMARY = "segmentation = 'primary'"  # radiomics_wide shows the primary segmentation


def replace_patient_radiomics(con: duckdb.DuckDBPyConnection, patient_key: str, rows: pl.DataFrame) -> int:
    """Replace the patient's `radiomics_features` rows and keep `radiomics_wide` in step, in one transaction; returns
    the view's feature columns. The view is re-created only when this write can change its columns: when the patient
    brings a feature the view lacks, or drops one it had (which may have been the last of its name). Re-creating it
    scans the whole table, which at 200 patients cost more than the rest of the patient's writes.
    The cluster warehouse keeps no such view (lib/warehouse_server.py): there it returns the patient's feature columns.
    """
    if _wide_tables_of_server(con) is not None:
        replace_rows(con, "radiomics_features", {"patient_key": patient_key}, rows)
        return len(_feature_names(con, f"patient_key = ? AND {PRIMARY}", [patient_key]))
    with transaction(con):
        before = _feature_names(con, f"patient_key = ? AND {PRIMARY}", [patient_key])
        con.execute("DELETE FROM radiomics_features WHERE patient_key = ?", [patient_key])
        append_rows(con, "radiomics_features", rows)
        after = _feature_names(con, f"patient_key = ? AND {PRIMARY}", [patient_key])
        columns = _wide_view_columns(con)
        if columns is not None and after <= columns and before <= after:
            return len(columns)
        return refresh_radiomics_wide_view(con)


def _feature_names(con: duckdb.DuckDBPyConnection, condition: str, parameters: list) -> set[str]:
    query = f"SELECT DISTINCT {WIDE_COLUMN} FROM radiomics_features WHERE {condition}"
    return {row[0] for row in con.execute(query, parameters).fetchall()}


def _wide_view_columns(con: duckdb.DuckDBPyConnection) -> set[str] | None:
    """The feature columns of `radiomics_wide` as the catalog has them; None when there is no such view."""
    found = con.execute("SELECT column_name FROM duckdb_columns() WHERE table_name = 'radiomics_wide' "
                        "AND schema_name = 'main'").fetchall()
    return {name for (name,) in found} - {"patient_key"} if found else None


def refresh_radiomics_wide_view(con: duckdb.DuckDBPyConnection) -> int:
    """(Re)create `radiomics_wide`: one row per patient, one column per sequence/roi/channel/feature of
    the primary segmentation. DuckDB views cannot pivot on values found in the data, so the column list
    is spelled out from the current table; returns the number of feature columns."""
    column_names = sorted(_feature_names(con, PRIMARY, []))
    if not column_names:
        con.execute("CREATE OR REPLACE VIEW radiomics_wide AS SELECT DISTINCT patient_key FROM radiomics_features")
        return 0
    values = ", ".join("'" + name.replace("'", "''") + "'" for name in column_names)
    con.execute(
        "CREATE OR REPLACE VIEW radiomics_wide AS PIVOT ("
        f" SELECT patient_key, {WIDE_COLUMN} AS name, value"
        f" FROM radiomics_features WHERE {PRIMARY}"
        f") ON name IN ({values}) USING first(value) GROUP BY patient_key"
    )
    return len(column_names)


def table_frame(path: Path, sql: str, parameters: Sequence | None = None) -> pl.DataFrame:
    """Run a read query against the warehouse and return a polars frame."""
    with connect(path, read_only=True) as con:
        return con.execute(sql, parameters or []).pl()


def write_wide_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Replace a whole cohort-level wide table (its columns depend on the configuration) in one transaction (in the
    cluster warehouse: its Parquet file, replaced atomically)."""
    folder = _wide_tables_of_server(con)
    if folder is not None:
        from cssci_platform.lib.warehouse_server import write_wide_parquet

        write_wide_parquet(con, folder, table, frame)
        return
    with transaction(con):
        con.register("incoming_wide", frame)
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM incoming_wide")
        con.unregister("incoming_wide")


def _wide_tables_of_server(con: duckdb.DuckDBPyConnection) -> Path | None:
    """The wide tables' folder where `con` is a cluster warehouse connection, else None (the local file)."""
    if warehouse_server() is None:
        return None
    from cssci_platform.lib.warehouse_server import server_wide_tables

    return server_wide_tables(con)
