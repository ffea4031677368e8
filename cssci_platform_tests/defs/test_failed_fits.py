"""Issue 19: one failing fit does not take down the study. Radiomics that are constant for every patient make every
Rad and Combined fit fail (no feature is left after the constant filter); the Clinical fits finish, the failures are
recorded in MLflow (FAILED runs with the reason), in model_results (metric 'failed' with the reason) and in the report,
and the champion is chosen among the fits that finished."""

from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability, harmonized_features
from cssci_platform.defs.models.training import trained_models
from cssci_platform.defs.reports.assets import evaluation_report
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.study_runs import STUDY_TAG
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import append_rows, connect, table_frame
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study

ASSETS = [
    cohort_manifest,
    patient_splits,
    feature_matrix,
    feature_reliability,
    harmonized_features,
    trained_models,
    evaluation_report,
]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[dict]:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=40, n_prospective=4, seed=5)
    with modeling_platform(manifest, tmp_path, _constant_radiomics) as ready:
        yield ready


def _constant_radiomics(warehouse: Path) -> None:
    patients = table_frame(warehouse, "SELECT patient_key FROM patients")["patient_key"]
    rows = [
        {
            "patient_key": key,
            "sequence": "sag_T2",
            "roi": "lesion",
            "segmentation": "primary",
            "channel": "original",
            "feature": f"original_glcm_F{i}",
            "value": 1.0,
            "extractor_version": "seeded",
            "params_name": "seeded",
            "params_hash": "seeded",
        }
        for key in patients
        for i in range(4)
    ]
    with connect(warehouse) as con:
        append_rows(con, "radiomics_features", pl.DataFrame(rows))


def test_failing_fits_are_recorded_and_every_other_fit_finishes(platform: dict) -> None:
    sections = {"models": {"classifiers": ["LR"], "cv_folds": 3}}
    study_run = "0123456789abcdef0123456789abcdef"  # the MLflow study run of a `cssci run` (a run tag of Dagster's)
    result = materialize_with_study(
        ASSETS,
        platform,
        [patient_splits.key, feature_matrix.key, feature_reliability.key, *trained_models.keys],
        sections,
        tags={STUDY_TAG: study_run},
    )
    assert result.success
    query = lambda sql: table_frame(platform["warehouse"], sql)  # noqa: E731
    failed = query("SELECT result_name, mode, reason, run_id FROM model_results WHERE metric = 'failed'")
    assert set(zip(failed["result_name"], failed["mode"])) == {
        (name, mode) for name in ("Rad_LR", "Combined_LR") for mode in ("leakage_safe", "paper_faithful")
    }
    assert all(
        "features are constant" in reason and "no feature is left to model" in reason for reason in failed["reason"]
    )
    models = query("SELECT result_name, champion FROM trained_models")
    assert set(models["result_name"]) == {"Clinical_LR"} and models["champion"].sum() == 1
    client = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "test").client()
    run = client.get_run(failed["run_id"][0])
    assert run.info.status == "FAILED" and run.data.tags["cssci.failure_reason"] in failed["reason"][0]
    assert run.data.tags["mlflow.parentRunId"] == study_run  # nested under the study run, like the model runs

    report = materialize_with_study(ASSETS, platform, [evaluation_report.key], sections)
    assert report.success
    [event] = report.get_asset_materialization_events()
    html = Path(event.event_specific_data.materialization.metadata["report"].value).read_text(encoding="utf-8")
    assert "Fits that failed" in html and "Rad_LR (leakage_safe, holdout)" in html
    assert "harmonization.small_center 'pool', chosen before the run" in html  # the small-center decision, in methods
    assert "Radiomics feature classes shape were not harmonized" in html
