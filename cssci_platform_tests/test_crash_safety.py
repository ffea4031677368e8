"""What must survive a SIGKILL: a real dagster-daemon killed while its sensor submits 60 arrivals' runs, and
`cssci ingest` killed while patients are being written. Both are checked against an uninterrupted reference."""

import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest
import yaml

from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform_tests.study_files import write_study

pytestmark = pytest.mark.timeout(900)
ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
ARRIVALS = 60  # enough that the kill lands mid-submission: a fast daemon submits ~10 runs a second, a slow one ~1
STALL_LIMIT = 120  # seconds without a new run before the wait fails (a slow CI machine submits ~1 run a second)
# Runs are queued and never launched: the test is about what the sensor requests, not about processing.
PAUSED_INSTANCE = {
    "run_coordinator": {
        "module": "dagster.core.run_coordinator",
        "class": "QueuedRunCoordinator",
        "config": {"max_concurrent_runs": 0},
    },
    "telemetry": {"enabled": False},
}


def _cohort_with_arrivals(root: Path, count: int) -> Path:
    """One development patient and `count` inbox arrivals whose files are small and distinct (the sensor only
    checks that they exist, are stable and stay inside their folder; it never opens images)."""
    manifest = write_sci_cohort(root / "cohort", n_development=1, n_prospective=0, seed=31, second_rater_fraction=0)
    spec = yaml.safe_load(manifest.read_text(encoding="utf-8"))
    manifest.write_text(yaml.safe_dump({**spec, "inbox": "inbox"}, sort_keys=False), encoding="utf-8")
    template = pl.read_csv(root / "cohort" / "patients.csv", infer_schema=False).row(0, named=True)
    for index in range(count):
        patient_id = f"ARR-{index:04d}"
        folder = root / "cohort" / "inbox" / patient_id
        folder.mkdir(parents=True)
        row = {
            **template,
            "patient_id": patient_id,
            "cohort": "prospective",
            "good_outcome": None,
            "outcome_date": None,
        }
        for column, value in template.items():
            if column.startswith(("image__", "mask__")) and value:
                row[column] = Path(value).name
                (folder / row[column]).write_bytes(f"{patient_id}:{column}".encode())
        pl.DataFrame([row], schema={k: pl.String for k in row}).write_csv(folder / "patient.csv")
        (folder / "READY").touch()
    return manifest


def _environment(root: Path, manifest: Path) -> dict[str, str]:
    home = root / "dagster_home"
    home.mkdir(exist_ok=True)
    (home / "dagster.yaml").write_text(yaml.safe_dump(PAUSED_INSTANCE), encoding="utf-8")
    return {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "CSSCI_MANIFEST": str(manifest),
        "CSSCI_WAREHOUSE": str(root / "w.duckdb"),
        "CSSCI_IMAGE_STORE": str(root / "store"),
        "CSSCI_MLFLOW_URI": f"sqlite:///{root / 'mlflow.db'}",
        "CSSCI_HOME": str(root),
        "CSSCI_EXPERIMENT_CONFIG": str(write_study(root, manifest)),
    }  # the study the daemon's runs read


def _start_daemon(environment: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "dagster-daemon"), "run", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=environment,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


def _arrival_runs(instance: dg.DagsterInstance) -> list[str]:
    return [
        run.tags.get("dagster/run_key", "")
        for run in instance.get_runs()
        if run.tags.get("dagster/run_key", "").startswith("arrival:")
    ]


