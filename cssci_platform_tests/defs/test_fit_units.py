"""How trained_models' fit steps fail (issue 18): a fit unit that raises fails the run with the unit (signature,
mode, fold) and the model named and writes no partial zoo; a study that leaves no model to fit is a clear failure,
not a run that succeeds with nothing.

Real parts: a Dagster instance, DuckDB warehouse and sqlite MLflow store; the unit fails for a real reason (the
experiment's MLflow artifact folder is taken by a file, so no model can be logged)."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix, feature_reliability
from cssci_platform.defs.models.training import trained_models
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study
from cssci_platform_tests.defs.test_modeling_pipeline import _seed_radiomics

ASSETS = [cohort_manifest, patient_splits, feature_matrix, feature_reliability, trained_models]
UPSTREAM = [patient_splits.key, feature_matrix.key, feature_reliability.key]
SETTINGS = {"models": {"classifiers": ["LR"], "cv_folds": 3}, "selection": {"mrmr_k": 5}}


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[dict]:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=30, n_prospective=0, seed=11)
    with modeling_platform(manifest, tmp_path, _seed_radiomics) as ready:
        assert materialize_with_study(ASSETS, ready, UPSTREAM, SETTINGS).success
        yield ready


def _zoo_rows(warehouse: Path) -> int:
    return table_frame(warehouse, "SELECT count(*) AS n FROM model_results")["n"][0]


def _step_failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
    return {e.step_key: e.step_failure_data.error.message for e in result.all_events if e.is_step_failure}


def test_a_failing_fit_unit_fails_the_run_naming_the_unit_and_model(platform: dict) -> None:
    artifacts = Path(platform["mlflow"]).parent / "mlflow-artifacts" / "unit_fails"
    artifacts.parent.mkdir(parents=True, exist_ok=True)
    artifacts.write_text("a file where the experiment's artifact folder belongs")
    result = materialize_with_study(ASSETS, platform, list(trained_models.keys), SETTINGS, name="unit_fails")

    assert not result.success
    failures = _step_failures(result)
    assert failures and all(".fit_unit[" in step for step in failures)
    message = next(m for step, m in failures.items() if "leakage_safe__Rad" in step)
    assert "fit unit Rad, leakage_safe, fold holdout" in message, message
    assert "logging Rad_LR to MLflow failed" in message and "NotADirectoryError" in message, message
    assert not any("register_zoo" in e.step_key for e in result.all_events if e.is_step_success)
    assert _zoo_rows(platform["warehouse"]) == 0  # no partial zoo: the fan-in did not run


def test_no_fit_unit_fails_the_run_with_a_clear_message(platform: dict) -> None:
    no_signature = {**SETTINGS, "models": {**SETTINGS["models"], "signatures": []}}
    result = materialize_with_study(ASSETS, platform, list(trained_models.keys), no_signature)

    assert not result.success  # before: plan_fit_units yielded nothing, the fan-in was skipped and the run succeeded
    [(step, message)] = _step_failures(result).items()
    assert step == "trained_models.plan_fit_units"
    assert "no model to fit" in message and "models.signatures" in message, message
    assert _zoo_rows(platform["warehouse"]) == 0
