"""A small study end to end in the `cluster` profile against real servers on 127.0.0.1: PostgreSQL for the Dagster
instance's storage and for the warehouse (its wide tables as Parquet files in the home), the MLflow tracking server
on PostgreSQL with artifacts proxied into a shared folder, Redis as the Celery broker and two `cssci worker`s (one
also on the `gpu` queue) executing the steps of patients, center embeddings, fine-tuning and fit units, one of
whose step processes is killed mid-step and later the whole worker; and the same study in the `local` profile: the
same warehouse tables and the same champions (issue 15)."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg
import pytest
import yaml
from mlflow import MlflowClient

from cssci_platform.lib.profiles import CLUSTER_FILE_ENV, PROFILE_ENV, WAREHOUSE_SERVER_ENV
from cssci_platform.lib.queries.catalog import table_names
from cssci_platform.lib.warehouse import connect
from cssci_platform_tests.cluster.servers import MlflowServer, PostgresServer, stop_process_group, wait_until
from cssci_platform_tests.test_cli_failures import clean_env
from cssci_platform_tests.test_cli_instance_runs import _descendants

VISIBILITY_TIMEOUT_S = 30  # the vanished worker's step goes to the other worker after this (longer than any step here)
pytestmark = [pytest.mark.cluster, pytest.mark.long_running, pytest.mark.timeout(1800)]
STUDY = ["--config", "demo", "--set", "cohort.synthetic.patients=16", "--set", "cohort.synthetic.prospective=2",
         "--set", "models.classifiers=[LR]", "--set", "modes=[leakage_safe]", "--set", "models.cv_folds=3",
         "--set", "preprocessing.channels=[original]", "--set", "deep.channels=[original]",
         "--set", "deep.fine_tuning={backbones: [resnet18], channels: [original], epochs: 1, batch_size: 16}"]
# columns that differ between any two runs of one study: times and Dagster's run ids (MLflow's run and model ids are
# replaced by the model they name)
MLFLOW_ID = re.compile(r"[0-9a-f]{32}")  # a run id outside trained_models (e.g. a Combined model's results)
VIEWS = {"patient_status", "radiomics_wide"}  # derived from the tables (radiomics_wide: local file only)
VOLATILE = {"updated_at", "detected_at", "created_at", "predicted_at", "scored_at", "dagster_run_id"}


def run_study(home: Path, **variables: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cssci_platform.cli.main", "run", *STUDY, "--home", str(home)],
                          env=clean_env(home, CI="true", **variables), cwd=home.parent, capture_output=True,
                          text=True, encoding="utf-8", timeout=1500)


def warehouse_snapshot(home: Path, server: str = "") -> dict[str, list[tuple]]:
    """Every table of the home's warehouse (the local file, or the cluster's PostgreSQL `server` with the wide tables
    beside), read through the platform's connection, sorted, without volatile columns and views, each MLflow run id as
    the model it names (`trained_models`) and the home's path as <home>."""
    os.environ[WAREHOUSE_SERVER_ENV] = server  # restored after the test (conftest: store_variables_restored)
    with connect(home / "warehouse.duckdb", read_only=True) as con:
        models = {}
        for run_id, model_uri, name, mode, fold in con.execute(
                "SELECT run_id, model_uri, result_name, mode, fold FROM trained_models").fetchall():
            models[run_id] = models[model_uri] = f"{name} {mode} {fold}"
        tables = sorted(table_names(con) - VIEWS)
        snapshot = {}
        for table in tables:
            frame = con.execute(f'SELECT * FROM "{table}"').pl()
            frame = frame.drop([c for c in frame.columns if c in VOLATILE])
            rows = [tuple(normalized(v, models, home) for v in row) for row in frame.rows()]
            snapshot[table] = sorted(rows)
    return snapshot


def normalized(value: object, models: dict[str, str], home: Path) -> str:
    text = str(value)
    if text in models:
        return models[text]
    return "<mlflow run id>" if MLFLOW_ID.fullmatch(text) else text.replace(str(home), "<home>")


