"""One recipe for scoring a patient (issue 14): `cssci predict` on the patient's folder, `prospective_predictions` on
its stored rows and the champion in training must see the same patient.

The study departs from every default the scoring paths used to hard-code: a drawn rectangle with margin 0 (the
cervical_sci_ianr protocol), B-spline resampling, the `original_log_wavelet` radiomics profile on one sequence,
random-init backbones (weights none, the study's seed).
"""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from cssci_platform.definitions import defs
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.model_tracking import sqlite_tracking_uri
from cssci_platform.lib.study_config import StudyConfig, load_config
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import table_frame

pytestmark = [pytest.mark.xdist_group("ianr_scoring"), pytest.mark.long_running]  # a study trained once (~2 min)

STUDY = {
    "name": "ianr_scoring",
    "outcome": {"name": "good_outcome", "source": "ianr_6m", "rule": "at_least", "threshold": 37},
    "imaging": {"sequences": ["sag_T2"], "radiomics_rois": ["lesion"]},
    "preprocessing": {"channels": ["original"], "interpolator": "bspline"},
    "radiomics": {"params": "original_log_wavelet"},
    "deep": {
        "backbones": ["resnet18"],
        "weights": "none",
        "channels": ["original"],
        "seed": 3,
        "slice": {
            "sequence": "sag_T2",
            "roi": "lesion",
            "rectangle": "rect_mask",
            "rect_roi": "dl_rect",
            "margin": 0,
            "output_size": 32,
        },
    },
    "selection": {"mrmr_k": 5},
    "models": {"signatures": ["Rad", "DL_resnet18", "Rad+DL_resnet18"], "classifiers": ["LR"], "cv_folds": 3},
    "modes": ["leakage_safe"],
}


class Study:
    """The project's own definitions, pointed at one study by its environment (as `cssci run` does)."""

    def __init__(self, root: Path, instance: dg.DagsterInstance) -> None:
        self.root, self.instance = root, instance
        self.manifest = root / "cohort" / "cohort.yaml"
        self.config_path = root / "study.yaml"
        self.config_path.write_text(
            yaml.safe_dump({**STUDY, "cohort": {"manifest": str(self.manifest)}}), encoding="utf-8"
        )
        self.config: StudyConfig = load_config(self.config_path)
        self.warehouse = root / "w.duckdb"
        self.mlflow = sqlite_tracking_uri(root / "mlflow.db")
        self.environment = {
            "CSSCI_MANIFEST": str(self.manifest),
            "CSSCI_WAREHOUSE": str(self.warehouse),
            "CSSCI_IMAGE_STORE": str(root / "store"),
            "CSSCI_MLFLOW_URI": self.mlflow,
            "CSSCI_EXPERIMENT_CONFIG": str(self.config_path),
        }
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.environment.items():
                patch.setenv(name, value)
            self.definitions = defs()

    def run(self, job: str, partition: str | None = None) -> dg.ExecuteInProcessResult:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in self.environment.items():
                patch.setenv(name, value)
            return self.definitions.resolve_job_def(job).execute_in_process(
                partition_key=partition, instance=self.instance, raise_on_error=False
            )

    def query(self, sql: str, parameters: list | None = None) -> pl.DataFrame:
        return table_frame(self.warehouse, sql, parameters)


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Study]:
    root = tmp_path_factory.mktemp("ianr_scoring")
    write_sci_cohort(
        root / "cohort", n_development=20, n_prospective=0, seed=21, second_rater_fraction=0, protocol="ianr"
    )
    with dg.instance_for_test() as instance:
        study = Study(root, instance)
        assert study.run("cohort_manifest_job").success
        cohort = load_cohort(study.manifest)
        instance.add_dynamic_partitions("patients", sorted(cohort.patients))
        instance.add_dynamic_partitions("centers", sorted({p.center for p in cohort.patients.values()}))
        for key in sorted(cohort.patients):
            assert study.run("patient_features_job", key).success, key
        for center in instance.get_dynamic_partitions("centers"):
            assert study.run("center_embeddings_job", center).success, center
        assert study.run("modeling_job").success
        yield study


def patient_folder(cohort_dir: Path, patient_id: str, folder: Path) -> Path:
    """A cohort patient in the inbox layout `cssci predict` reads: its images and masks, patient.csv beside them."""
    import shutil

    shutil.copytree(cohort_dir / "images" / patient_id, folder)
    row = (
        pl.read_csv(cohort_dir / "patients.csv", infer_schema=False)
        .filter(pl.col("patient_id") == patient_id)
        .row(0, named=True)
    )
    row = {k: (Path(v).name if k.startswith(("image__", "mask__")) and v else v) for k, v in row.items()}
    pl.DataFrame([row], schema={k: pl.String for k in row}).write_csv(folder / "patient.csv")
    return folder


