"""The DuckDB warehouse: table definitions and per-patient replace writes.

Tables are long and tidy. Every per-patient write replaces that patient's rows in one transaction, so a
re-materialization (e.g. after a file was fixed) leaves no stale rows and never touches other patients.
DuckDB allows one writing process per file: connections are short-lived and retried while another
process (a parallel patient run) holds the lock.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl

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
        slice_index INTEGER, roi_area_px INTEGER, crop INTEGER[], slice_path VARCHAR, settings_digest VARCHAR""",
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
        metric VARCHAR, value DOUBLE, run_id VARCHAR, split VARCHAR, fold VARCHAR, created_at TIMESTAMP""",
    "prospective_predictions": """patient_key VARCHAR, center VARCHAR, signature VARCHAR, class_label VARCHAR,
        probability DOUBLE, risk_group VARCHAR, registered_model VARCHAR, model_version VARCHAR, run_id VARCHAR,
        predicted_at TIMESTAMP""",
    "inbox_events": """source VARCHAR, patient_key VARCHAR, status VARCHAR, reason VARCHAR, digest VARCHAR,
        seen_at TIMESTAMP""",
    "validation_metrics": """registered_model VARCHAR, model_version VARCHAR, signature VARCHAR, n_patients INTEGER,
        metric VARCHAR, value DOUBLE, test_auc_low DOUBLE, below_test_ci BOOLEAN, computed_at TIMESTAMP""",
    "predictions": """patient_key VARCHAR, cohort VARCHAR, role VARCHAR, signature VARCHAR, classifier VARCHAR,
        mode VARCHAR, split VARCHAR, fold VARCHAR, class_label VARCHAR, probability DOUBLE, model_name VARCHAR,
        model_version VARCHAR, created_at TIMESTAMP, label VARCHAR""",
}
# Columns added after a table first shipped: existing warehouses get them on the next write.
ADDED_COLUMNS = {"predictions": {"label": "VARCHAR"}}  # label: the outcome each model was evaluated against

LOCK_RETRY_SECONDS = 120.0


@contextmanager
def connect(path: Path, read_only: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
    """Open the warehouse (creating tables on first write), retrying while another process holds the lock."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline, delay = time.monotonic() + LOCK_RETRY_SECONDS, 0.05
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only and path.exists())
            break
        except duckdb.IOException as error:
            if "lock" not in str(error).lower() or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 1.0)
    try:
        if not read_only:
            ensure_schema(con)
        yield con
    finally:
        con.close()


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


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    for table, columns in SCHEMA.items():
        con.execute(f"CREATE TABLE IF NOT EXISTS {table} ({columns})")
    for table, added in ADDED_COLUMNS.items():
        for column, kind in added.items():
            con.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {kind}")
    con.execute(PATIENT_STATUS_VIEW)


def replace_rows(con: duckdb.DuckDBPyConnection, table: str, where: Mapping[str, str], rows: Sequence[Mapping] | pl.DataFrame) -> int:
    """Delete the rows matching `where` and insert `rows`, in one transaction; returns rows inserted."""
    condition = " AND ".join(f"{column} = ?" for column in where) or "TRUE"
    con.execute("BEGIN TRANSACTION")
    try:
        con.execute(f"DELETE FROM {table} WHERE {condition}", list(where.values()))
        inserted = append_rows(con, table, rows)
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
    return inserted


def append_rows(con: duckdb.DuckDBPyConnection, table: str, rows: Sequence[Mapping] | pl.DataFrame) -> int:
    """Insert rows without deleting any (the caller deleted what they replace in the same connection)."""
    frame = rows if isinstance(rows, pl.DataFrame) else pl.DataFrame(list(rows), infer_schema_length=None)
    if frame.height:
        con.register("incoming", frame)
        names = ", ".join(frame.columns)
        con.execute(f"INSERT INTO {table} ({names}) SELECT {names} FROM incoming")
        con.unregister("incoming")
    return frame.height


def refresh_radiomics_wide_view(con: duckdb.DuckDBPyConnection) -> int:
    """(Re)create `radiomics_wide`: one row per patient, one column per sequence/roi/channel/feature of
    the primary segmentation. DuckDB views cannot pivot on values found in the data, so the column list
    is spelled out from the current table; returns the number of feature columns."""
    column_names = [
        row[0] for row in con.execute(
            "SELECT DISTINCT sequence || '__' || roi || '__' || channel || '__' || feature AS name "
            "FROM radiomics_features WHERE segmentation = 'primary' ORDER BY name"
        ).fetchall()
    ]
    if not column_names:
        con.execute("CREATE OR REPLACE VIEW radiomics_wide AS SELECT DISTINCT patient_key FROM radiomics_features")
        return 0
    values = ", ".join("'" + name.replace("'", "''") + "'" for name in column_names)
    con.execute(
        "CREATE OR REPLACE VIEW radiomics_wide AS PIVOT ("
        " SELECT patient_key, sequence || '__' || roi || '__' || channel || '__' || feature AS name, value"
        " FROM radiomics_features WHERE segmentation = 'primary'"
        f") ON name IN ({values}) USING first(value) GROUP BY patient_key"
    )
    return len(column_names)


def table_frame(path: Path, sql: str, parameters: Sequence | None = None) -> pl.DataFrame:
    """Run a read query against the warehouse and return a polars frame."""
    with connect(path, read_only=True) as con:
        return con.execute(sql, parameters or []).pl()


def write_wide_table(con: duckdb.DuckDBPyConnection, table: str, frame: pd.DataFrame) -> None:
    """Replace a whole cohort-level wide table (its columns depend on the configuration) in one transaction."""
    con.execute("BEGIN TRANSACTION")
    try:
        con.register("incoming_wide", frame)
        con.execute(f"CREATE OR REPLACE TABLE {table} AS SELECT * FROM incoming_wide")
        con.unregister("incoming_wide")
        con.execute("COMMIT")
    except Exception:
        con.execute("ROLLBACK")
        raise