@contextlib.contextmanager
def running_workers(home: Path, env: dict[str, str],
                    queues: dict[str, str]) -> Iterator[dict[str, subprocess.Popen]]:
    """`cssci worker --name <name> --queues <queues>` for each entry, each in its own session, ready (Celery's
    "ready." in its log) before the study starts; stopped (SIGTERM, then SIGKILL) afterwards."""
    logs = {name: home.parent / f"worker_{name}.log" for name in queues}
    processes: list[subprocess.Popen] = []
    try:
        for name, names in queues.items():
            with logs[name].open("wb") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, "-m", "cssci_platform.cli.main", "worker", "--home", str(home), "--name", name,
                     "--queues", names], env=env, cwd=home.parent, stdout=log, stderr=subprocess.STDOUT,
                    start_new_session=True))
        for (name, log), process in zip(logs.items(), processes):
            wait_until(lambda log=log: " ready." in log.read_text(errors="replace"), f"worker {name}", process, log)
        yield dict(zip(queues, processes))
    finally:
        for process in processes:
            stop_process_group(process)


def step_key(event: str) -> str:
    """The step of an event in the instance's `event_logs` (its serialized EventLogEntry)."""
    return str(json.loads(event)["dagster_event"]["step_key"])


def kill_in_worker(database: str, worker: str, command: subprocess.Popen, step: str, whole_worker: bool,
                   other_than: frozenset[str] = frozenset(), timeout: float = 900) -> str:
    """SIGKILL `worker` as soon as it executes a step whose key contains `step` (its "Executing steps ... in celery
    worker" event), other than the steps `other_than`; returns that step's key. `whole_worker`: the `cssci worker`
    command and its pool (its process group), as a machine that vanished; else only the pool process executing the
    step, as the kernel's OOM killer would end a step that outgrew the machine's memory."""
    deadline = time.monotonic() + timeout
    with psycopg.connect(database, autocommit=True) as connection:
        while time.monotonic() < deadline:
            try:
                events = connection.execute("SELECT event FROM event_logs WHERE event LIKE %s",
                                            (f"%Executing steps %{step}% in celery worker%",)).fetchall()
            except psycopg.errors.UndefinedTable:  # before the study's first command created the instance's tables
                events = []
            time.sleep(0.2)
            for (event,) in events:
                if f"{worker}@" in event and step_key(event) not in other_than:
                    if whole_worker:
                        os.killpg(command.pid, signal.SIGKILL)
                        return step_key(event)
                    below = _descendants(command.pid, {})  # the command is Celery's main process
                    pool = [pid for pid, (parent, _) in below.items() if parent == command.pid]
                    assert len(pool) == 1, below  # one pool process (--concurrency 1)
                    os.kill(pool[0], signal.SIGKILL)
                    return step_key(event)
    raise AssertionError(f"worker {worker} executed no step like {step!r} within {timeout:.0f} s")


def kill_a_step_then_the_worker(database: str, worker: str, command: subprocess.Popen) -> tuple[str, str]:
    """The pool process of one of `worker`'s fit steps, then the whole worker during another: the keys of both."""
    step_process = kill_in_worker(database, worker, command, "fit_unit", whole_worker=False)
    whole = kill_in_worker(database, worker, command, "fit_unit", whole_worker=True,
                           other_than=frozenset({step_process}))
    return step_process, whole


def champions(tracking_uri: str) -> dict[str, dict[str, str]]:
    """Each registered model's champion of the demo study: its tags (signature, classifier, mode, how it was
    chosen)."""
    client = MlflowClient(tracking_uri)
    found = {}
    for model in client.search_registered_models(filter_string="name LIKE 'cssci.demo.%'"):
        version = client.get_model_version_by_alias(model.name, "champion")
        found[model.name] = dict(version.tags)
    return found


