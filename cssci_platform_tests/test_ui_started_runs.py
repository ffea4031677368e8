"""The same study started from the UI gives the same result as the CLI (issue 18, "runs through the instance"): a
patient's run launched through Dagster's GraphQL API (the `launchPipelineExecution` mutation the UI's launchpad
calls, executed against the workspace of workspace.yaml) writes the same warehouse rows as the run `cssci` submits
for that patient."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest

from cssci_platform.cli import instance_runs, patient_runs
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform_tests.test_instance_runs import _prepared_home, _run_patients, _tables

pytestmark = [pytest.mark.timeout(900), pytest.mark.usefixtures("restored_environment")]
LAUNCH_RUN = """
mutation LaunchRun($executionParams: ExecutionParams!) {
  launchPipelineExecution(executionParams: $executionParams) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
    ... on RunConfigValidationInvalid { errors { message } }
  }
}
"""


def _launch_from_the_ui(instance: dg.DagsterInstance, patient_key: str) -> str:
    """The patient's run as the launchpad launches it: the GraphQL mutation on the code location of workspace.yaml,
    with the partition tag the launchpad's partition picker sets; the run queue launches it."""
    from dagster_graphql.test.utils import execute_dagster_graphql

    with instance_runs.home_workspace(instance) as workspace:
        [location] = workspace.code_location_names
        repository = next(iter(workspace.get_code_location(location).get_repositories()))
        params = {"selector": {"repositoryLocationName": location, "repositoryName": repository,
                               "pipelineName": patient_runs.PATIENT_JOB},
                  "runConfigData": patient_runs.PATIENT_RUN_EXECUTION, "mode": "default",
                  "executionMetadata": {"tags": [{"key": "dagster/partition", "value": patient_key}]}}
        result = execute_dagster_graphql(workspace, LAUNCH_RUN, {"executionParams": params})
    launched = result.data["launchPipelineExecution"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def _wait_for(instance: dg.DagsterInstance, run_id: str, timeout: float = 600) -> dg.DagsterRun:
    with instance_runs.run_queue_running(instance):
        deadline = time.monotonic() + timeout
        while (run := instance.get_run_by_id(run_id)) is not None and not run.is_finished:
            assert time.monotonic() < deadline, f"the UI-launched run {run_id} did not finish in {timeout:.0f} s"
            time.sleep(0.5)
    assert run is not None
    return run


def test_a_patient_run_launched_from_the_ui_writes_the_rows_of_the_cli_run(tmp_path: Path) -> None:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=1, n_prospective=0, seed=43,
                                second_rater_fraction=0)
    home = tmp_path / "home"  # the same path for both (derived file names hash their source paths)
    [key] = _prepared_home(home, manifest)
    with dg.DagsterInstance.get() as instance:
        [cli] = _run_patients(instance, [key])
    assert cli.success, cli.reason
    from_cli = _tables(home)

    [key] = _prepared_home(home, manifest)
    with dg.DagsterInstance.get() as instance:
        run = _wait_for(instance, _launch_from_the_ui(instance, key))
        assert run.status == dg.DagsterRunStatus.SUCCESS, patient_runs.patient_outcome(instance, run).reason
        assert patient_runs.patients_to_run(instance, [key]) == []  # the CLI takes the UI's run as done
    assert _tables(home) == from_cli
    assert any(from_cli[table] for table in ("radiomics_features", "preprocessed_channels"))
