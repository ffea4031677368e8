"""The multiclass study report through Dagster on the synthetic spinal-metastasis cohort: real DuckDB warehouse, real
sqlite MLflow. Manifest -> split -> feature matrix -> zoo (Rad, Clinical = the expert-derived features) -> report,
with the fine-tuned ResNet50's predictions in the `predictions` table as `fine_tuned_backbones` writes them.

Radiomics values and the CNN's probabilities are seeded (planted class signal) so the test exercises the report
without image processing or network training, which other tests cover.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
import numpy as np
import polars as pl
import pytest
import yaml

from cssci_platform.defs.ingest.assets import cohort_manifest
from cssci_platform.defs.models.feature_matrix import feature_matrix
from cssci_platform.defs.models.training import trained_models
from cssci_platform.defs.reports.assets import evaluation_report
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.model_tracking import TrackingConfig, sqlite_tracking_uri
from cssci_platform.lib.synthetic import METASTASIS_CLASSES, write_metastasis_cohort
from cssci_platform.lib.warehouse import append_rows, connect, table_frame
from cssci_platform_tests.defs.conftest import modeling_platform
from cssci_platform_tests.defs.study_settings import materialize_with_study

ASSETS = [cohort_manifest, patient_splits, feature_matrix, trained_models, evaluation_report]
CLASSES = sorted(c.name for c in METASTASIS_CLASSES)
MODEL_SETTINGS = {
    "models": {"classifiers": ["LR", "RandomForest"], "signatures": ["Rad", "Clinical"], "cv_folds": 3},
    "selection": {"mrmr_k": 5, "lasso": False},
    "harmonization": {"enabled": False},
}
NETWORK_ID = "resnet50__sag_T2__original__IMAGENET1K_V2"
N_PROSPECTIVE = 12


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 patients; the last 12 (by id) become the prospective validation cohort, their primary site known.

    The outcome levels are declared sorted: training's `multiclass_metrics` (lib/evaluation/performance.py) hands
    the declared order to scikit-learn, which refuses unsorted labels. The report itself takes any order (its unit
    tests use the generator's lung, kidney, breast, thyroid, prostate)."""
    folder = tmp_path_factory.mktemp("metastasis_cohort")
    path = write_metastasis_cohort(folder, n_patients=60, seed=7)
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    spec["outcomes"]["primary_site"]["levels"] = CLASSES
    path.write_text(yaml.safe_dump(spec, sort_keys=False), encoding="utf-8")
    table = pl.read_csv(folder / "patients.csv", infer_schema_length=0)
    prospective = set(table["patient_id"].sort()[-N_PROSPECTIVE:])
    table.with_columns(
        cohort=pl.when(pl.col("patient_id").is_in(prospective)).then(pl.lit("prospective")).otherwise(pl.col("cohort"))
    ).write_csv(folder / "patients.csv")
    return path


@pytest.fixture
def platform(manifest: Path, tmp_path: Path) -> Iterator[dict]:
    with modeling_platform(manifest, tmp_path, _seed_radiomics) as ready:
        yield ready


def _labels(warehouse: Path) -> pl.DataFrame:
    return table_frame(
        warehouse,
        "SELECT p.patient_key, p.center, o.value AS label FROM patients p "
        "JOIN outcomes o USING (patient_key) WHERE o.outcome = 'primary_site'",
    )


def _seed_radiomics(warehouse: Path) -> None:
    """12 features per patient, the first 4 shifted by primary site (a different direction per class)."""
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(len(CLASSES), 4)) * 1.5
    rows = []
    for key, _center, label in _labels(warehouse).iter_rows():
        values = rng.normal(size=12)
        values[:4] += directions[CLASSES.index(label)]
        rows += [
            {
                "patient_key": key,
                "sequence": "sag_T2",
                "roi": "lesion",
                "segmentation": "primary",
                "channel": "original",
                "feature": f"f{i:02d}",
                "value": float(v),
                "extractor_version": "seeded",
                "params_name": "seeded",
                "params_hash": "seeded",
            }
            for i, v in enumerate(values)
        ]
    with connect(warehouse) as con:
        append_rows(con, "radiomics_features", pl.DataFrame(rows))


