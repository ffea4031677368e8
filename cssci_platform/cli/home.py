"""The home a command works in (`--home`, `CSSCI_HOME`): its stores as CSSCI_* variables, its study config, its lock
and the storage checks run before any work.

The study reaches Dagster by one route: `CSSCI_EXPERIMENT_CONFIG` names the home's `experiment.yaml`, which the
`study` resource reads when a run starts (in this process, in spawned patient workers and in `dagster dev`).
"""

from __future__ import annotations

import fcntl  # POSIX only, like the Linux/macOS hosts this platform runs on
import os
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml

from cssci_platform.lib.failures import ExplainedError, UserError
from cssci_platform.lib.profiles import (
    CELERY_BROKER_ENV,
    DAGSTER_STORAGE_ENV,
    PROFILE_ENV,
    WAREHOUSE_SERVER_ENV,
    Profile,
    ProfileError,
    active_profile,
    dagster_storage_url,
)

PROJECT_ROOT = Path(__file__).resolve().parent.parent.parent
ENV_DEFAULTS = {  # relative to CSSCI_HOME
    "CSSCI_WAREHOUSE": "warehouse.duckdb",
    "CSSCI_IMAGE_STORE": "image_store",
    "DAGSTER_HOME": "dagster_home",
}


def configure_environment(home: Path, manifest: Path | None = None) -> dict[str, str]:
    """Set the CSSCI_* variables (keeping any the user already set) and prepare DAGSTER_HOME. The home's study
    (`experiment.yaml`, written by `cssci run` or `activate_study`) becomes CSSCI_EXPERIMENT_CONFIG unless set."""
    from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file  # heavy: only when a command runs

    home = home.resolve()
    profile = home_profile(home)
    values = {name: os.environ.get(name) or str(home / relative) for name, relative in ENV_DEFAULTS.items()}
    values["CSSCI_MLFLOW_URI"] = (os.environ.get("CSSCI_MLFLOW_URI") or remembered_mlflow_uri(home)
                                  or f"sqlite:///{home / 'mlflow.db'}")
    if profile.servers is not None:
        values["CSSCI_MLFLOW_URI"] = cluster_mlflow_uri(profile)
        values[DAGSTER_STORAGE_ENV] = dagster_storage_url(profile.servers)
        values[WAREHOUSE_SERVER_ENV] = profile.servers.warehouse
        if profile.servers.celery_broker:
            values[CELERY_BROKER_ENV] = profile.servers.celery_broker
    # full tracebacks of failed commands
    values["CSSCI_LOG_DIR"] = os.environ.get("CSSCI_LOG_DIR") or str(home / "logs")
    values["MLFLOW_DISABLE_TELEMETRY"] = os.environ.get("MLFLOW_DISABLE_TELEMETRY") or "true"  # no network at run time
    # The platform runs processes side by side (patient batches, fit steps, a UI's runs), each with OpenMP threads
    # (torch, scikit-learn): threads that spin while they wait take the cores the other processes need. Passive
    # waiting made two ResNet50 trainings beside a third busy process 1.5x faster (benchmarks/RESULTS.md).
    values["OMP_WAIT_POLICY"] = os.environ.get("OMP_WAIT_POLICY") or "PASSIVE"
    remembered = home / "current_manifest"
    if manifest is not None:
        values["CSSCI_MANIFEST"] = str(manifest.resolve())
        home.mkdir(parents=True, exist_ok=True)
        remembered.write_text(values["CSSCI_MANIFEST"], encoding="utf-8")
    elif not os.environ.get("CSSCI_MANIFEST") and remembered.exists():
        values["CSSCI_MANIFEST"] = remembered.read_text(encoding="utf-8").strip()
    study = experiment_file(home)
    if not os.environ.get(EXPERIMENT_ENV) and study.exists():
        values[EXPERIMENT_ENV] = str(study)
    if profile.servers is None:  # a local home's rows go to its own file, whatever a shell has left set
        os.environ.pop(WAREHOUSE_SERVER_ENV, None)
    os.environ.update(values)
    dagster_home = Path(values["DAGSTER_HOME"])
    dagster_home.mkdir(parents=True, exist_ok=True)
    instance_yaml = dagster_home / "dagster.yaml"
    if not instance_yaml.exists() and (PROJECT_ROOT / "dagster.yaml").exists():
        shutil.copy(PROJECT_ROOT / "dagster.yaml", instance_yaml)
    write_instance_storage(instance_yaml, profile)
    return values


