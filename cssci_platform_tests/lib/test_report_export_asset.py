"""The evaluation_report asset exports the report (issue 16): a real Dagster materialization on a small trained study
writes the HTML page, its figures (PNG + SVG) and tables (CSV) beside it and the PDF, logs them to MLflow
(report/<study>.html unchanged, the rest under report_files/) and says in its metadata where the PDF is, or in one
line how to get it when no browser is found."""

from collections.abc import Iterator
from pathlib import Path

import pytest

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability
from cssci_platform.defs.models.training import trained_models
from cssci_platform.defs.reports.assets import evaluation_report
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.report.export import BROWSER_ENV, find_browser, pdf_page_count
from cssci_platform.lib.study_runs import STUDY_TAG
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study
from cssci_platform_tests.defs.test_modeling_pipeline import _seed_radiomics

ASSETS = [cohort_manifest, patient_splits, feature_matrix, feature_reliability, trained_models, evaluation_report]
SECTIONS = {"models": {"signatures": ["Rad", "Clinical"], "classifiers": ["LR"], "cv_folds": 3},
            "selection": {"mrmr_k": 5}, "modes": ["leakage_safe"]}


@pytest.fixture(scope="module")
def platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    folder = tmp_path_factory.mktemp("report_export")
    manifest = write_sci_cohort(folder / "cohort", n_development=40, n_prospective=4, seed=5)
    with modeling_platform(manifest, folder, _seed_radiomics) as ready:
        trained = materialize_with_study(ASSETS, ready, [patient_splits.key, feature_matrix.key, *trained_models.keys],
                                         SECTIONS)
        assert trained.success
        yield ready | {"folder": folder}


def _report_metadata(platform: dict, tags: dict[str, str] | None = None) -> dict:
    result = materialize_with_study(ASSETS, platform, [evaluation_report.key], SECTIONS, tags=tags)
    assert result.success
    [event] = result.get_asset_materialization_events()
    return {key: value.value for key, value in event.event_specific_data.materialization.metadata.items()}


def test_the_asset_writes_figures_tables_and_the_pdf_and_logs_them_to_mlflow(platform: dict) -> None:
    if find_browser() is None:
        pytest.skip("no headless Chromium on this machine (.ci/run installs it)")
    metadata = _report_metadata(platform)
    html = Path(metadata["report"])
    folder = Path(metadata["figures_and_tables"])
    assert folder == html.parent / html.stem and Path(metadata["pdf"]) == folder / f"{html.stem}.pdf"
    pngs = sorted(p.stem for p in (folder / "figures").glob("*.png"))
    assert {"roc_train", "roc_test", "calibration_test"} <= set(pngs) and metadata["n_figures"] == len(pngs)
    assert {p.stem for p in (folder / "figures").glob("*.svg")} >= {"roc_train", "roc_test", "calibration_test"}
    tables = {p.stem for p in (folder / "tables").glob("*.csv")}
    assert {"table1_by_cohort", "performance_test", "reporting_checklist"} <= tables
    assert metadata["n_tables"] == len(tables) and pdf_page_count(Path(metadata["pdf"])) >= 5
    client = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "test").client()
    run = metadata["mlflow_run_id"]
    assert [a.path for a in client.list_artifacts(run, "report")] == [f"report/{html.name}"]
    logged = {a.path for a in client.list_artifacts(run, "report_files")}
    assert {"report_files/figures", "report_files/tables", f"report_files/{html.stem}.pdf"} <= logged
    assert {f"report_files/figures/{stem}.svg" for stem in ("roc_test",)} <= {
        a.path for a in client.list_artifacts(run, "report_files/figures")}


def test_without_a_browser_the_metadata_says_how_to_get_the_pdf(platform: dict,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(BROWSER_ENV, "/nonexistent/chromium")
    metadata = _report_metadata(platform)
    assert Path(metadata["report"]).exists() and metadata["n_figures"] > 0 and metadata["n_tables"] > 0
    assert metadata["pdf"].startswith("no PDF") and "apt-get install chromium" in metadata["pdf"]


def test_the_report_run_is_nested_under_its_study_run(platform: dict) -> None:
    """In a `cssci run` (the Dagster run carries the MLflow study run) the report run sits under the study run in the
    MLflow UI, like the model runs; without a study run it stays at the top level."""
    client = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "test").client()
    study_run = client.create_run(client.get_experiment_by_name("test").experiment_id, run_name="study test")
    nested = client.get_run(_report_metadata(platform, {STUDY_TAG: study_run.info.run_id})["mlflow_run_id"])
    assert nested.data.tags["mlflow.parentRunId"] == study_run.info.run_id
    assert nested.data.tags[STUDY_TAG] == study_run.info.run_id
    alone = client.get_run(_report_metadata(platform)["mlflow_run_id"])
    assert "mlflow.parentRunId" not in alone.data.tags


def test_each_champion_is_registered_with_its_model_card_and_plots(platform: dict) -> None:
    """trained_models gives the registry each champion's evidence (its predictions against the labels it was evaluated
    on): the version's description is the model card with the test AUC, and the run holds its ROC and calibration
    plots (issue 16, MLflow tidy)."""
    client = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "test").client()
    versions = client.search_model_versions("name LIKE 'cssci.test.%'")
    assert versions
    for version in versions:
        assert "predictions not given to the registry" not in (version.description or "")
        assert "test" in version.description and "AUC" in version.description
        plots = {a.path for a in client.list_artifacts(version.run_id, "plots")}
        assert {"plots/roc.png", "plots/calibration.png"} <= plots, version.name
