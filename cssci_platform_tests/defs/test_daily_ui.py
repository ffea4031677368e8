"""The daily UI in Dagster: groups that read in order, the QC montage on roi_slices, the prospective monitoring check
on validation_metrics and the cohort overview on cohort_manifest."""

import base64
import io
from datetime import datetime, timedelta
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk
from PIL import Image
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline

from cssci_platform.definitions import defs
from cssci_platform.defs.embeddings.assets import roi_slices
from cssci_platform.defs.features.assets import preprocessed_channels
from cssci_platform.defs.ingest.assets import cohort_manifest, patient_scans
from cssci_platform.defs.prospective.checks import champions_within_test_interval
from cssci_platform.defs.prospective.validation import validation_metrics
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.model_tracking import (
    log_model_run,
    register_champion,
    registered_model_name,
    sqlite_tracking_uri,
)
from cssci_platform.lib.qc_montage import DL_BOX_COLOUR, ROI_COLOURS
from cssci_platform.lib.qc_montage import FOLDER as MONTAGE_FOLDER
from cssci_platform.lib.warehouse import append_rows, connect, replace_rows
from cssci_platform.resources.tracking import TrackingResource
from cssci_platform_tests.defs.conftest import Platform

ONE_CHANNEL = ["preprocessing.channels=[original]", "deep.channels=[original]"]  # a cheaper patient stage


@pytest.fixture(scope="module")
def asset_graph():
    with pytest.MonkeyPatch.context() as patch:
        for name in ("CSSCI_WAREHOUSE", "CSSCI_MANIFEST", "CSSCI_IMAGE_STORE", "CSSCI_MLFLOW_URI"):
            patch.setenv(name, f"/nonexistent/{name.lower()}")
        yield defs().resolve_asset_graph()


def _group(graph, key: dg.AssetKey) -> str:
    return graph.get(key).group_name


def test_the_outcome_assets_have_their_own_group(asset_graph) -> None:
    groups = {key.to_user_string(): _group(asset_graph, key) for key in asset_graph.get_all_asset_keys()}
    assert groups["followup_outcomes"] == groups["study_outcome"] == "outcomes"
    assert {name for name, group in groups.items() if group == "outcomes"} == {"followup_outcomes", "study_outcome"}


def _group_parents(asset_graph) -> dict[str, set[str]]:
    """group -> the other groups it reads from."""
    parents: dict[str, set[str]] = {}
    for key in asset_graph.get_all_asset_keys():
        group = _group(asset_graph, key)
        upstream = {_group(asset_graph, parent) for parent in asset_graph.get(key).parent_keys}
        parents.setdefault(group, set()).update(upstream - {group})
    return parents


def _downstream(parents: dict[str, set[str]], group: str) -> set[str]:
    """Every group reading from `group`, directly or through others."""
    found, frontier = set(), {group}
    while frontier:
        frontier = {child for child, ups in parents.items() if ups & frontier} - found
        found |= frontier
    return found


def test_outcomes_and_prospective_read_in_one_direction(asset_graph) -> None:
    """outcomes -> modeling -> prospective, never back (it read prospective -> modeling -> prospective)."""
    parents = _group_parents(asset_graph)
    assert "outcomes" not in _downstream(parents, "outcomes")
    assert "prospective" not in _downstream(parents, "prospective")
    assert "modeling" in _downstream(parents, "outcomes") and "prospective" in _downstream(parents, "modeling")
    assert not _downstream(parents, "prospective") & {"outcomes", "modeling", "ingest", "features", "deep"}


def test_the_groups_read_in_one_direction(asset_graph) -> None:
    """Between groups the graph is acyclic: no group is both upstream and downstream of another."""
    try:
        order = list(TopologicalSorter(_group_parents(asset_graph)).static_order())
    except CycleError as error:
        pytest.fail(f"groups depend on each other in a cycle: {error.args[1]}")
    assert order.index("outcomes") < order.index("splits") < order.index("deep") < order.index("modeling") \
        < order.index("prospective")


# --- the QC montage on roi_slices ----------------------------------------------------------------------------------

