"""The DuckDB warehouse on a real file: schema, per-patient replace writes, views and the lock retry."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

from cssci_platform.lib import warehouse
from cssci_platform.lib.warehouse import SCHEMA, connect, refresh_radiomics_wide_view, replace_rows, table_frame


@pytest.fixture
def db(tmp_path) -> Path:
    return tmp_path / "wh" / "warehouse.duckdb"


def scan_row(key: str, sequence: str = "sag_T2", kind: str = "image", voxels: int = 0) -> dict:
    return {
        "patient_key": key,
        "sequence": sequence,
        "kind": kind,
        "roi": "",
        "segmentation": "",
        "path": f"{key}.nii.gz",
        "sha256": "ab" * 32,
        "size": [20, 24, 16],
        "spacing": [0.8, 0.8, 1.5],
        "origin": [0.0, 0.0, 0.0],
        "direction": [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
        "mask_voxels": voxels,
    }


def feature_rows(
    key: str, values: dict[str, float], segmentation: str = "primary", channel: str = "original"
) -> list[dict]:
    return [
        {
            "patient_key": key,
            "sequence": "sag_T2",
            "roi": "lesion",
            "segmentation": segmentation,
            "channel": channel,
            "feature": name,
            "value": value,
            "extractor_version": "3.1.4",
            "params_name": "default",
            "params_hash": "h",
        }
        for name, value in values.items()
    ]


def issue_row(
    key: str, severity: str = "error", stage: str = "scans", message: str = "m.nii.gz: file not found"
) -> dict:
    return {
        "patient_key": key,
        "stage": stage,
        "code": "missing_file",
        "message": message,
        "fix": "check the path",
        "file": "m.nii.gz",
        "severity": severity,
    }


def rows_of(con, sql: str) -> list[tuple]:
    return con.execute(sql).fetchall()


def test_schema_is_created(db):
    with connect(db) as con:
        tables = {
            r[0]
            for r in rows_of(con, "SELECT table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE'")
        }
        views = {
            r[0] for r in rows_of(con, "SELECT table_name FROM information_schema.tables WHERE table_type = 'VIEW'")
        }
        scans_columns = [
            r[0]
            for r in rows_of(
                con,
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = 'scans' ORDER BY ordinal_position",
            )
        ]
    assert db.is_file()
    assert tables == set(SCHEMA)
    assert "patient_status" in views
    assert scans_columns == [
        "patient_key",
        "sequence",
        "kind",
        "roi",
        "segmentation",
        "path",
        "sha256",
        "size",
        "spacing",
        "origin",
        "direction",
        "mask_voxels",
    ]
    with connect(db) as con:  # a second open keeps the data (CREATE ... IF NOT EXISTS)
        replace_rows(con, "patients", {"patient_key": "P1"}, [{"patient_key": "P1"}])
    with connect(db) as con:
        assert rows_of(con, "SELECT patient_key FROM patients") == [("P1",)]


def test_a_warehouse_of_an_older_schema_gets_the_columns_added_since(db):
    """The schema is applied once per file and version: a file whose recorded schema is another version (or none)
    gets what is missing on the next connection, with its rows kept."""
    with connect(db) as con:
        replace_rows(con, "patients", {"patient_key": "P1"}, [{"patient_key": "P1"}])
        con.execute("ALTER TABLE predictions DROP COLUMN label")  # as a warehouse written before `label` shipped
        con.execute("DROP VIEW patient_status")
        con.execute("DELETE FROM warehouse_schema")
    with connect(db) as con:
        assert "label" in con.execute("SELECT * FROM predictions").pl().columns
        assert rows_of(con, "SELECT patient_key, status FROM patient_status") == [("P1", "registered")]
        assert rows_of(con, "SELECT digest FROM warehouse_schema") == [(warehouse.SCHEMA_DIGEST,)]
    with connect(db) as con:
        con.execute("UPDATE warehouse_schema SET digest = 'an older version'")
        con.execute("ALTER TABLE roi_slices DROP COLUMN clipped_px")
    with connect(db) as con:
        assert "clipped_px" in con.execute("SELECT * FROM roi_slices").pl().columns


def test_patients_primary_key(db):
    with connect(db) as con:
        replace_rows(con, "patients", {"patient_key": "P1"}, [{"patient_key": "P1", "center": "A"}])
        with pytest.raises(duckdb.ConstraintException):
            con.execute("INSERT INTO patients (patient_key) VALUES ('P1')")


def test_replace_rows_touches_only_the_matching_patient(db):
    with connect(db) as con:
        assert (
            replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1"), scan_row("P1", kind="mask", voxels=384)])
            == 2
        )
        assert replace_rows(con, "scans", {"patient_key": "P2"}, [scan_row("P2")]) == 1
        assert replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1", sequence="sag_T1")]) == 1
        assert rows_of(con, "SELECT patient_key, sequence, kind FROM scans ORDER BY ALL") == [
            ("P1", "sag_T1", "image"),
            ("P2", "sag_T2", "image"),
        ]
        assert rows_of(con, "SELECT size, spacing FROM scans WHERE patient_key = 'P2'") == [
            ([20, 24, 16], [0.8, 0.8, 1.5])
        ]
        assert replace_rows(con, "scans", {"patient_key": "P1"}, []) == 0  # empty: deletes only
        assert rows_of(con, "SELECT patient_key FROM scans") == [("P2",)]


def test_replace_rows_with_a_compound_key_and_a_polars_frame(db):
    with connect(db) as con:
        replace_rows(con, "qc_issues", {"patient_key": "P1"}, [issue_row("P1", stage="manifest"), issue_row("P1")])
        replace_rows(con, "qc_issues", {"patient_key": "P2"}, [issue_row("P2")])
        frame = pl.DataFrame([issue_row("P1", message="new")])
        assert replace_rows(con, "qc_issues", {"patient_key": "P1", "stage": "scans"}, frame) == 1
        assert rows_of(con, "SELECT patient_key, stage, message FROM qc_issues ORDER BY ALL") == [
            ("P1", "manifest", "m.nii.gz: file not found"),
            ("P1", "scans", "new"),
            ("P2", "scans", "m.nii.gz: file not found"),
        ]
        assert rows_of(con, "SELECT count(*) FROM qc_issues WHERE detected_at IS NULL") == [(0,)]


def test_all_null_column_is_inserted(db):
    with connect(db) as con:
        replace_rows(
            con,
            "patients",
            {"patient_key": "P1"},
            [{"patient_key": "P1", "center": "A", "outcome_date": None, "manifest_line": 2}],
        )
        assert rows_of(con, "SELECT patient_key, outcome_date, manifest_line FROM patients") == [("P1", None, 2)]


@pytest.mark.parametrize(
    "bad_rows, error",
    [
        ([{"patient_key": "P1", "no_such_column": 1}], duckdb.BinderException),
        ([scan_row("P1") | {"mask_voxels": "many"}], duckdb.ConversionException),
    ],
)
def test_failing_insert_rolls_back(db, bad_rows, error):
    with connect(db) as con:
        replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1")])
        replace_rows(con, "scans", {"patient_key": "P2"}, [scan_row("P2")])
        with pytest.raises(error):
            replace_rows(con, "scans", {"patient_key": "P1"}, bad_rows)
        assert rows_of(con, "SELECT patient_key FROM scans ORDER BY ALL") == [("P1",), ("P2",)]
        # the connection is still usable afterwards
        assert replace_rows(con, "scans", {"patient_key": "P1"}, [scan_row("P1", sequence="sag_T1")]) == 1
    with connect(db) as con:
        assert rows_of(con, "SELECT patient_key, sequence FROM scans ORDER BY ALL") == [
            ("P1", "sag_T1"),
            ("P2", "sag_T2"),
        ]


def test_radiomics_wide_view(db):
    with connect(db) as con:
        assert refresh_radiomics_wide_view(con) == 0
        assert rows_of(con, "SELECT * FROM radiomics_wide") == []
        replace_rows(
            con,
            "radiomics_features",
            {"patient_key": "P1"},
            feature_rows("P1", {"firstorder_Mean": 0.5, "glcm_Contrast": 2.0})
            + feature_rows("P1", {"firstorder_Mean": 0.9}, segmentation="rater2")
            + feature_rows("P1", {"firstorder_Mean": 0.4}, channel="gaussian"),
        )
        replace_rows(
            con,
            "radiomics_features",
            {"patient_key": "P2"},
            feature_rows("P2", {"firstorder_Mean": 0.6, "glcm_Contrast": 3.0})
            + feature_rows("P2", {"firstorder_Mean": 0.3}, channel="gaussian"),
        )
        assert refresh_radiomics_wide_view(con) == 3
        wide = con.execute("SELECT * FROM radiomics_wide ORDER BY patient_key").pl()
        assert wide.columns == [
            "patient_key",
            "sag_T2__lesion__gaussian__firstorder_Mean",
            "sag_T2__lesion__original__firstorder_Mean",
            "sag_T2__lesion__original__glcm_Contrast",
        ]
        assert wide.rows() == [("P1", 0.4, 0.5, 2.0), ("P2", 0.3, 0.6, 3.0)]  # rater2 (0.9) is left out
        # new features arrive: a new patient and a new feature
        replace_rows(
            con,
            "radiomics_features",
            {"patient_key": "P3"},
            feature_rows("P3", {"firstorder_Mean": 0.7, "shape_Sphericity": 0.8}),
        )
        assert refresh_radiomics_wide_view(con) == 4
        wide = con.execute("SELECT * FROM radiomics_wide ORDER BY patient_key").pl()
        assert wide.height == 3 and wide["patient_key"].to_list() == ["P1", "P2", "P3"]
        assert wide.columns[-1] == "sag_T2__lesion__original__shape_Sphericity"
        assert wide.row(2) == ("P3", None, 0.7, None, 0.8)
        assert wide.row(0)[-1] is None


def test_per_patient_radiomics_writes_keep_the_wide_view_exact(db):
    """`replace_patient_radiomics` re-creates the view only when a write can change its columns; after every write of
    a sequence that adds, keeps, drops the last of, and restores features, the view equals a full refresh."""
    sequence = [
        ("P1", {"firstorder_Mean": 0.5, "glcm_Contrast": 2.0}),
        ("P2", {"firstorder_Mean": 0.6, "glcm_Contrast": 3.0}),  # same features: no new column
        ("P2", {"firstorder_Mean": 0.6, "shape_Sphericity": 0.9}),  # adds one, P1 still has glcm_Contrast
        ("P1", {"firstorder_Mean": 0.5}),  # drops the last glcm_Contrast: the column must go
        ("P3", {}),  # a patient without primary features
        ("P1", {"firstorder_Mean": 0.5, "glcm_Contrast": 2.5}),  # brings it back
        ("P2", {}),  # drops the only shape_Sphericity
    ]
    with connect(db) as con:
        for key, values in sequence:
            rows = pl.DataFrame(feature_rows(key, values) + feature_rows(key, {"firstorder_Mean": 0.1}, "rater2"))
            columns = warehouse.replace_patient_radiomics(con, key, rows)
            incremental = con.execute("SELECT * FROM radiomics_wide ORDER BY patient_key").pl()
            assert columns == refresh_radiomics_wide_view(con)
            refreshed = con.execute("SELECT * FROM radiomics_wide ORDER BY patient_key").pl()
            assert incremental.columns == refreshed.columns and incremental.rows() == refreshed.rows()
        assert con.execute("SELECT * FROM radiomics_wide").pl().columns == [
            "patient_key", "sag_T2__lesion__original__firstorder_Mean", "sag_T2__lesion__original__glcm_Contrast"]


def test_a_failed_radiomics_write_leaves_rows_and_view_as_they_were(db):
    with connect(db) as con:
        warehouse.replace_patient_radiomics(con, "P1", pl.DataFrame(feature_rows("P1", {"firstorder_Mean": 0.5})))
        bad = pl.DataFrame(feature_rows("P1", {"glcm_Contrast": 1.0})).with_columns(value=pl.lit("not a number"))
        with pytest.raises(duckdb.ConversionException):
            warehouse.replace_patient_radiomics(con, "P1", bad)
        assert con.execute("SELECT * FROM radiomics_wide").pl().rows() == [("P1", 0.5)]


def test_wide_view_quotes_odd_names(db):
    with connect(db) as con:
        replace_rows(con, "radiomics_features", {"patient_key": "P1"}, feature_rows("P1", {"it's": 1.0}))
        assert refresh_radiomics_wide_view(con) == 1
        assert con.execute("SELECT * FROM radiomics_wide").pl().columns == [
            "patient_key",
            "sag_T2__lesion__original__it's",
        ]


def test_patient_status_view(db):
    with connect(db) as con:
        for key in ("P1", "P2", "P3", "P4", "P5"):
            replace_rows(
                con, "patients", {"patient_key": key}, [{"patient_key": key, "center": "A", "cohort": "development"}]
            )
        replace_rows(con, "scans", {"patient_key": "P2"}, [scan_row("P2")])
        replace_rows(con, "scans", {"patient_key": "P3"}, [scan_row("P3")])
        replace_rows(con, "radiomics_features", {"patient_key": "P3"}, feature_rows("P3", {"f": 1.0}))
        replace_rows(con, "scans", {"patient_key": "P4"}, [scan_row("P4")])
        replace_rows(con, "radiomics_features", {"patient_key": "P4"}, feature_rows("P4", {"f": 1.0}))
        replace_rows(
            con,
            "qc_issues",
            {"patient_key": "P4"},
            [issue_row("P4", message="a.nii.gz: file not found"), issue_row("P4", "warning", "manifest", "w")],
        )
        replace_rows(con, "qc_issues", {"patient_key": "P5"}, [issue_row("P5", "warning", "manifest", "w")])
        status = rows_of(
            con, "SELECT patient_key, errors, warnings, status, reasons FROM patient_status ORDER BY patient_key"
        )
        assert status == [
            ("P1", 0, 0, "registered", None),
            ("P2", 0, 0, "scanned", None),
            ("P3", 0, 0, "features", None),
            ("P4", 1, 1, "quarantined", "scans: a.nii.gz: file not found"),
            ("P5", 0, 1, "registered", None),
        ]
        replace_rows(con, "qc_issues", {"patient_key": "P4"}, [])  # the file was fixed
        assert rows_of(con, "SELECT status FROM patient_status WHERE patient_key = 'P4'") == [("features",)]


def test_table_frame_reads_a_polars_frame(db):
    with connect(db) as con:
        replace_rows(con, "patients", {"patient_key": "P1"}, [{"patient_key": "P1", "center": "A"}])
        replace_rows(con, "patients", {"patient_key": "P2"}, [{"patient_key": "P2", "center": "B"}])
    frame = table_frame(db, "SELECT patient_key, center FROM patients WHERE center = ? ORDER BY 1", ["B"])
    assert isinstance(frame, pl.DataFrame) and frame.rows() == [("P2", "B")]


HOLDER = textwrap.dedent("""
    import sys, time, duckdb
    con = duckdb.connect(sys.argv[1])
    con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    con.close()
