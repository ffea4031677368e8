"""Where a home's stores live, switched by one setting (`CSSCI_PROFILE`).

- `local` (the default): everything embedded in the home, no server: the Dagster instance's sqlite storage under
  `dagster_home`, one DuckDB warehouse file, a sqlite MLflow store.
- `cluster`: the servers a hospital network shares, named in one small YAML file (`CSSCI_CLUSTER_FILE`):
  the Dagster instance's runs, events and schedules in PostgreSQL (dagster-postgres), so a webserver, a daemon and
  workers on other machines see one history; and an MLflow tracking server (PostgreSQL behind it, artifacts proxied
  by the server), so every machine logs and registers models in one place; and the warehouse in PostgreSQL
  (`lib/warehouse_server.py`), which many steps on many machines write at once.

  With a Celery broker (`celery_broker`), the steps of the distributable jobs (patients, center embeddings, the
  zoo's fit units) are tasks on the broker, executed by `cssci worker` processes on any machine.

The cluster file holds passwords: keep it readable by its owner only. Its keys (`celery_broker` optional):

    dagster_storage: postgresql://cssci:secret@db.example.org:5432/dagster
    warehouse: postgresql://cssci:secret@db.example.org:5432/warehouse
    mlflow_tracking_uri: http://mlflow.example.org:5000
    celery_broker: redis://:secret@queue.example.org:6379/0
    celery_visibility_timeout_s: 3600  # optional: a lost worker's step goes to another worker after this
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from pydantic import ValidationError, field_validator

from cssci_platform.lib.failures import UserError
from cssci_platform.lib.settings import Section

PROFILE_ENV = "CSSCI_PROFILE"
CLUSTER_FILE_ENV = "CSSCI_CLUSTER_FILE"
ProfileName = Literal["local", "cluster"]
PROFILE_NAMES: tuple[ProfileName, ...] = ("local", "cluster")
DAGSTER_STORAGE_ENV = "CSSCI_DAGSTER_STORAGE_URL"  # dagster.yaml names this variable, so no password is written there
WAREHOUSE_SERVER_ENV = "CSSCI_WAREHOUSE_SERVER"  # set from the cluster file; lib.warehouse.connect reads it
CELERY_BROKER_ENV = "CSSCI_CELERY_BROKER"  # set from the cluster file; the step executor and `cssci worker` read it
DEFAULT_CELERY_QUEUE = "dagster"  # dagster-celery's queue of every step without a queue tag
DEFAULT_VISIBILITY_TIMEOUT_S = 3600  # Celery's own default for Redis
MIN_VISIBILITY_TIMEOUT_S = 10  # the Redis transport checks for steps to give back every 10 s
GPU_CELERY_QUEUE = "gpu"  # the queue of GPU steps, taken only by workers started with it (`cssci worker --queues`)


class ClusterServers(Section):
    """The `cluster` profile's servers."""

    dagster_storage: str  # PostgreSQL URL of the Dagster instance's storage (runs, events, schedules)
    warehouse: str  # PostgreSQL URL of the warehouse database (patient rows, models, predictions)
    mlflow_tracking_uri: str  # http(s) URL of the MLflow tracking server
    celery_broker: str | None = None  # Redis URL: broker and result backend of the step executor (none: local steps)
    # How long a step taken by a worker that vanished (machine lost, worker killed) stays with it before another worker
    # takes it (Redis's visibility timeout). Longer than the longest step: a step still running after it is executed
    # a second time beside the first.
    celery_visibility_timeout_s: int = DEFAULT_VISIBILITY_TIMEOUT_S

    @field_validator("dagster_storage", "warehouse")
    @classmethod
    def _postgres_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("postgresql", "postgres") or not parts.hostname or not parts.path.strip("/"):
            raise ValueError("must be a PostgreSQL URL with host and database, "
                             "e.g. postgresql://cssci:secret@127.0.0.1:5432/dagster")
        return value

    @field_validator("mlflow_tracking_uri")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be the http(s) URL of an MLflow tracking server, e.g. http://127.0.0.1:5000")
        return value.rstrip("/")

    @field_validator("celery_visibility_timeout_s")
    @classmethod
    def _positive(cls, value: int) -> int:
        if value < MIN_VISIBILITY_TIMEOUT_S:
            raise ValueError(f"must be at least {MIN_VISIBILITY_TIMEOUT_S} seconds (longer than the longest step)")
        return value

    @field_validator("celery_broker")
    @classmethod
    def _redis_url(cls, value: str | None) -> str | None:
        if value is not None and (urlsplit(value).scheme not in ("redis", "rediss") or not urlsplit(value).hostname):
            raise ValueError("must be a Redis URL, e.g. redis://127.0.0.1:6379/0")
        return value


def dagster_storage_url(servers: ClusterServers) -> str:
    """The storage URL as dagster-postgres must get it: with the psycopg2 driver named. dagster-postgres binds
    `NOTIFY run_events, %(id)s` client-side, as psycopg2 does; SQLAlchemy 2.1 makes psycopg 3 the default driver of
    `postgresql://`, which binds server-side, and PostgreSQL refuses a parameter in NOTIFY."""
    return "postgresql+psycopg2://" + servers.dagster_storage.split("://", 1)[1]


@dataclass(frozen=True)
class Profile:
    name: ProfileName
    servers: ClusterServers | None  # None for `local`
    source: Path | None = None  # the cluster file it was read from


LOCAL = Profile("local", None)


class ProfileError(UserError):
    """The profile setting or the cluster file is wrong: says which, what and how to fix it."""


def active_profile(environ: Mapping[str, str] | None = None) -> Profile:
    """The profile `CSSCI_PROFILE` selects (`local` when unset or empty) in `environ` (default: this process's)."""
    environ = os.environ if environ is None else environ
    name = (environ.get(PROFILE_ENV) or "local").strip()
    if name not in PROFILE_NAMES:
        raise ProfileError(f"{PROFILE_ENV}={name!r} is not a profile; choose one of {', '.join(PROFILE_NAMES)}")
    if name == "local":
        return LOCAL
    file = environ.get(CLUSTER_FILE_ENV, "").strip()
    if not file:
        raise ProfileError(f"{PROFILE_ENV}=cluster needs {CLUSTER_FILE_ENV}, the YAML file that names the cluster's "
                           "servers (keys: " + ", ".join(ClusterServers.model_fields) + "; README, 'Cluster profile')")
    path = Path(file).expanduser().resolve()
    return Profile("cluster", load_cluster_file(path), path)


def load_cluster_file(path: Path) -> ClusterServers:
    if not path.is_file():
        raise ProfileError(f"{CLUSTER_FILE_ENV}: {path} is not a file; write the cluster's servers there "
                           "(README, 'Cluster profile')")
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise ProfileError(f"cluster file {path} is not valid YAML: {error}") from None
    if not isinstance(document, dict):
        raise ProfileError(f"cluster file {path} must hold a mapping with the keys "
                           + ", ".join(ClusterServers.model_fields))
    try:
        return ClusterServers.model_validate(document)
    except ValidationError as error:
        problems = [_problem(detail["loc"], detail["type"], detail["msg"]) for detail in error.errors()]
        raise ProfileError(f"cluster file {path} is invalid:\n" + "\n".join(f"  - {p}" for p in problems)) from None


def _problem(location: tuple, kind: str, message: str) -> str:
    key = ".".join(map(str, location))
    if kind == "extra_forbidden":
        return f"{key}: unknown key; allowed: {', '.join(ClusterServers.model_fields)}"
    if kind == "missing":
        return f"{key}: required key is missing"
    return f"{key}: {message.removeprefix('Value error, ')}"