def test_a_study_in_the_cluster_profile_equals_the_local_study(tmp_path: Path, postgres_server: PostgresServer,
                                                               mlflow_server: MlflowServer, redis_url: str) -> None:
    home = tmp_path / "home"  # one path for both runs (derived file names hash their source paths)
    local = run_study(home, CSSCI_MLFLOW_URI=f"sqlite:///{tmp_path / 'local_mlflow.db'}")
    assert local.returncode == 0, local.stdout[-3000:] + local.stderr[-3000:]
    local_tables, local_champions = warehouse_snapshot(home), champions(f"sqlite:///{tmp_path / 'local_mlflow.db'}")
    shutil.rmtree(home)

    database = postgres_server.create_database("dagster")
    warehouse = postgres_server.create_database("warehouse")
    server = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}"
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump({"dagster_storage": f"{server}/dagster", "warehouse": f"{server}/warehouse",
                                            "mlflow_tracking_uri": mlflow_server.url, "celery_broker": redis_url,
                                            "celery_visibility_timeout_s": VISIBILITY_TIMEOUT_S}), encoding="utf-8")
    cluster_file.chmod(0o600)
    cluster_env = {PROFILE_ENV: "cluster", CLUSTER_FILE_ENV: str(cluster_file)}
    with (running_workers(home, clean_env(home, **cluster_env), {"gpu1": "dagster,gpu", "cpu1": "dagster"}) as workers,
          ThreadPoolExecutor(1) as fault):
        killed = fault.submit(kill_a_step_then_the_worker, database, "cpu1", workers["cpu1"])
        cluster = run_study(home, **cluster_env)
        killed_step, lost_step = killed.result(timeout=60)
    assert cluster.returncode == 0, cluster.stdout[-3000:] + cluster.stderr[-3000:]

    cluster_tables = warehouse_snapshot(home, f"{server}/warehouse")
    assert set(cluster_tables) == set(local_tables)
    differences = {table: next((pair for pair in zip(rows, cluster_tables[table]) if pair[0] != pair[1]),
                               f"{len(rows)} rows locally, {len(cluster_tables[table])} in the cluster")
                   for table, rows in local_tables.items() if cluster_tables[table] != rows}
    assert not differences, differences  # the first differing row of each table: (local, cluster)
    assert champions(mlflow_server.url) == local_champions and local_champions
    # the instance's runs and events are in PostgreSQL, none in the home's sqlite files
    with psycopg.connect(database) as connection:
        runs = dict(connection.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        in_workers = [event for (event,) in connection.execute(
            "SELECT event FROM event_logs WHERE event LIKE '%in celery worker%' ORDER BY id").fetchall()]
    assert runs.get("SUCCESS", 0) >= 3 and set(runs) == {"SUCCESS"}, runs
    assert sorted(path.name for path in (home / "dagster_home").rglob("*.db")) == []
    # the warehouse rows are in PostgreSQL (written by the workers' steps at once), no DuckDB file in the home
    with psycopg.connect(warehouse) as connection:
        in_postgres = connection.execute("SELECT count(DISTINCT patient_key) FROM radiomics_features").fetchone()
    assert in_postgres == (18,) and not list(home.rglob("*.duckdb"))
    # patients, embeddings and fit units executed in the workers, the embeddings (gpu queue) only where it is taken
    steps_by_worker = {name: [e for e in in_workers if f"{name}@" in e] for name in ("gpu1", "cpu1")}
    assert all(steps_by_worker.values()), {name: len(steps) for name, steps in steps_by_worker.items()}
    for step in ("process_patient_batch", "fit_unit", "embed_center_batch", "fine_tuned_backbones"):
        assert any(step in event for event in in_workers), step
    for gpu_step in ("embed_center_batch", "fine_tuned_backbones"):
        assert all(gpu_step not in event for event in steps_by_worker["cpu1"]), gpu_step
    # the step whose process was killed was given back to the broker and executed again, by either worker; the step
    # of the worker that vanished was given back after the visibility timeout and executed by the other worker
    assert [step_key(event) for event in in_workers].count(killed_step) == 2, killed_step
    assert [(step_key(e), "gpu1@" in e) for e in in_workers if step_key(e) == lost_step] == [
        (lost_step, False), (lost_step, True)], lost_step
    assert workers["cpu1"].poll() is not None  # the worker stayed dead: the other finished the study
    # models reach the shared folder through the tracking server (proxied artifacts), never written by the client
    client = MlflowClient(mlflow_server.url)
    logged = client.search_runs([client.get_experiment_by_name("demo").experiment_id], max_results=5)
    assert logged and all(run.info.artifact_uri.startswith("mlflow-artifacts:") for run in logged)
    assert list(mlflow_server.artifacts_destination.rglob("MLmodel"))
    assert not (home / "mlflow.db").exists()
    assert local_tables["model_results"] and local_tables["predictions"] and local_tables["networks"]
    # the whole study ran: the prospective patients scored by the champions, the report written (into the home)
    assert len({row[0] for row in local_tables["prospective_predictions"]}) == 2
    assert list(home.rglob("*.html"))