def test_roi_slices_shows_the_patients_qc_montage_and_writes_it_to_the_image_store(platform: Platform) -> None:
    [key, *_] = platform.register()
    assert platform.materialize_manifest().success
    result = dg.materialize([cohort_manifest, patient_scans, preprocessed_channels, roi_slices],
                            selection=[patient_scans.key, preprocessed_channels.key, roi_slices.key], partition_key=key,
                            instance=platform.instance, resources=platform.resources)
    metadata = _metadata(platform.instance, roi_slices.key, key)
    markdown = metadata["qc_montage"].value
    assert markdown.startswith(f"![QC montage {key}](data:image/png;base64,")
    png = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
    assert 5_000 < len(png) < 150_000  # small enough for the UI to render inline
    written = Path(platform.resources["image_store"].root) / MONTAGE_FOLDER / f"{key}.png"
    assert written.read_bytes() == png and metadata["qc_montage_file"].value == str(written)
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    for colour in (ROI_COLOURS["lesion"], ROI_COLOURS["cord"], DL_BOX_COLOUR):  # every contour is drawn
        assert np.all(image == colour, axis=-1).sum() > 20, colour
    assert result.success


def _montage(platform: Platform, key: str) -> np.ndarray:
    """Materialize the patient through roi_slices and decode the montage its metadata shows."""
    assert dg.materialize([cohort_manifest, patient_scans, preprocessed_channels, roi_slices],
                          selection=[patient_scans.key, preprocessed_channels.key, roi_slices.key], partition_key=key,
                          instance=platform.instance, resources=platform.with_overrides(ONE_CHANNEL)).success
    markdown = _metadata(platform.instance, roi_slices.key, key)["qc_montage"].value
    png = base64.b64decode(markdown.split("base64,", 1)[1].rstrip(")"))
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_a_lesion_mask_drawn_in_the_wrong_place_shows_in_the_montage(platform: Platform) -> None:
    """A segmentation exported 8 voxels off (the pipeline accepts it: a plausible mask) moves the lesion contour on
    the patient's montage in the UI, by the shift, and the DL rectangle with it."""
    [key, *_] = platform.register()
    assert platform.materialize_manifest().success
    right = _montage(platform, key)
    cohort = load_cohort(platform.manifest)
    [mask] = [m for m in cohort.patients[key].masks
              if (m.sequence, m.roi, m.segmentation) == ("sag_T2", "lesion", "primary")]
    path = cohort.resolve(mask.path)
    image = sitk.ReadImage(str(path))
    shifted = sitk.GetImageFromArray(np.roll(sitk.GetArrayFromImage(image), 8, axis=1))  # 8 voxels along y
    shifted.CopyInformation(image)
    sitk.WriteImage(shifted, str(path))
    wrong = _montage(platform, key)
    red, yellow = ROI_COLOURS["lesion"], DL_BOX_COLOUR
    assert right.shape == wrong.shape
    for colour in (red, yellow):
        before, after = np.all(right == colour, axis=-1), np.all(wrong == colour, axis=-1)
        assert before.any() and after.any() and not np.array_equal(before, after), colour
    sag_t1_rows = slice(0, right.shape[0] // 2)  # the sag_T1 row (its own mask) is unchanged
    assert np.array_equal(np.all(right[sag_t1_rows] == red, axis=-1), np.all(wrong[sag_t1_rows] == red, axis=-1))


def _metadata(instance: dg.DagsterInstance, asset_key: dg.AssetKey, partition: str | None = None) -> dict:
    event = instance.get_latest_materialization_event(asset_key) if partition is None else \
        next(e for e in instance.fetch_materializations(asset_key, limit=50).records
             if e.asset_materialization and e.asset_materialization.partition == partition).event_log_entry
    assert event is not None and event.asset_materialization is not None
    return event.asset_materialization.metadata


# --- prospective monitoring: the asset check on validation_metrics --------------------------------------------------

OUTCOME = "good_outcome"
TEST_LABELS = [0, 1] * 10  # the champion's 20 held-out test patients
PROSPECTIVE_LABELS = [0, 1] * 5  # 10 prospective patients whose outcome arrived


def _registered_champion(tracking: TrackingResource) -> tuple[str, str, str]:
    """A real MLflow run with a fitted LR, registered as a champion: (registered model, version, run id)."""
    X = pd.DataFrame({"f": np.linspace(0, 1, 20)})
    y = np.array(TEST_LABELS)
    model = Pipeline([("model", LogisticRegression())]).fit(X, y)
    config = tracking.config("test")
    run = log_model_run(config, run_name="Rad_LR", model=model, input_example=X.head(4))
    name = registered_model_name("test", "Rad", "leakage_safe")
    version = register_champion(config, name, run_id=run.run_id, model_uri=run.model_uri)
    return name, str(version.version), run.run_id


def _seed_champion(warehouse: Path, model: str, version: str, run_id: str) -> None:
    """The champion's training rows: split, trained_models and its test predictions (well separated: a test AUC
    interval with a high lower bound)."""
    now = datetime.now()
    test_keys = [f"T{i:02d}" for i in range(len(TEST_LABELS))]
    with connect(warehouse) as con:
        replace_rows(con, "splits", {"split": "holdout"}, [
            {"split": "holdout", "fold": "holdout", "patient_key": k, "role": "test", "outcome": OUTCOME, "seed": 1,
             "created_at": now} for k in test_keys])
        replace_rows(con, "trained_models", {"signature": "Rad"}, [
            {"result_name": "Rad_LR", "signature": "Rad", "classifier": "LR", "mode": "leakage_safe", "run_id": run_id,
             "registered_model": model, "model_version": version, "champion": True, "threshold": 0.5,
             "split": "holdout", "fold": "holdout", "created_at": now}])
        replace_rows(con, "predictions", {"model_name": run_id}, [
            {"patient_key": k, "role": "test", "signature": "Rad", "class_label": "1", "model_name": run_id,
             "probability": 0.2 + 0.6 * label + 0.01 * (i % 5), "label": str(label), "created_at": now}
            for i, (k, label) in enumerate(zip(test_keys, TEST_LABELS))])
        _outcomes(con, dict(zip(test_keys, TEST_LABELS)))


def _outcomes(con, labels: dict[str, int]) -> None:
    for key, label in labels.items():
        replace_rows(con, "outcomes", {"patient_key": key, "outcome": OUTCOME},
                     [{"patient_key": key, "outcome": OUTCOME, "value": str(label)}])


def _score_prospective(warehouse: Path, model: str, version: str, run_id: str, agrees: bool) -> None:
    """Prospective scores of validation-cohort patients that rank the arrived outcomes as well as on the test set
    (`agrees`), or backwards."""
    keys = [f"V{i:02d}" for i in range(len(PROSPECTIVE_LABELS))]
    with connect(warehouse) as con:
        for i, (key, label) in enumerate(zip(keys, PROSPECTIVE_LABELS)):
            replace_rows(con, "patients", {"patient_key": key},
                         [{"patient_key": key, "center": "center_A", "cohort": "prospective"}])
            risk = label if agrees else 1 - label
            replace_rows(con, "prospective_predictions", {"patient_key": key}, [
                {"patient_key": key, "center": "center_A", "signature": "Rad", "class_label": "1",
                 "probability": 0.2 + 0.6 * risk + 0.01 * i, "registered_model": model, "model_version": version,
                 "run_id": run_id, "predicted_at": datetime.now()}])
        _outcomes(con, dict(zip(keys, PROSPECTIVE_LABELS)))


def test_the_monitoring_check_warns_when_a_champion_falls_below_its_test_interval(platform: Platform,
                                                                                   tmp_path: Path) -> None:
    tracking = TrackingResource(tracking_uri=sqlite_tracking_uri(tmp_path / "mlflow.db"))
    resources = {**platform.resources, "tracking": tracking}
    model, version, run_id = _registered_champion(tracking)
    _seed_champion(platform.warehouse_path, model, version, run_id)

    def validate() -> dg.AssetCheckEvaluation:
        result = dg.materialize([validation_metrics, champions_within_test_interval], instance=platform.instance,
                                resources=resources)
        assert result.success
        [evaluation] = result.get_asset_check_evaluations()
        assert evaluation.asset_key == validation_metrics.key
        return evaluation

    _score_prospective(platform.warehouse_path, model, version, run_id, agrees=True)
    holding = validate()
    assert holding.passed and holding.metadata["below_test_interval"].value == 0
    assert holding.metadata["champions_validated"].value == 1

    _score_prospective(platform.warehouse_path, model, version, run_id, agrees=False)  # the model ranks backwards now
    drifted = validate()
    assert not drifted.passed and drifted.severity == dg.AssetCheckSeverity.WARN
    assert drifted.metadata["below_test_interval"].value == 1
    assert f"Rad ({model} v{version}): validation AUC 0.000 on 10 patients" in (drifted.description or "")
    assert "BELOW" in drifted.metadata["validations"].value
    flags = platform.query("SELECT below_test_ci FROM validation_metrics WHERE metric = 'auc' ORDER BY computed_at")
    assert flags["below_test_ci"].to_list() == [False, True]  # the check reads the latest rows, not any


def test_the_monitoring_check_runs_with_the_validation_job_and_has_an_automation_condition(asset_graph) -> None:
    [check] = [k for k in asset_graph.asset_check_keys if k.name == "champions_within_test_interval"]
    assert check.asset_key == dg.AssetKey("validation_metrics")
    spec = asset_graph.get_check_spec(check)
    assert not spec.blocking and spec.automation_condition is not None
    job = defs().resolve_job_def("validation_job")  # the weekly schedule's job runs the check after the asset
    assert "validation_metrics_champions_within_test_interval" in job.graph.node_names()


# --- the cohort overview on cohort_manifest -------------------------------------------------------------------------

def _section(markdown: str, title: str) -> str:
    """The markdown of one overview section (its title line to the next title)."""
    start = markdown.index(f"**{title}")
    end = markdown.find("\n**", start + 2)
    return markdown[start:end if end > 0 else None]


def test_cohort_manifest_shows_the_cohort_overview(platform: Platform) -> None:
    keys = platform.register()
    assert platform.materialize_manifest().success
    assert platform.materialize_patient(keys[0], ONE_CHANNEL).success
    three_days_ago = datetime.now() - timedelta(days=3, hours=2)
    with connect(platform.warehouse_path) as con:
        append_rows(con, "inbox_events", [
            {"source": "arrival", "patient_key": "NEW-0001", "status": "incomplete", "reason": "no READY marker",
             "digest": "", "seen_at": datetime.now()},
            {"source": "arrival", "patient_key": keys[1], "status": "admitted", "reason": None, "digest": "d",
             "seen_at": datetime.now()}])  # admitted: in the cohort, not waiting
        append_rows(con, "trained_models", [
            {"result_name": "Rad_LR", "signature": "Rad", "classifier": "LR", "mode": "leakage_safe", "run_id": "r1",
             "registered_model": "cssci.test.Rad.leakage_safe", "model_version": "2", "champion": True,
             "created_at": three_days_ago}])
    assert platform.materialize_manifest().success
    overview = _metadata(platform.instance, cohort_manifest.key)["overview"].value
    cohort = load_cohort(platform.manifest)
    patients = _section(overview, "Patients by center")
    first = cohort.patients[keys[0]]
    assert f"| {first.center} | {first.cohort} | ok | radiomics | 1 |" in patients
    registered = sum(1 for p in cohort.patients.values() if p.patient_key != keys[0])
    assert sum(int(line.rsplit("|", 2)[1]) for line in patients.splitlines() if "| registered |" in line) == registered
    waiting = _section(overview, "Inbox arrivals waiting")
    assert "| incomplete | 1 | NEW-0001 (no READY marker) |" in waiting and keys[1] not in waiting
    outcome = next(iter(cohort.spec.outcomes))
    known = sum(p.patient_key in cohort.patients and p.cohort == "development" for p in cohort.patients.values())
    assert f"| {outcome} | development | {known} | {known} |" in _section(overview, "Outcomes known")
    champions = _section(overview, "Champions")
    assert "| Rad | cssci.test.Rad.leakage_safe | 2 |" in champions and "| 3 d 2 h | not validated yet |" in champions
