"""The zoo's fit units as parallel steps (issue 18): the same modeling run executed in process (one step after
another) and through the instance with the multiprocess executor (2 processes) gives identical model_results,
predictions, trained_models, champions and MLflow params / selected features.

Real parts only: a real Dagster instance, DuckDB warehouse and sqlite MLflow store; the second run is a real
`dg.execute_job` of a reconstructable job, whose step processes read the resources from the environment.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import mlflow
import polars as pl
import pytest

from cssci_platform.cli.study_stages import FitUnitCounter
from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability
from cssci_platform.defs.models.jobs import FIT_NATIVE_THREADS, MODELING_EXECUTOR, available_cores
from cssci_platform.defs.models.training import STEP_FILES, trained_models
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.study_config import EXPERIMENT_ENV
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study
from cssci_platform_tests.defs.test_modeling_pipeline import _seed_radiomics

ASSETS = [cohort_manifest, patient_splits, feature_matrix, feature_reliability, trained_models]
SETTINGS = {"models": {"classifiers": ["LR", "RandomForest"], "cv_folds": 3}, "selection": {"mrmr_k": 5}}
ZOO_TABLES = {  # table -> the columns that name a row (run ids and timestamps differ between runs by nature)
    "trained_models": ["result_name", "mode", "fold"],
    "model_results": ["result_name", "mode", "fold", "role", "metric"],
    "predictions": ["model_name", "patient_key", "class_label"],
}
RUN_SPECIFIC = {"run_id", "model_uri", "created_at", "model_version", "predicted_at"}


def zoo_job() -> dg.JobDefinition:
    """trained_models under the multiprocess executor, resources from the environment (each step process rebuilds
    the job from here)."""
    definitions = dg.Definitions(
        assets=[trained_models],
        jobs=[dg.define_asset_job("zoo", selection=[trained_models], executor_def=MODELING_EXECUTOR)],
        resources={
            "warehouse": WarehouseResource(path=os.environ["CSSCI_WAREHOUSE"]),
            "cohort": CohortResource(manifest_path=os.environ["CSSCI_MANIFEST"]),
            "tracking": TrackingResource(tracking_uri=os.environ["CSSCI_MLFLOW_URI"]),
            "study": StudyResource(path=os.environ[EXPERIMENT_ENV]),
        },
    )
    return definitions.resolve_job_def("zoo")


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[dict]:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=45, n_prospective=6, seed=11)
    with modeling_platform(manifest, tmp_path, _seed_radiomics) as ready:
        yield ready


def _zoo_snapshot(warehouse: Path, tracking_uri: str) -> dict[str, object]:
    """The zoo's tables without run-specific columns, predictions keyed by model instead of run id, and each
    model's MLflow params and selected features."""
    models = table_frame(warehouse, "SELECT * FROM trained_models")
    model_of_run = {r: f"{n} {m} {f}" for r, n, m, f in models.select("run_id", "result_name", "mode", "fold").rows()}
    snapshot: dict[str, object] = {}
    for table, key in ZOO_TABLES.items():
        frame = table_frame(warehouse, f"SELECT * FROM {table}")
        if table == "predictions":
            frame = frame.with_columns(pl.col("model_name").replace_strict(model_of_run))
        snapshot[table] = frame.drop([c for c in frame.columns if c in RUN_SPECIFIC]).sort(key, nulls_last=True)
    client = mlflow.MlflowClient(tracking_uri)
    snapshot["runs"] = {
        model_of_run[run_id]: (
            client.get_run(run_id).data.params,
            json.loads(Path(client.download_artifacts(run_id, "selection/selected_features.json")).read_text())
            if any(a.path == "selection" for a in client.list_artifacts(run_id))
            else [],
        )
        for run_id in model_of_run
    }
    snapshot["champions"] = sorted(models.filter(pl.col("champion"))["result_name"].to_list())
    return snapshot


def _native_threads(events: list) -> list[int]:
    """Each fit step's `native_threads` output metadata: the native thread pools' size while it fitted."""
    outputs = [e for e in events if e.event_type_value == "STEP_OUTPUT" and ".fit_unit[" in e.step_key]
    assert outputs
    return [e.event_specific_data.metadata["native_threads"].value for e in outputs]


@pytest.mark.timeout(1200)  # 6 step processes forked from one that imported the definitions (more on a loaded CI)
def test_parallel_steps_equal_the_serial_run(platform: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    upstream = [patient_splits.key, feature_matrix.key, feature_reliability.key]
    serial = materialize_with_study(ASSETS, platform, [*upstream, *trained_models.keys], SETTINGS)
    assert serial.success
    fit_steps = [e.step_key for e in serial.all_events if e.event_type_value == "STEP_SUCCESS"]
    # one thread per native pool in process too: the numbers cannot depend on how many steps run at once
    assert set(_native_threads(serial.all_events)) == {FIT_NATIVE_THREADS} == {1}
    # (Rad, Clinical, Combined) x 2 modes, 1 fold: 6 units, in two steps per worker (in process: the cores)
    assert sum(".fit_unit[" in step for step in fit_steps) == min(6, 2 * available_cores())
    tracking_uri = platform["resources"]["tracking"].tracking_uri
    before = _zoo_snapshot(platform["warehouse"], tracking_uri)

    study_file = Path(platform["warehouse"]).parent / "study"
    monkeypatch.setenv("CSSCI_WAREHOUSE", str(platform["warehouse"]))
    monkeypatch.setenv("CSSCI_MANIFEST", platform["resources"]["cohort"].manifest_path)
    monkeypatch.setenv("CSSCI_MLFLOW_URI", tracking_uri)
    monkeypatch.setenv(EXPERIMENT_ENV, str(next(study_file.glob("*.yaml"))))
    with dg.execute_job(
        dg.reconstructable(zoo_job),
        instance=platform["instance"],
        run_config={"execution": {"config": {"max_concurrent": 2}}},
        raise_on_error=False,
    ) as parallel:
        assert parallel.success
        starts = [e for e in parallel.all_events if e.event_type_value == "STEP_START"]
        processes = {e.pid for e in starts if ".fit_unit[" in e.step_key}
        # two steps at once on two cores: one BLAS / OpenMP thread each, not two each spinning against the other's
        assert set(_native_threads(parallel.all_events)) == {FIT_NATIVE_THREADS}
    assert len(processes) == 4  # the 6 units in two steps per worker of max_concurrent 2, each in its own process
    # the command's progress bar counts fit units, not steps: fed the run's events, it ends at 6 of 6
    progress: list[tuple[int, int, int]] = []
    counter = FitUnitCounter(lambda done, failed, total: progress.append((done, failed, total)))
    for entry in platform["instance"].all_logs(parallel.run_id):
        counter.on_event(entry)
    assert progress[-1] == (6, 0, 6) and all(total == 6 for _, _, total in progress[4:])
    after = _zoo_snapshot(platform["warehouse"], tracking_uri)

    assert set(after) == set(before)
    for part in ZOO_TABLES:
        assert after[part].equals(before[part]), part  # type: ignore[union-attr]
    assert after["runs"] == before["runs"]
    assert after["champions"] == before["champions"] and len(after["champions"]) == 3
    assert not (Path(platform["warehouse"]).parent / STEP_FILES / parallel.run_id).exists()
