r"""Issue 15: the patient stage in the cluster profile (Dagster storage in PostgreSQL, steps on two Celery workers
with Redis) against the local profile (sqlite storage, each run's step in its run's process), same machine.

Each round runs `cssci ingest <cohort> --workers 2` once per side, alternating which goes first, on a fresh home
(and, for the cluster side, a fresh PostgreSQL database; the two `cssci worker`s, concurrency 1 each, are started and
ready before the clock starts, as long-lived workers are). Servers (PostgreSQL, Redis, MLflow) are started on
127.0.0.1 by `cssci_platform_tests/cluster/servers.py` and removed afterwards. Reported per side: wall seconds of the
command; for the cluster side, from the instance's event log, how long each step waited between its submission to
the broker and its start in a worker (queueing) and how long it executed there, and the storage round trips: events
written, transactions committed in the instance's and the warehouse's PostgreSQL databases.

    python benchmarks/cluster_patient_stage.py --patients 24 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
WORK = REPO_ROOT / "benchmarks" / "_work" / "cluster_patient_stage"

from cssci_platform_tests.cluster.servers import (  # noqa: E402
    PostgresServer,
    running_mlflow,
    running_postgres,
    running_redis,
    stop_process_group,
    wait_until,
)

STORE_VARIABLES = ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "CSSCI_MANIFEST", "DAGSTER_HOME", "CSSCI_MLFLOW_URI",
                   "CSSCI_EXPERIMENT_CONFIG", "CSSCI_LOG_DIR", "CSSCI_PROFILE", "CSSCI_CLUSTER_FILE",
                   "CSSCI_DAGSTER_STORAGE_URL", "CSSCI_CELERY_BROKER", "CSSCI_WAREHOUSE_SERVER")


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def side_env(home: Path, **variables: str) -> dict[str, str]:
    env = {name: value for name, value in os.environ.items() if name not in STORE_VARIABLES}
    return {**env, "CSSCI_HOME": str(home), "CI": "true", "PYTHONPATH": str(REPO_ROOT), **variables}


def ingest(cohort: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "cssci_platform.cli.main", "ingest", str(cohort / "cohort.yaml"),
                           "--workers", "2"], env=env, capture_output=True, text=True, cwd=REPO_ROOT)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"cssci ingest failed ({done.returncode}): {(done.stdout + done.stderr)[-3000:]}")
    return seconds


def local_round(cohort: Path, round_: int) -> dict:
    home = WORK / f"home_local_{round_}"
    shutil.rmtree(home, ignore_errors=True)
    return {"wall": ingest(cohort, side_env(home))}


def cluster_round(cohort: Path, round_: int, postgres: PostgresServer, mlflow_url: str, broker: str) -> dict:
    home = WORK / f"home_cluster_{round_}"
    shutil.rmtree(home, ignore_errors=True)
    home.mkdir(parents=True)
    database = f"dagster_{round_}_{int(time.time())}"
    conninfo = postgres.create_database(database)
    postgres.create_database(f"warehouse_{database}")
    cluster_file = home.parent / f"cluster_{round_}.yaml"
    cluster_file.write_text(json.dumps({
        "dagster_storage": f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/{database}",
        "warehouse": f"postgresql://{postgres.user}@{postgres.host}:{postgres.port}/warehouse_{database}",
        "mlflow_tracking_uri": mlflow_url, "celery_broker": broker}), encoding="utf-8")
    env = side_env(home, CSSCI_PROFILE="cluster", CSSCI_CLUSTER_FILE=str(cluster_file))
    workers = []
    try:
        for name in ("w1", "w2"):
            log = home.parent / f"worker_{round_}_{name}.log"
            with log.open("wb") as output:
                workers.append(subprocess.Popen(
                    [sys.executable, "-m", "cssci_platform.cli.main", "worker", "--home", str(home), "--name", name],
                    env=env, stdout=output, stderr=subprocess.STDOUT, cwd=REPO_ROOT, start_new_session=True))
            wait_until(lambda log=log: " ready." in log.read_text(errors="replace"), f"worker {name}", workers[-1],
                       log)
        wall = ingest(cohort, env)
    finally:
        for worker in workers:
            stop_process_group(worker)
    return {"wall": wall, **step_times(conninfo), **round_trips(postgres, database, f"warehouse_{database}")}


def round_trips(postgres: PostgresServer, dagster_database: str, warehouse_database: str) -> dict:
    """The storage round trips of a cluster round (each database is the round's own, so its totals are the round's):
    Dagster events written, and transactions committed in the instance's and in the warehouse's database (reads
    included: every statement DuckDB sends PostgreSQL runs in a transaction). Read after every client disconnected,
    when PostgreSQL has counted their transactions."""
    import psycopg

    with psycopg.connect(postgres.conninfo(dagster_database)) as connection:
        row = connection.execute("SELECT count(*) FROM event_logs").fetchone()
        events = row[0] if row else None
        commits = dict(connection.execute(
            "SELECT datname, xact_commit FROM pg_stat_database WHERE datname = ANY(%s)",
            [[dagster_database, warehouse_database]]).fetchall())
    return {"events": events, "dagster_transactions": commits.get(dagster_database),
            "warehouse_transactions": commits.get(warehouse_database)}


def step_times(conninfo: str) -> dict:
    """Per step executed in a worker: seconds from its submission to the broker to its start there (queue), and from
    that start to the task's end as the run saw it (execution)."""
    import psycopg

    with psycopg.connect(conninfo) as connection:
        rows = connection.execute(
            "SELECT run_id, step_key, timestamp, event FROM event_logs WHERE step_key IS NOT NULL "
            "AND (event LIKE '%Submitting celery task%' OR event LIKE '%in celery worker%' "
            "OR dagster_event_type IN ('STEP_SUCCESS', 'STEP_FAILURE')) ORDER BY id").fetchall()
    marks: dict[tuple, dict[str, float]] = {}
    for run_id, step, stamp, event in rows:
        kind = ("submitted" if "Submitting celery task" in event else
                "started" if "in celery worker" in event else "ended")
        marks.setdefault((run_id, step), {}).setdefault(kind, stamp.timestamp())
    queue = [m["started"] - m["submitted"] for m in marks.values() if {"submitted", "started"} <= set(m)]
    execution = [m["ended"] - m["started"] for m in marks.values() if {"started", "ended"} <= set(m)]
    return {"steps": len(marks), "queue_median": statistics.median(queue) if queue else None,
            "queue_max": max(queue, default=None), "execution_median": statistics.median(execution) if execution
            else None, "execution_sum": sum(execution)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patients", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    from cssci_platform.lib.synthetic import write_sci_cohort

    cohort = WORK / f"cohort_{args.patients}"
    if not (cohort / "cohort.yaml").exists():
        write_sci_cohort(cohort, n_development=args.patients, n_prospective=0, seed=5)
    report: dict = {"machine": f"{os.cpu_count()} cores", "patients": args.patients, "uptime": [uptime()],
                    "local": [], "cluster": []}
    artifacts = Path(tempfile.mkdtemp(prefix="cssci_bench_artifacts_"))
    with running_postgres() as postgres, running_redis() as broker, running_mlflow(postgres, artifacts) as mlflow:
        for round_ in range(args.rounds):
            order = ["local", "cluster"] if round_ % 2 == 0 else ["cluster", "local"]
            for side in order:
                result = (local_round(cohort, round_) if side == "local"
                          else cluster_round(cohort, round_, postgres, mlflow.url, broker))
                report[side].append(result)
                report["uptime"].append(uptime())
                print(round_, side, json.dumps(result), "|", report["uptime"][-1], flush=True)
    shutil.rmtree(artifacts, ignore_errors=True)
    for side in ("local", "cluster"):
        walls = [r["wall"] for r in report[side]]
        print(f"{side}: wall {', '.join(f'{w:.1f}' for w in walls)} s (median {statistics.median(walls):.1f})")
    ratio = statistics.median(r["wall"] for r in report["local"]) / statistics.median(
        r["wall"] for r in report["cluster"])
    print(f"cluster throughput / local: {ratio:.2f}x")
    (WORK / "cluster_patient_stage.json").write_text(json.dumps(report, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
