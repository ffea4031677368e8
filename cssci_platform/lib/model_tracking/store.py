"""Where runs and models live: the tracking config and its experiment, the first opening of a sqlite store
(under a file lock), and MLflow's process-global URIs scoped to one config.

MLflow keeps the tracking and registry URIs in process globals (mirrored into the `MLFLOW_TRACKING_URI` /
`MLFLOW_REGISTRY_URI` environment variables), and `log_model` / `load_model` read them. The few calls that can only
use the globals run inside `scoped_mlflow_globals`, which sets them under a process-wide lock and restores them
exactly afterwards (environment variables included).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote

from cssci_platform.lib.model_tracking.conventions import name_part

if TYPE_CHECKING:  # MLflow loads when a client is made: naming a store (a resource, the CLI) does not pay for it
    from mlflow import MlflowClient

_MLFLOW_GLOBALS_LOCK = threading.RLock()
_STORE_OPEN_LOCK = threading.Lock()
_OPENED_STORES: set[str] = set()
_SCOPED_ENV = {  # set inside scoped_mlflow_globals besides the URIs; restored afterwards
    "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "true",  # our own registry: see the module docstring
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",  # no tqdm bars in Dagster logs and CLI output
}


@dataclass(frozen=True)
class TrackingConfig:
    """Where runs and models go. `artifact_root` defaults to `<folder of the sqlite file>/mlflow-artifacts`."""

    tracking_uri: str
    experiment_name: str
    artifact_root: str | None = None
    registry_uri: str | None = None

    def client(self) -> MlflowClient:
        from mlflow import MlflowClient

        with _first_open_of_sqlite_store(self.tracking_uri):
            return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri or self.tracking_uri)


def sqlite_tracking_uri(db_path: str | Path) -> str:
    """`sqlite:////abs/path/mlflow.db` for a database file (created with its tables on first use)."""
    return f"sqlite:///{Path(db_path).expanduser().resolve()}"


# MLflow 3 shows an experiment either in its GenAI view (traces, prompts) or its classic machine-learning view (runs,
# models). The UI writes its choice as this tag; "custom_model_development" is the classic view (the other values:
# genai_development, finetuning, forecasting, classification, regression, automl). MLflow 3.17's UI follows its own
# GenAI / Machine learning switch (browser storage, GenAI by default) unless the page URL says `workflowType`, so
# links we print carry it too (`experiment_page_url`).
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML_KIND = "custom_model_development"


def get_or_create_experiment(config: TrackingConfig) -> str:
    """The experiment's id; a new experiment stores its artifacts under our artifact root, not ./mlruns, and is
    tagged as a classic ML experiment (an existing one without the tag gets it)."""
    from mlflow.exceptions import MlflowException

    client = config.client()
    existing = client.get_experiment_by_name(config.experiment_name)
    if existing is None:
        try:
            return client.create_experiment(config.experiment_name, artifact_location=_artifact_location(config),
                                            tags={EXPERIMENT_KIND_TAG: CLASSIC_ML_KIND})
        except MlflowException as error:  # another process created it in between
            if error.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
            existing = client.get_experiment_by_name(config.experiment_name)
            if existing is None:  # created and deleted again in between: nothing to return
                raise
    if existing.lifecycle_stage == "deleted":
        raise ValueError(
            f"MLflow experiment {config.experiment_name!r} (id {existing.experiment_id}) is deleted: restore it "
            f"(`mlflow experiments restore --experiment-id {existing.experiment_id}`) or use another name"
        )
    if EXPERIMENT_KIND_TAG not in existing.tags:  # made before the tag, or by hand
        client.set_experiment_tag(existing.experiment_id, EXPERIMENT_KIND_TAG, CLASSIC_ML_KIND)
    return existing.experiment_id


def existing_experiment_id(tracking_uri: str, experiment_name: str) -> str | None:
    """The id of the experiment of that name in the store, None where there is none (nothing is created: a sqlite
    store that does not exist yet stays so)."""
    database = _sqlite_path(tracking_uri)
    if database is not None and not database.is_file():
        return None
    experiment = TrackingConfig(tracking_uri, experiment_name).client().get_experiment_by_name(experiment_name)
    return experiment.experiment_id if experiment is not None else None


def experiment_page_url(server_url: str, experiment_id: str | None) -> str:
    """The MLflow UI's page of an experiment (the experiments list without one), in the classic ML view."""
    page = f"experiments/{experiment_id}" if experiment_id is not None else "experiments"
    return f"{server_url.rstrip('/')}/#/{page}?workflowType=machine_learning"