def _wait(condition, seconds: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(
                f"{what} not reached in {seconds:.0f} s; daemon log:\n{log.read_text(errors='replace')[-4000:]}"
            )
        time.sleep(0.02)


def _wait_while_growing(count, target: int, what: str, log: Path) -> None:
    """Wait until `count()` reaches `target`, failing only when it stops growing for STALL_LIMIT seconds: how fast
    a daemon submits runs depends on the machine (a fixed deadline failed CI on a slow one at 1 run a second)."""
    seen, last_change = count(), time.monotonic()
    while seen < target:
        if time.monotonic() - last_change > STALL_LIMIT:
            pytest.fail(
                f"{what}: stuck at {seen} for {STALL_LIMIT} s; daemon log:\n{log.read_text(errors='replace')[-4000:]}"
            )
        time.sleep(0.2)
        now = count()
        if now != seen:
            seen, last_change = now, time.monotonic()


@pytest.mark.long_running
def test_a_daemon_killed_while_submitting_arrivals_runs_each_arrival_exactly_once(tmp_path: Path) -> None:
    manifest = _cohort_with_arrivals(tmp_path, ARRIVALS)
    environment = _environment(tmp_path, manifest)
    started = subprocess.run(
        [str(BIN / "dagster"), "sensor", "start", "new_patient_sensor", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert started.returncode == 0, started.stderr[-3000:]
    log = tmp_path / "daemon.log"
    with dg.DagsterInstance.from_config(environment["DAGSTER_HOME"]) as instance:
        daemon = _start_daemon(environment, log)
        try:
            _wait(lambda: len(_arrival_runs(instance)) > 0, 240, "a first arrival run", log)
        finally:
            _kill(daemon)  # SIGKILL while the tick is submitting runs
        at_kill = len(_arrival_runs(instance))
        daemon = _start_daemon(environment, log)
        try:
            _wait_while_growing(lambda: len(_arrival_runs(instance)), ARRIVALS, f"{ARRIVALS} arrival runs", log)
            time.sleep(40)  # one more tick (minimum interval 30 s) must request nothing new
        finally:
            _kill(daemon)
        keys = _arrival_runs(instance)
    assert 0 < at_kill < ARRIVALS, f"the kill landed after {at_kill} of {ARRIVALS} submissions; it must interrupt them"
    per_patient = Counter(key.split(":")[1] for key in keys)
    assert len(keys) == ARRIVALS and set(per_patient.values()) == {1}
    assert sorted(per_patient) == [f"ARR-{i:04d}" for i in range(ARRIVALS)]
    admitted = pl.read_csv(manifest.parent / "admitted_patients.csv", infer_schema=False)
    assert admitted.height == ARRIVALS and admitted["patient_id"].n_unique() == ARRIVALS


# Nine warehouse tables a patient run writes; timestamps and the home folder are normalized away.
PATIENT_TABLES = {
    "patients": ["patient_key"],
    "clinical": ["patient_key", "variable"],
    "outcomes": ["patient_key", "outcome"],
    "scans": ["patient_key", "path"],
    "qc_issues": ["patient_key", "code", "file"],
    "preprocessed_channels": ["patient_key", "sequence", "channel"],
    "preprocessed_masks": ["patient_key", "sequence", "roi", "segmentation"],
    "radiomics_features": ["patient_key", "sequence", "roi", "segmentation", "channel", "feature"],
    "roi_slices": ["patient_key", "sequence", "roi", "channel"],
}
VOLATILE = {"updated_at", "detected_at", "created_at"}


def _tables(warehouse: Path, home: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(warehouse), read_only=True) as con:
        tables = {}
        for table, order in PATIENT_TABLES.items():
            frame = con.execute(f"SELECT * FROM {table} ORDER BY {', '.join(order)}").pl()
            frame = frame.drop([c for c in frame.columns if c in VOLATILE])
            tables[table] = [tuple(str(v).replace(str(home), "<home>") for v in row) for row in frame.rows()]
    return tables


def _ingest(home: Path, manifest: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "cssci"), "ingest", str(manifest), "--home", str(home)],
        cwd=home.parent,
        env={**os.environ, "CI": "true"},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


@pytest.mark.long_running
def test_ingest_killed_mid_run_then_rerun_equals_an_uninterrupted_ingest(tmp_path: Path) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=4, n_prospective=0, seed=41, second_rater_fraction=0)
    home = tmp_path / "home"  # the same home for both (derived file names hash their source paths)
    warehouse = home / "warehouse.duckdb"
    reference = _ingest(home, manifest)
    output = reference.communicate(timeout=600)[0].decode(errors="replace")
    assert reference.returncode == 0, output[-3000:]
    uninterrupted = _tables(warehouse, home)
    shutil.rmtree(home)

    interrupted = _ingest(home, manifest)
    deadline = time.monotonic() + 600
    while not _some_radiomics(warehouse) and interrupted.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    assert interrupted.poll() is None, "ingest finished before it could be killed"
    os.killpg(interrupted.pid, signal.SIGKILL)
    interrupted.wait(timeout=30)
    rerun = _ingest(home, manifest)
    output = rerun.communicate(timeout=600)[0].decode(errors="replace")
    assert rerun.returncode == 0, output[-3000:]
    assert _tables(warehouse, home) == uninterrupted


def _some_radiomics(warehouse: Path) -> bool:
    """Whether the first patient's features are in (the ingest is mid-way); False while the file is locked or new."""
    if not warehouse.exists():
        return False
    copy = warehouse.with_name("peek.duckdb")
    try:
        shutil.copyfile(warehouse, copy)
        if warehouse.with_name(warehouse.name + ".wal").exists():
            shutil.copyfile(warehouse.with_name(warehouse.name + ".wal"), copy.with_name(copy.name + ".wal"))
        with duckdb.connect(str(copy), read_only=True) as con:
            return con.execute("SELECT count(DISTINCT patient_key) FROM radiomics_features").fetchone()[0] > 0
    except (duckdb.Error, OSError):
        return False
    finally:
        copy.unlink(missing_ok=True)
        copy.with_name(copy.name + ".wal").unlink(missing_ok=True)
