"""A derived study outcome through Dagster, from the study config alone: study_outcome writes the label and its
score (rule change_above_mean), patient_splits records it, trained_models re-thresholds the score at each fold's
training mean in leakage_safe mode, and `modelled_outcome` answers with the derived name."""

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix
from cssci_platform.defs.models.training import trained_models
from cssci_platform.defs.outcomes.assets import study_outcome
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.queries.modeling import modelled_outcome
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import append_rows, connect, table_frame
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study

ASSETS = [cohort_manifest, study_outcome, patient_splits, feature_matrix, trained_models]
UPPER_LIMB = {
    "outcome": {
        "name": "uems_improved",
        "source": "uems_1y",
        "rule": "change_above_mean",
        "baseline": "uems_admission",
    },
    "models": {"signatures": ["Rad"], "classifiers": ["LR"], "cv_folds": 3},
    "selection": {"mrmr_k": 5, "lasso": False},
    "harmonization": {"enabled": False},
}


@pytest.fixture
def platform(tmp_path: Path) -> Iterator[dict]:
    manifest = write_sci_cohort(tmp_path / "cohort", n_development=40, n_prospective=0, seed=5, protocol="upper_limb")
    with modeling_platform(manifest, tmp_path, _noise_radiomics) as ready:
        yield ready


def _noise_radiomics(warehouse: Path) -> None:
    patients = table_frame(warehouse, "SELECT patient_key FROM patients")["patient_key"]
    rng = np.random.default_rng(0)
    rows = [
        {
            "patient_key": key,
            "sequence": "sag_T2",
            "roi": "lesion",
            "segmentation": "primary",
            "channel": "original",
            "feature": f"original_glcm_F{i}",
            "value": float(rng.normal()),
            "extractor_version": "seeded",
            "params_name": "seeded",
            "params_hash": "seeded",
        }
        for key in patients
        for i in range(8)
    ]
    with connect(warehouse) as con:
        append_rows(con, "radiomics_features", pl.DataFrame(rows))


def test_change_above_mean_reaches_split_training_and_the_modelled_outcome(platform: dict) -> None:
    result = materialize_with_study(
        ASSETS, platform, [study_outcome.key, patient_splits.key, feature_matrix.key, *trained_models.keys], UPPER_LIMB
    )
    assert result.success
    query = lambda sql, params=None: table_frame(platform["warehouse"], sql, params)  # noqa: E731
    scores = query(
        "SELECT patient_key, CAST(value AS DOUBLE) AS score FROM outcomes WHERE outcome = 'uems_improved__score'"
    )
    assert scores.height > 0 and set(query("SELECT DISTINCT outcome FROM splits")["outcome"]) == {"uems_improved"}
    with connect(platform["warehouse"]) as con:
        assert modelled_outcome(con) == "uems_improved"

    train = query("SELECT patient_key FROM splits WHERE role = 'train'")["patient_key"].to_list()
    training_mean = float(scores.filter(pl.col("patient_key").is_in(train))["score"].mean())
    client = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "test").client()
    params = {
        mode: client.get_run(query("SELECT run_id FROM trained_models WHERE mode = ?", [mode])["run_id"][0]).data.params
        for mode in ("leakage_safe", "paper_faithful")
    }
    assert float(params["leakage_safe"]["outcome_threshold"]) == pytest.approx(training_mean)
    assert "outcome_threshold" not in params["paper_faithful"]  # the stored cohort-mean labels, as published
    assert params["leakage_safe"]["outcome.rule"] == "change_above_mean"
    labels = query(
        "SELECT DISTINCT p.patient_key, p.label FROM predictions p JOIN trained_models t ON t.run_id = p.model_name "
        "WHERE t.mode = 'leakage_safe' AND p.role = 'train'"
    )
    expected = {key: "1" if score > training_mean else "0" for key, score in scores.iter_rows()}
    assert labels.height == len(train) and all(label == expected[key] for key, label in labels.iter_rows())