PROFILE_FILE = "profile"  # in the home: the profile it was set up with


def home_profile(home: Path) -> Profile:
    """The active profile (`CSSCI_PROFILE`), recorded in the home on first use. A home stays in its profile: its run
    history, models and warehouse live in that profile's stores, and the other profile would start from nothing."""
    profile = active_profile()
    record = home / PROFILE_FILE
    recorded = record.read_text(encoding="utf-8").strip() if record.is_file() else None
    if recorded is None:
        home.mkdir(parents=True, exist_ok=True)
        record.write_text(profile.name, encoding="utf-8")
    elif recorded != profile.name:
        raise ProfileError(f"the home {home} was set up with the {recorded} profile and this command runs with the "
                           f"{profile.name} profile ({PROFILE_ENV}); its runs, models and tables live in the "
                           f"{recorded} profile's stores: set {PROFILE_ENV}={recorded}, or use another home (--home)")
    return profile


def cluster_mlflow_uri(profile: Profile) -> str:
    """The cluster's MLflow tracking server; an explicit CSSCI_MLFLOW_URI naming another store is refused, so no
    model of a cluster home is logged outside the cluster's server."""
    assert profile.servers is not None
    server = profile.servers.mlflow_tracking_uri
    explicit = os.environ.get("CSSCI_MLFLOW_URI", "").rstrip("/")
    if explicit and explicit != server:
        raise ProfileError(f"CSSCI_MLFLOW_URI={explicit!r} but the cluster profile's tracking server ({profile.source})"
                           f" is {server!r}; unset CSSCI_MLFLOW_URI or change mlflow_tracking_uri in the cluster file")
    return server


def write_instance_storage(instance_yaml: Path, profile: Profile) -> None:
    """The instance's storage in the home's dagster.yaml: Dagster's default (sqlite under DAGSTER_HOME) for `local`,
    PostgreSQL for `cluster`, its URL read from CSSCI_DAGSTER_STORAGE_URL (no password written to the file)."""
    document = (yaml.safe_load(instance_yaml.read_text(encoding="utf-8")) if instance_yaml.exists() else None) or {}
    wanted = {"postgres": {"postgres_url": {"env": DAGSTER_STORAGE_ENV}}} if profile.servers is not None else None
    if document.get("storage") == wanted:
        return
    if wanted is None:
        document.pop("storage")
    else:
        document["storage"] = wanted
    instance_yaml.write_text(yaml.safe_dump(document, sort_keys=False), encoding="utf-8")


def default_study(manifest: Path) -> dict:
    """The study a home gets when a command runs on a bare manifest (`cssci ingest`, `cssci ui`): named after the
    cohort, every setting at its default, the manifest's first outcome modelled as it is. `cssci run --config`
    replaces it with a chosen config."""
    from cssci_platform.lib.cohort import load_cohort

    spec = load_cohort(manifest).spec
    if not spec.outcomes:
        raise UserError(f"{manifest}: the manifest declares no outcome, so no default study can be written for it; "
                        "give a study config (cssci run --config FILE)")
    return {"name": spec.name, "cohort": {"manifest": str(manifest.resolve())},
            "outcome": {"name": next(iter(spec.outcomes))}}


def activate_study(home: Path, manifest: Path | None) -> Path | None:
    """Make the home's study the active one (CSSCI_EXPERIMENT_CONFIG): the variable if the user set it, else the
    home's `experiment.yaml`, else one written from `default_study(manifest)`; None without any of them."""
    from cssci_platform.lib.study_config import EXPERIMENT_ENV, experiment_file  # heavy: only when a command runs

    if os.environ.get(EXPERIMENT_ENV):
        return Path(os.environ[EXPERIMENT_ENV])
    path = experiment_file(home.resolve())
    if not path.exists():
        if manifest is None:
            return None
        home.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(default_study(manifest), sort_keys=False), encoding="utf-8")
    os.environ[EXPERIMENT_ENV] = str(path)
    return path