def _seed_cnn_predictions(warehouse: Path) -> None:
    """What `fine_tuned_backbones` stores for resnet50 on channel `original`: one row per patient x class."""
    rng = np.random.default_rng(1)
    patients = table_frame(
        warehouse,
        "SELECT s.patient_key, s.role, s.split, s.fold, p.cohort, o.value AS label FROM splits s "
        "JOIN patients p USING (patient_key) JOIN outcomes o ON o.patient_key = s.patient_key "
        "AND o.outcome = s.outcome",
    )
    rows = []
    for key, role, split, fold, cohort, label in patients.iter_rows():
        alpha = np.ones(len(CLASSES))
        alpha[CLASSES.index(label)] += 2.5
        rows += [
            {
                "patient_key": key,
                "class_label": c,
                "probability": float(p),
                "cohort": cohort,
                "role": role,
                "signature": "CNN",
                "classifier": "ResNet50_original",
                "mode": "leakage_safe",
                "split": split,
                "fold": fold,
                "model_name": NETWORK_ID,
                "model_version": "torchvision:IMAGENET1K_V2",
                "created_at": datetime.now(),
            }
            for c, p in zip(CLASSES, rng.dirichlet(alpha))
        ]
    with connect(warehouse) as con:
        append_rows(con, "predictions", pl.DataFrame(rows))


def _run(platform: dict, selection: list) -> dg.ExecuteInProcessResult:
    return materialize_with_study(ASSETS, platform, selection, MODEL_SETTINGS, name="metastasis")


def test_multiclass_report_compares_the_expert_features_champion_with_the_cnn(platform: dict) -> None:
    assert _run(platform, [patient_splits.key, feature_matrix.key]).success
    _seed_cnn_predictions(platform["warehouse"])
    result = _run(platform, list(trained_models.keys))
    assert result.success
    roles = table_frame(platform["warehouse"], "SELECT DISTINCT role FROM predictions WHERE signature = 'CNN'")
    assert set(roles["role"]) == {"train", "test", "validation"}  # retraining the zoo keeps the CNN's rows

    report = _run(platform, [evaluation_report.key])
    assert report.success
    [event] = report.get_asset_materialization_events()
    metadata = event.event_specific_data.materialization.metadata
    assert metadata["layout"].value == "multiclass"
    html = Path(metadata["report"].value).read_text(encoding="utf-8")
    body = html.split("<body>")[1]
    for section in (
        f"Multiclass outcome: {', '.join(CLASSES)}",
        "Table 1: by outcome class",
        "<h3>Test</h3>",
        "<h3>Validation (prospective)</h3>",
        "Top-1 accuracy (95% CI)",
        "Top-3 accuracy (95% CI)",
        "Macro OvR AUC (95% CI)",
        "Per-class performance of the champions and CNNs",
        "OvR AUC (DeLong 95% CI)",
        "Confusion matrix of the best model",
        "One-vs-rest ROC curves per class",
        "DeLong comparisons per class",
        "SHAP summary by class",
        "leakage_safe vs paper_faithful",
        "Clinical_LR",
        "Rad_RandomForest",
        "ResNet50 CNN (original)",
        "expert-derived features (age, sex, lesion_pattern",
        "1000 bootstrap replicates",
    ):
        assert section in body, section
    delong = body.split("DeLong comparisons per class")[1]
    first = delong.split("<tbody>")[1].split("</tr>")[0]
    assert (
        "<td>Clinical_LR</td>" in first and "<td>ResNet50 CNN (original)</td>" in first
    )  # expert features vs CNN first
    assert "http" not in body and "data:image/png;base64," in body
    tracking = TrackingConfig(sqlite_tracking_uri(platform["mlflow"]), "metastasis")
    artifacts = [a.path for a in tracking.client().list_artifacts(metadata["mlflow_run_id"].value, "report")]
    assert artifacts == ["report/metastasis.html"]
