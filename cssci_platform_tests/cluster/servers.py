"""Real servers on 127.0.0.1 for the cluster tests: PostgreSQL, Redis and the MLflow tracking server.

Each is started in a fresh temporary folder on a free port, waited for until it answers, and stopped and deleted on
teardown (also when the test failed). The binaries come from Debian's packages (`postgresql`, `redis-server`) and
the MLflow server from the venv; where one is absent the test is skipped, unless CSSCI_CLUSTER_TESTS=1 (CI), where
its absence is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

CLUSTER_FLAG = "CSSCI_CLUSTER_TESTS"  # "1": the servers must be there (CI); otherwise their absence skips
POSTGRES_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)  # Debian keeps initdb here
POSTGRES_SUPERUSER = "cssci"
POSTGRES_OS_USER = "postgres"  # initdb and postgres refuse to run as root: the Debian package's system user runs them
START_TIMEOUT_S = 60.0


def cluster_tests_required() -> bool:
    return os.environ.get(CLUSTER_FLAG, "").strip() == "1"


def unavailable(reason: str) -> None:
    """Skip the test (a developer without the servers), or fail it when CSSCI_CLUSTER_TESTS=1 (CI must run it)."""
    if cluster_tests_required():
        pytest.fail(f"{reason} ({CLUSTER_FLAG}=1, so the cluster tests must run: install it, see .ci/run)")
    pytest.skip(f"{reason}; install it (see .ci/run) or set {CLUSTER_FLAG}=1 to make this a failure")


def find_binary(name: str, package: str) -> str:
    """The path of `name` on PATH or in Debian's PostgreSQL folder; skips/fails naming the Debian package."""
    found = shutil.which(name) or next((str(d / name) for d in POSTGRES_BIN_DIRS if (d / name).exists()), None)
    if found is None:
        unavailable(f"`{name}` not found: the Debian package `{package}` is not installed")
    return str(found)


