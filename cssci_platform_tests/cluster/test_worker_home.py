"""A `cssci worker` serves one home: a step whose run belongs to another home's instance (two homes sharing one
broker, or a worker started with the wrong --home) is refused before it runs, instead of being executed against the
worker's home (its warehouse, manifest and study)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._core.execution.retries import RetryMode
from dagster._grpc.types import ExecuteStepArgs
from dagster._serdes import pack_value
from dagster_celery.config import TASK_EXECUTE_PLAN_NAME

from cssci_platform.cli.celery_app import StepOfAnotherHome, worker_app
from cssci_platform.lib.profiles import CLUSTER_FILE_ENV, PROFILE_ENV
from cssci_platform_tests.cluster.servers import MlflowServer, PostgresServer, free_port
from cssci_platform_tests.cluster.test_cluster_profile import running_workers
from cssci_platform_tests.test_cli_failures import clean_env

UNREACHABLE_BROKER = "redis://127.0.0.1:9/0"  # building the app connects to nothing
# each test builds a worker's app (a worker process builds one); Celery warns that a second app in one process names
# its task as the first did, and each app still runs its own (the second test would fail otherwise)
pytestmark = pytest.mark.filterwarnings("ignore::celery.exceptions.DuplicateTaskNameWarning")


@dg.op
def noop() -> None:
    pass


@dg.job
def probe_job() -> None:
    noop()


def packed_step_of(dagster_home: Path) -> dict:
    """The task arguments dagster-celery sends for a step of a run of the instance in `dagster_home`."""
    dagster_home.mkdir(parents=True, exist_ok=True)
    with dg.instance_for_test(temp_dir=str(dagster_home)) as instance:
        args = ExecuteStepArgs(dg.reconstructable(probe_job).get_python_origin(), "run-1", ["noop"],
                               instance.get_ref(), RetryMode.DISABLED)
    return pack_value(args)


@pytest.fixture
def cluster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    cluster_file = tmp_path / "cluster.yaml"
    cluster_file.write_text(yaml.safe_dump({"dagster_storage": "postgresql://cssci@127.0.0.1:9/dagster",
                                            "warehouse": "postgresql://cssci@127.0.0.1:9/warehouse",
                                            "mlflow_tracking_uri": "http://127.0.0.1:9",
                                            "celery_broker": UNREACHABLE_BROKER}), encoding="utf-8")
    monkeypatch.setenv(PROFILE_ENV, "cluster")
    monkeypatch.setenv(CLUSTER_FILE_ENV, str(cluster_file))
    return tmp_path / "home_a"


def test_a_step_of_another_homes_run_is_refused_naming_both_homes(cluster_home: Path, tmp_path: Path) -> None:
    task = worker_app(UNREACHABLE_BROKER, cluster_home).tasks[TASK_EXECUTE_PLAN_NAME]
    other = tmp_path / "home_b" / "dagster_home"
    with pytest.raises(StepOfAnotherHome) as refused:
        task.run(execute_step_args_packed=packed_step_of(other), executable_dict={})
    message = str(refused.value)
    assert str(other) in message and str(cluster_home / "dagster_home") in message and "--home" in message


def test_a_step_of_the_workers_own_home_passes_the_check(cluster_home: Path) -> None:
    task = worker_app(UNREACHABLE_BROKER, cluster_home).tasks[TASK_EXECUTE_PLAN_NAME]
    with pytest.raises(Exception) as went_on:  # past the check: the empty job pointer given here is refused later
        task.run(execute_step_args_packed=packed_step_of(cluster_home / "dagster_home"), executable_dict={})
    assert not isinstance(went_on.value, StepOfAnotherHome)


def test_a_worker_reserves_no_step_beyond_its_own_and_gives_a_lost_step_back_after_the_set_timeout(
        cluster_home: Path) -> None:
    """A vanished worker's step returns to the broker after the cluster file's visibility timeout; a step reserved
    by a busy worker would count against that timeout too, and be given to a second worker while it still waits."""
    app = worker_app(UNREACHABLE_BROKER, cluster_home, visibility_timeout_s=45)
    assert app.conf.broker_transport_options["visibility_timeout"] == 45
    assert app.conf.worker_prefetch_multiplier == 1 and app.conf.task_acks_late


@pytest.mark.cluster
@pytest.mark.xdist_group("cluster")
@pytest.mark.timeout(900)
def test_a_command_names_the_refusal_of_a_worker_of_another_home(tmp_path: Path, postgres_server: PostgresServer,
                                                                  mlflow_server: MlflowServer, redis_url: str) -> None:
    """Two homes on one broker (a misconfiguration): home B's patient step reaches home A's worker, which refuses it.
    The command printed only Dagster's run failure ('An exception was thrown during execution'); it must say which
    step failed and why, as it does for a step that failed in a local process."""
    broker = redis_url.rsplit("/", 1)[0] + "/7"  # a Redis database of its own: other tests' workers never see it
    environments = {}
    for home in ("home_a", "home_b"):
        server = f"postgresql://{postgres_server.user}@{postgres_server.host}:{postgres_server.port}"
        names = {d: f"{d}_{home}_{free_port()}" for d in ("dagster", "warehouse")}
        for name in names.values():
            postgres_server.create_database(name)
        cluster_file = tmp_path / f"{home}.yaml"
        cluster_file.write_text(yaml.safe_dump({
            "dagster_storage": f"{server}/{names['dagster']}", "warehouse": f"{server}/{names['warehouse']}",
            "mlflow_tracking_uri": mlflow_server.url, "celery_broker": broker}), encoding="utf-8")
        environments[home] = clean_env(tmp_path / home, **{PROFILE_ENV: "cluster", CLUSTER_FILE_ENV: str(cluster_file)})
    with running_workers(tmp_path / "home_a", environments["home_a"], {"wa": "dagster,gpu"}):
        done = subprocess.run(
            [sys.executable, "-m", "cssci_platform.cli.main", "run", "--config", "demo", "--set",
             "cohort.synthetic.patients=4", "--set", "cohort.synthetic.prospective=0", "--home",
             str(tmp_path / "home_b")], env={**environments["home_b"], "CI": "true"}, cwd=tmp_path,
            capture_output=True, text=True, encoding="utf-8", timeout=600)

    output = done.stdout + done.stderr
    assert done.returncode != 0, output[-3000:]
    assert "StepOfAnotherHome" in output and "start a worker with that home's --home" in output, output[-3000:]
    assert str(tmp_path / "home_a") in output and "process_patient_batch" in output, output[-3000:]
