"""Issue 13, item 4: one study run shows one number per threshold metric everywhere: the model's MLflow run,
`model_results`, `cssci compare` (`study_runs.model_metrics`) and the report's performance table, in paper_faithful
mode too (where the Youden threshold is re-picked on each cohort)."""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability
from cssci_platform.defs.models.training import trained_models
from cssci_platform.defs.reports.assets import evaluation_report
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.study_runs import STUDY_TAG, model_metrics, start_study_run
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study
from cssci_platform_tests.defs.test_modeling_pipeline import _seed_radiomics

ASSETS = [cohort_manifest, patient_splits, feature_matrix, feature_reliability, trained_models, evaluation_report]


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[dict]:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=45, n_prospective=6, seed=11)
    with modeling_platform(manifest, tmp_path, _seed_radiomics) as ready:
        yield ready


def _report_cells(page: str, section: str, model: str, mode: str) -> dict[str, str]:
    """The cells of one model's row in the report's performance table of `section`, by column header."""
    table = page.split(f"<h3>{section}</h3>")[1].split("</table>")[0]
    headers = re.findall(r"<th>(.*?)</th>", table)
    for row in re.findall(r"<tr>(.*?)</tr>", table, flags=re.S):
        cells = [c.strip() for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
        if cells[:2] == [model, mode]:
            return dict(zip(headers, cells, strict=True))
    raise AssertionError(f"no row {model} {mode} in the {section} table")


def test_paper_faithful_threshold_metrics_agree_in_mlflow_model_results_compare_and_report(platform: dict) -> None:
    tracking = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "test")
    study = start_study_run(tracking, "experiment: test\n", {}, {})
    sections = {
        "models": {"signatures": ["Rad"], "classifiers": ["LR"], "cv_folds": 3},
        "selection": {"mrmr_k": 5},
        "modes": ["paper_faithful", "leakage_safe"],
    }
    result = materialize_with_study(
        ASSETS,
        platform,
        [patient_splits.key, feature_matrix.key, *trained_models.keys],
        sections,
        tags={STUDY_TAG: study},
    )  # as `cssci run` tags the modelling run
    assert result.success
    report = materialize_with_study(ASSETS, platform, [evaluation_report.key], sections)
    assert report.success
    [event] = report.get_asset_materialization_events()
    page = Path(event.event_specific_data.materialization.metadata["report"].value).read_text(encoding="utf-8")
    tracking.client().set_terminated(study, "FINISHED")
    compared = model_metrics(tracking.tracking_uri, tracking.client().get_run(study), None).set_index("mode")
    for mode in ("paper_faithful", "leakage_safe"):
        run_id = table_frame(platform["warehouse"], "SELECT run_id FROM trained_models WHERE mode = ?", [mode])[
            "run_id"
        ][0]
        logged = tracking.client().get_run(run_id).data.metrics
        stored = dict(
            table_frame(
                platform["warehouse"],
                "SELECT metric, value FROM model_results WHERE run_id = ? AND role = 'test'",
                [run_id],
            ).iter_rows()
        )
        cells = _report_cells(page, "Test", "Rad_LR", mode)
        for metric, column in (("sensitivity", "Sen"), ("specificity", "Spe"), ("threshold", "Threshold")):
            assert logged[f"test_{metric}"] == pytest.approx(stored[metric], abs=1e-12), (mode, metric)
            assert float(cells[column]) == pytest.approx(stored[metric], abs=5e-4), (mode, metric, cells)
            if metric != "threshold":
                assert compared.loc[mode, f"test_{metric}"] == pytest.approx(stored[metric], abs=1e-12), (mode, metric)


def test_leave_one_center_out_report_states_the_unseen_center_policy_of_each_center(platform: dict) -> None:
    sections = {
        "split": {"preset": "leave_one_center_out", "folds": ["all"]},
        "selection": {"mrmr_k": 5},
        "models": {"classifiers": ["LR"], "signatures": ["Rad"], "cv_folds": 3},
        "modes": ["leakage_safe"],
        "harmonization": {"unseen_center_policy": "refit_site"},
    }
    result = materialize_with_study(
        ASSETS,
        platform,
        [patient_splits.key, feature_matrix.key, *trained_models.keys, evaluation_report.key],
        sections,
    )
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == evaluation_report.key]
    page = Path(event.event_specific_data.materialization.metadata["report"].value).read_text(encoding="utf-8")
    for center in ("center_A", "center_B", "center_C"):
        assert f"Held-out center {center}: ComBat policy 'refit_site'" in page