@contextmanager
def _first_open_of_sqlite_store(tracking_uri: str) -> Iterator[None]:
    """Hold a file lock beside a sqlite store while this process opens it for the first time.

    `MlflowClient(...)` opens its tracking store at once, and the store creates and migrates the tables of
    an empty database without any lock, so processes that open a new database together (parallel Dagster
    steps) break each other's migrations. Under the lock the first one creates the tables (~1 s) and the
    others find them in place.
    """
    database = _sqlite_path(tracking_uri)
    if database is None or tracking_uri in _OPENED_STORES:
        yield
        return
    database.parent.mkdir(parents=True, exist_ok=True)
    with _STORE_OPEN_LOCK, _exclusive_file_lock(database.with_name(database.name + ".init-lock")):
        yield
        _use_write_ahead_log(database)
        _OPENED_STORES.add(tracking_uri)


def _use_write_ahead_log(database: Path) -> None:
    """SQLite's write-ahead log for the store: MLflow commits every logged batch, and in the default rollback-journal
    mode each commit syncs the journal and blocks readers, so parallel fit steps waited on each other's commits
    (benchmarks/RESULTS.md, T2: 40 runs logged in 7.6 s, 2.9 s with WAL). Kept in the file once set. Local disks only,
    as SQLite requires; a store SQLite cannot switch (a read-only file) keeps its mode: only speed depends on it."""
    import sqlite3
    from contextlib import closing

    try:
        with closing(sqlite3.connect(database, timeout=STORE_LOCK_WAIT_SECONDS)) as con:
            con.execute("PRAGMA journal_mode=WAL")
    except sqlite3.OperationalError:
        pass


STORE_LOCK_WAIT_SECONDS = 120.0  # creating MLflow's tables takes ~1 s; far longer means a stuck process holds it


@contextmanager
def _exclusive_file_lock(path: Path, wait_seconds: float = STORE_LOCK_WAIT_SECONDS) -> Iterator[None]:
    import fcntl  # POSIX only, like the Linux/macOS hosts this platform runs on

    with open(path, "a") as handle:
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"waited {wait_seconds:.0f} s for {path}, held by another process opening the "
                                       "same MLflow store; if none is running, delete that file") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _sqlite_path(tracking_uri: str) -> Path | None:
    if not tracking_uri.startswith("sqlite:///"):
        return None
    database = unquote(tracking_uri.removeprefix("sqlite:///").split("?")[0])
    return Path(database).expanduser().resolve() if database and database != ":memory:" else None


def _artifact_location(config: TrackingConfig) -> str | None:
    root = Path(config.artifact_root) if config.artifact_root else _default_artifact_root(config.tracking_uri)
    if root is None:
        return None  # a tracking server decides
    return (root.expanduser().resolve() / name_part(config.experiment_name)).as_uri()


def _default_artifact_root(tracking_uri: str) -> Path | None:
    database = _sqlite_path(tracking_uri)
    return database.parent / "mlflow-artifacts" if database else None


@contextmanager
def scoped_mlflow_globals(config: TrackingConfig) -> Iterator[None]:
    """Point MLflow's process-global URIs at `config` (and set `_SCOPED_ENV`), then restore all of it."""
    import mlflow
    from mlflow.tracking._model_registry import (
        utils as registry_state,  # MLflow has no public getter for these
    )
    from mlflow.tracking._tracking_service import utils as tracking_state

    with _MLFLOW_GLOBALS_LOCK:
        names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI", *_SCOPED_ENV)
        saved_env = {name: os.environ.get(name) for name in names}
        saved_tracking_uri, saved_registry_uri = tracking_state._tracking_uri, registry_state._registry_uri
        try:
            mlflow.set_tracking_uri(config.tracking_uri)
            mlflow.set_registry_uri(config.registry_uri or config.tracking_uri)
            os.environ.update(_SCOPED_ENV)
            yield
        finally:
            # MLflow annotates uri as str | Path, but its body handles None (unsets the URI), which we may have saved
            mlflow.set_tracking_uri(saved_tracking_uri)  # type: ignore[arg-type]
            registry_state._registry_uri = saved_registry_uri
            for name, value in saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value