def champion_test_probabilities(study: Study) -> tuple[str, dict[str, float]]:
    """A held-out test patient and each champion's P(1) for it, as stored when the champion was trained."""
    stored = study.query(
        "SELECT p.patient_key, t.signature, p.probability FROM predictions p JOIN trained_models t "
        "ON p.model_name = t.run_id WHERE t.champion AND p.role = 'test' AND p.class_label = '1' "
        "ORDER BY p.patient_key"
    )
    key = stored["patient_key"][0]
    return key, dict(stored.filter(pl.col("patient_key") == key).select("signature", "probability").iter_rows())


def test_predict_prospective_scoring_and_training_see_the_same_patient(study: Study, tmp_path: Path) -> None:
    from cssci_platform.cli.predict import predict_patient_dir

    key, trained = champion_test_probabilities(study)
    assert set(trained) == {"Rad", "DL_resnet18", "Rad+DL_resnet18"}

    assert study.run("prospective_patient_job", key).success
    prospective = dict(
        study.query(
            "SELECT signature, probability FROM prospective_predictions WHERE patient_key = ? AND class_label = '1'",
            [key],
        ).iter_rows()
    )
    assert prospective == pytest.approx(trained, abs=1e-6)

    folder = patient_folder(study.manifest.parent, key, tmp_path / key)
    walk_in = predict_patient_dir(folder, study.config, study.manifest, study.warehouse, study.mlflow, tmp_path / "out")
    assert {s.signature: s.probabilities["1"] for s, _, _ in walk_in.scores} == pytest.approx(trained, abs=1e-6)


def test_a_patient_whose_rows_lack_the_champions_features_gets_a_precise_error(study: Study, tmp_path: Path) -> None:
    """The old `cssci predict` extracted the `default` radiomics profile whatever the study used, and the champion's
    column selection then failed with a bare KeyError."""
    from cssci_platform.cli.predict import PredictionError, predict_patient_dir

    key, _ = champion_test_probabilities(study)
    folder = patient_folder(study.manifest.parent, key, tmp_path / key)
    other_profile = study.config.model_copy(
        update={"radiomics": study.config.radiomics.model_copy(update={"params": "default"})}
    )
    with pytest.raises(PredictionError, match=r"lacks \d+ feature\(s\) the Rad\S* champion uses, e\.g\. \['rad__"):
        predict_patient_dir(folder, other_profile, study.manifest, study.warehouse, study.mlflow, tmp_path / "out")


def test_a_scoring_batch_equals_a_scoring_run_per_patient_and_names_a_patient_it_cannot_score(study: Study) -> None:
    keys = sorted(study.query("SELECT DISTINCT patient_key FROM predictions WHERE role = 'test'")["patient_key"])[:2]
    per_patient = [study.run("champion_scoring_job", key) for key in keys]
    assert all(result.success for result in per_patient)
    columns = "patient_key, center, signature, class_label, probability, risk_group, registered_model, model_version"
    query = f"SELECT {columns} FROM prospective_predictions WHERE patient_key IN (?, ?) ORDER BY ALL"
    reference = study.query(query, keys)

    with pytest.MonkeyPatch.context() as patch:
        for name, value in study.environment.items():
            patch.setenv(name, value)
        config = {"ops": {"score_patient_batch": {"config": {"patients": [keys[0], "NOT-A-PATIENT", keys[1]]}}}}
        batch = study.definitions.resolve_job_def("champion_scoring_batch_job").execute_in_process(
            run_config=config, instance=study.instance, raise_on_error=False)
    assert not batch.success  # the unknown patient, named with its reason; the patient after it was still scored
    failure = batch.get_step_failure_events()[0].event_specific_data.error.message
    assert "1 of 3 patients failed: NOT-A-PATIENT" in failure
    materialized = [e.event_specific_data.materialization for e in batch.get_asset_materialization_events()]
    assert [(m.asset_key.to_user_string(), m.partition) for m in materialized] == [
        ("prospective_predictions", keys[0]), ("prospective_predictions", keys[1])]
    scored = study.query(query, keys)
    assert scored.height == reference.height > 0
    assert scored.drop("probability").equals(reference.drop("probability"))
    assert scored["probability"].to_list() == pytest.approx(reference["probability"].to_list(), abs=1e-12)


def test_a_centers_batch_writes_the_embeddings_of_a_run_per_center(study: Study) -> None:
    query = ("SELECT patient_key, center, sequence, channel, backbone, weights_id, network, embedding FROM embeddings "
             "ORDER BY ALL")
    reference = study.query(query)  # the module's study embedded each center in a run of its own
    centers = sorted(study.instance.get_dynamic_partitions("centers"))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in study.environment.items():
            patch.setenv(name, value)
        config = {"ops": {"embed_center_batch": {"config": {"centers": centers}}}}
        batch = study.definitions.resolve_job_def("center_embeddings_batch_job").execute_in_process(
            run_config=config, instance=study.instance, raise_on_error=False)
    assert batch.success
    materialized = [e.event_specific_data.materialization for e in batch.get_asset_materialization_events()]
    assert [(m.asset_key.to_user_string(), m.partition) for m in materialized] == [
        ("center_embeddings", center) for center in centers]
    assert study.query(query).equals(reference) and reference.height > 0