""")


PLATFORM_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from cssci_platform.lib.warehouse import connect
    with connect(Path(sys.argv[1])) as con:
        con.execute("CREATE TABLE IF NOT EXISTS held (x INTEGER)")
        print("locked", flush=True)
        time.sleep(float(sys.argv[2]))
""")


def hold_lock(path: Path, seconds: float, holder_script: str = HOLDER) -> subprocess.Popen:
    """Another process with the warehouse open for `seconds`: a bare DuckDB session (HOLDER) or one of the platform
    (PLATFORM_HOLDER)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    holder = subprocess.Popen(
        [sys.executable, "-c", holder_script, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


def test_second_process_waits_for_the_lock(db, monkeypatch):
    holder = hold_lock(db, 1.5)
    try:
        monkeypatch.setattr(warehouse, "LOCK_RETRY_SECONDS", 0.2)
        started = time.monotonic()
        with pytest.raises(duckdb.IOException, match="(?i)lock"):
            with connect(db):
                pass
        assert time.monotonic() - started < 1.2  # gave up after the deadline, while the lock was still held
        monkeypatch.setattr(warehouse, "LOCK_RETRY_SECONDS", 20.0)
        with connect(db) as con:
            waited = time.monotonic() - started
            replace_rows(con, "patients", {"patient_key": "P1"}, [{"patient_key": "P1"}])
            assert rows_of(con, "SELECT count(*) FROM held") == [(0,)]  # the other process' table is there
        assert 0.5 < waited < 10.0
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_other_io_errors_are_not_retried(tmp_path, monkeypatch):
    monkeypatch.setattr(warehouse, "LOCK_RETRY_SECONDS", 30.0)
    folder = tmp_path / "a_folder.duckdb"
    folder.mkdir()
    started = time.monotonic()
    with pytest.raises(duckdb.Error):
        with connect(folder):
            pass
    assert time.monotonic() - started < 5.0


def counting_failed_opens(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """DuckDB opens of this process that failed (each creates a database instance: ~8 ms of CPU)."""
    failed: list[str] = []
    real_connect = duckdb.connect

    def connect_counting(*args, **kwargs):
        try:
            return real_connect(*args, **kwargs)
        except duckdb.Error as error:
            failed.append(str(error))
            raise

    monkeypatch.setattr(duckdb, "connect", connect_counting)
    return failed


def test_a_writer_waiting_for_another_platform_writer_waits_on_the_lock_file_not_on_failed_opens(db, monkeypatch):
    """Two patient workers write to one warehouse: the one that waits must get it as soon as the other closes it,
    without opening DuckDB again and again (a failed open costs ~8 ms of CPU; backing off between them slept past
    the release: ~9 s of a 38-s ingest)."""
    holder = hold_lock(db, 1.0, PLATFORM_HOLDER)
    try:
        failed = counting_failed_opens(monkeypatch)
        with connect(db) as con:
            replace_rows(con, "patients", {"patient_key": "P1"}, [{"patient_key": "P1"}])
            assert rows_of(con, "SELECT count(*) FROM held") == [(0,)]
        monkeypatch.undo()
        assert failed == []
        assert holder.wait(timeout=10) == 0
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_a_platform_writer_holding_the_warehouse_past_the_wait_is_named(db, monkeypatch):
    holder = hold_lock(db, 30.0, PLATFORM_HOLDER)
    try:
        monkeypatch.setenv(warehouse.LOCK_WAIT_ENV, "0.3")
        with pytest.raises(warehouse.WarehouseUnavailable, match=rf"locked by another process .*\(PID {holder.pid}\)"):
            with connect(db):
                pass
    finally:
        holder.kill()
        holder.wait()


def test_nested_and_concurrent_connections_of_one_process_share_its_lock(db, monkeypatch):
    monkeypatch.setenv(warehouse.LOCK_WAIT_ENV, "0.5")
    with connect(db) as outer, connect(Path(str(db).replace("/", "//"))) as inner:  # the same file spelt otherwise
        replace_rows(inner, "patients", {"patient_key": "P1"}, [{"patient_key": "P1"}])
        assert rows_of(outer, "SELECT count(*) FROM patients") == [(1,)]
    with connect(db, read_only=True) as reader:
        assert rows_of(reader, "SELECT count(*) FROM patients") == [(1,)]