def require_module(module: str, pip_name: str) -> None:
    try:
        __import__(module)
    except ImportError:
        unavailable(f"the Python module `{module}` is missing: pip install {pip_name}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_until(ready, what: str, process: subprocess.Popen | None = None, log: Path | None = None) -> None:
    """Poll `ready()` until it is true; fail naming `what` (and the server's log) after START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            break
        with contextlib.suppress(OSError):
            if ready():
                return
        time.sleep(0.2)
    tail = log.read_text(errors="replace")[-3000:] if log is not None and log.exists() else ""
    raise RuntimeError(f"{what} did not become ready within {START_TIMEOUT_S:.0f} s; its log ends:\n{tail}")


def port_open(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


def stop_process(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=20)


@dataclass(frozen=True)
class PostgresServer:
    """A running PostgreSQL server: superuser `user` with trust authentication, on 127.0.0.1 only."""

    host: str
    port: int
    user: str
    data_dir: Path

    def conninfo(self, database: str = "postgres") -> str:
        """libpq key=value form (psycopg, DuckDB's postgres and ducklake extensions)."""
        return f"host={self.host} port={self.port} user={self.user} dbname={database}"

    def sqlalchemy_url(self, database: str) -> str:
        """SQLAlchemy form with the psycopg (3) driver (MLflow's --backend-store-uri)."""
        return f"postgresql+psycopg://{self.user}@{self.host}:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create database `name` (dropped with the server); returns its conninfo."""
        import psycopg

        with psycopg.connect(self.conninfo(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        return self.conninfo(name)


def _server_owner() -> pwd.struct_passwd | None:
    """The system user PostgreSQL runs as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    try:
        return pwd.getpwnam(POSTGRES_OS_USER)
    except KeyError:
        unavailable(f"running as root, but there is no `{POSTGRES_OS_USER}` user to run PostgreSQL as "
                    "(the Debian package `postgresql` creates it)")
        raise  # unreachable: unavailable() raises


@contextlib.contextmanager
def running_postgres() -> Iterator[PostgresServer]:
    """initdb into a new temporary folder, start `postgres` on 127.0.0.1:<free port> (its socket in that folder),
    yield it, then stop it (immediate) and delete the folder."""
    require_module("psycopg", "'psycopg[binary]'")
    initdb, pg_ctl = find_binary("initdb", "postgresql"), find_binary("pg_ctl", "postgresql")
    owner = _server_owner()
    root = Path(tempfile.mkdtemp(prefix="cssci_pg_"))
    data_dir, log = root / "data", root / "server.log"
    if owner is not None:
        os.chown(root, owner.pw_uid, owner.pw_gid)
    as_owner = {"user": owner.pw_uid, "group": owner.pw_gid, "extra_groups": []} if owner is not None else {}
    port = free_port()
    started = False
    try:
        subprocess.run([initdb, "-D", str(data_dir), "-U", POSTGRES_SUPERUSER, "--auth=trust", "-E", "UTF8",
                        "--no-locale"], check=True, capture_output=True, cwd=root, **as_owner)
        options = f"-h 127.0.0.1 -p {port} -k {root}"
        subprocess.run([pg_ctl, "-D", str(data_dir), "-l", str(log), "-o", options, "-w", "-t", "60", "start"],
                       check=True, capture_output=True, cwd=root, **as_owner)
        started = True
        yield PostgresServer("127.0.0.1", port, POSTGRES_SUPERUSER, data_dir)
    except subprocess.CalledProcessError as error:
        tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise RuntimeError(f"{error.cmd[0]} failed: {error.stderr.decode(errors='replace')}\n{tail}") from None
    finally:
        if started:
            subprocess.run([pg_ctl, "-D", str(data_dir), "-m", "immediate", "-w", "stop"], capture_output=True,
                           cwd=root, **as_owner)
        shutil.rmtree(root, ignore_errors=True)


@contextlib.contextmanager
def running_redis() -> Iterator[str]:
    """`redis-server` on 127.0.0.1:<free port>, no persistence; yields redis://127.0.0.1:<port>/0."""
    binary = find_binary("redis-server", "redis-server")
    root = Path(tempfile.mkdtemp(prefix="cssci_redis_"))
    port, log = free_port(), root / "redis.log"
    command = [binary, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--appendonly", "no",
               "--dir", str(root), "--logfile", str(log), "--daemonize", "no", "--protected-mode", "yes"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, cwd=root)
    try:
        wait_until(lambda: redis_ping(port), "redis-server", process, log)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        stop_process(process)
        shutil.rmtree(root, ignore_errors=True)


def redis_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
        connection.sendall(b"PING\r\n")
        return connection.recv(16).startswith(b"+PONG")


@dataclass(frozen=True)
class MlflowServer:
    url: str  # http://127.0.0.1:<port>
    backend_store_uri: str
    artifacts_destination: Path


@contextlib.contextmanager
def running_mlflow(postgres: PostgresServer, artifacts: Path) -> Iterator[MlflowServer]:
    """`mlflow server` on 127.0.0.1:<free port>: tracking and registry in a new PostgreSQL database, artifacts
    proxied by the server (--serve-artifacts) into `artifacts` (the shared folder standing in for NFS)."""
    mlflow = Path(sys.executable).with_name("mlflow")
    if not mlflow.exists():
        unavailable(f"`mlflow` is not in {mlflow.parent}")
    database = f"mlflow_{free_port()}"
    backend = postgres.sqlalchemy_url(database)
    postgres.create_database(database)
    root = Path(tempfile.mkdtemp(prefix="cssci_mlflow_"))
    port, log = free_port(), root / "mlflow.log"
    command = [str(mlflow), "server", "--backend-store-uri", backend, "--artifacts-destination", str(artifacts),
               "--serve-artifacts", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("wb") as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT, cwd=root, start_new_session=True)
    try:
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), "mlflow server", process, log)
        yield MlflowServer(f"http://127.0.0.1:{port}", backend, artifacts)
    finally:
        stop_process_group(process)
        shutil.rmtree(root, ignore_errors=True)


def stop_process_group(process: subprocess.Popen) -> None:
    """Stop `mlflow server` and the uvicorn/gunicorn workers it started (its own session)."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, 15)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, 9)
            process.wait(timeout=20)


def http_ok(url: str) -> bool:
    with urllib.request.urlopen(url, timeout=2) as response:
        return bool(response.status == 200)


# ---- fixtures (re-exported by conftest.py) -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """A PostgreSQL server for the session (tests create their own databases with `create_database`)."""
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with running_redis() as url:
        yield url


@pytest.fixture(scope="session")
def shared_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder standing in for NFS: warehouse data and MLflow artifacts that every worker reads and writes."""
    return tmp_path_factory.mktemp("shared")


@pytest.fixture(scope="session")
def mlflow_server(postgres_server: PostgresServer, shared_folder: Path) -> Iterator[MlflowServer]:
    artifacts = shared_folder / "mlflow-artifacts"
    artifacts.mkdir(exist_ok=True)
    with running_mlflow(postgres_server, artifacts) as server:
        yield server