def mlflow_uri_file(home: Path) -> Path:
    """Where `cssci run` records the MLflow store of an experiment home (experiment homes share `.cssci/mlflow.db`,
    one level up), so every later command on that home (`predict`, `report`, `ui`) finds it from the home alone."""
    return home / "mlflow_uri"


def remember_mlflow_uri(home: Path, uri: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    mlflow_uri_file(home).write_text(uri, encoding="utf-8")


def remembered_mlflow_uri(home: Path) -> str | None:
    """The MLflow store recorded in `home` by `cssci run`, None where none was recorded."""
    path = mlflow_uri_file(home)
    return (path.read_text(encoding="utf-8").strip() or None) if path.is_file() else None


def home_experiment_name(home: Path) -> str | None:
    """The MLflow experiment of a home: the `name` of its study (`experiment.yaml`), None for a home without one."""
    from cssci_platform.lib.study_config import experiment_file

    path = experiment_file(home)
    if not path.is_file():
        return None
    document = yaml.safe_load(path.read_text(encoding="utf-8"))
    return document.get("name") if isinstance(document, dict) else None


MIN_FREE_MB_ENV = "CSSCI_MIN_FREE_MB"
MIN_FREE_MB = 200.0  # below this, a run would fail half-way on a full disk: refuse before any patient
PREFLIGHT_LOCK_WAIT = 15.0  # seconds a command waits at start for another process' warehouse lock


class HomeBusy(ExplainedError):
    """Another `cssci` command is writing to the same home."""


@contextmanager
def home_lock(home: Path, command: str) -> Iterator[None]:
    """Hold `<home>/cssci.lock` for the command's lifetime; a second writing command on the same home is refused
    with the first one's pid, command and start time. The OS releases the lock when the process ends (even on
    SIGKILL), so a crash never leaves a stale lock."""
    home.mkdir(parents=True, exist_ok=True)
    path = home / "cssci.lock"
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise HomeBusy(f"another cssci command is using {home}: {holder}. Wait for it to finish (or stop it), or "
                           "give this one another --home.") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} `{command}` since {time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            fcntl.flock(handle, fcntl.LOCK_UN)


def check_storage() -> None:
    """Before any work: the warehouse opens for writing (within PREFLIGHT_LOCK_WAIT s) and every folder of the home
    has CSSCI_MIN_FREE_MB free. Raises `WarehouseUnavailable` / `StorageFull` naming the cause."""
    from cssci_platform.lib.warehouse import connect, lock_wait_seconds

    for name in ("CSSCI_WAREHOUSE", "CSSCI_IMAGE_STORE", "DAGSTER_HOME"):
        check_free_space(Path(os.environ[name]))
    with connect(Path(os.environ["CSSCI_WAREHOUSE"]), lock_wait=min(lock_wait_seconds(), PREFLIGHT_LOCK_WAIT)):
        pass


class StorageFull(ExplainedError):
    """Too little free disk space to start."""


def check_free_space(path: Path) -> None:
    existing = next((p for p in (path, *path.parents) if p.exists()), Path("/"))
    try:
        minimum = float(os.environ.get(MIN_FREE_MB_ENV) or MIN_FREE_MB)
    except ValueError:
        raise StorageFull(f"{MIN_FREE_MB_ENV}={os.environ[MIN_FREE_MB_ENV]!r} is not a number of megabytes") from None
    free = shutil.disk_usage(existing).free / 1e6
    if free < minimum:
        raise StorageFull(f"the disk is full: {free:.0f} MB free on the disk holding {path} (at least {minimum:.0f} "
                          f"MB needed to start; {MIN_FREE_MB_ENV} sets it). Free space there or move CSSCI_HOME to a "
                          "larger disk; nothing was started.")
