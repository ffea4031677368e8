import dagster as dg
import pytest

from cssci_platform.definitions import defs

EXPECTED_ASSETS = {
    "cohort_manifest",
    "patient_scans",
    "preprocessed_channels",
    "radiomics_features",
    "roi_slices",
    "study_outcome",
    "patient_splits",
    "fine_tuned_backbones",
    "center_embeddings",
    "feature_matrix",
    "feature_reliability",
    "harmonized_features",
    "trained_models",
    "model_results",
    "predictions",
    "prospective_predictions",
    "followup_outcomes",
    "validation_metrics",
    "evaluation_report",
}
BLOCKING_CHECKS = {
    ("patient_scans", "patient_qc"),
    ("preprocessed_channels", "roi_survives_resampling"),
    ("radiomics_features", "features_finite"),
    ("roi_slices", "roi_slice_found"),
}
WARNING_CHECKS = {
    ("center_embeddings", "center_patients_embedded"),
    ("feature_matrix", "combat_batches_estimable"),
    ("validation_metrics", "champions_within_test_interval"),
}
EXPECTED_JOBS = {
    "cohort_manifest_job",
    "patient_features_job",
    "patient_batch_job",
    "center_embeddings_job",
    "center_embeddings_batch_job",
    "fine_tuning_job",
    "modeling_job",
    "prospective_patient_job",
    "champion_scoring_job",
    "champion_scoring_batch_job",
    "followup_job",
    "validation_job",
    "retraining_job",
    "report_job",
}
EXPECTED_SENSORS = {"cohort_manifest_sensor", "new_patient_sensor"}
EXPECTED_SCHEDULES = {"validation_metrics_schedule"}
PATIENT_ASSETS = {
    "patient_scans",
    "preprocessed_channels",
    "radiomics_features",
    "roi_slices",
    "prospective_predictions",
}
CENTER_ASSETS = {"center_embeddings"}


@pytest.fixture(scope="module")
def definitions(monkeypatch_module) -> dg.Definitions:
    loaded = defs()
    loaded.resolve_all_job_defs()  # resolves resources and jobs: fails on wiring errors
    return loaded


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CSSCI_WAREHOUSE", "CSSCI_MANIFEST", "CSSCI_IMAGE_STORE", "CSSCI_MLFLOW_URI"):
            patch.setenv(name, f"/nonexistent/{name.lower()}")
        yield patch


def test_assets(definitions: dg.Definitions) -> None:
    keys = {key.to_user_string() for key in definitions.resolve_asset_graph().get_all_asset_keys()}
    assert keys == EXPECTED_ASSETS


def test_checks(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    found = {
        (key.asset_key.to_user_string(), key.name): graph.get_check_spec(key).blocking for key in graph.asset_check_keys
    }
    assert {check for check, blocking in found.items() if blocking} == BLOCKING_CHECKS
    assert {check for check, blocking in found.items() if not blocking} == WARNING_CHECKS


def test_jobs_sensors_schedules(definitions: dg.Definitions) -> None:
    jobs = {job.name for job in definitions.resolve_all_job_defs()} - {"__ASSET_JOB"}
    assert jobs == EXPECTED_JOBS
    assert {sensor.name for sensor in definitions.sensors or []} == EXPECTED_SENSORS
    assert {schedule.name for schedule in definitions.schedules or []} == EXPECTED_SCHEDULES


def test_patient_assets_are_partitioned_by_patient(definitions: dg.Definitions) -> None:
    graph = definitions.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        if key.to_user_string() in PATIENT_ASSETS:
            assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "patients"
        elif key.to_user_string() in CENTER_ASSETS:
            assert isinstance(partitions, dg.DynamicPartitionsDefinition) and partitions.name == "centers"
            assert graph.get(key).pools == {"gpu"}
        else:
            assert partitions is None


def test_resources_come_from_environment(definitions: dg.Definitions) -> None:
    assert set(definitions.resources or {}) >= {"warehouse", "cohort", "image_store", "tracking", "inbox"}


# The jobs whose steps the cluster profile sends to Celery workers, and their GPU steps (the `gpu` queue, taken only
# by workers started with it on GPU machines: center embeddings and fine-tuning, issue 15)
DISTRIBUTED_JOBS = {"patient_batch_job", "center_embeddings_batch_job", "modeling_job", "fine_tuning_job"}
GPU_STEPS = {"embed_center_batch", "fine_tuned_backbones"}


def test_gpu_steps_go_to_the_gpu_queue_and_the_distributable_jobs_to_the_step_executor(
        definitions: dg.Definitions) -> None:
    from cssci_platform.defs.executors import CELERY_QUEUE_TAG

    routed = {}
    for name in DISTRIBUTED_JOBS:
        job = definitions.resolve_job_def(name)
        assert job.executor_def.executor_creation_fn.__qualname__.startswith("step_executor."), name
        routed.update({node.name: node.tags.get(CELERY_QUEUE_TAG) for node in job.graph.nodes})
    assert {step for step, queue in routed.items() if queue == "gpu"} == GPU_STEPS
    assert {queue for step, queue in routed.items() if step not in GPU_STEPS} == {None}  # the default queue
