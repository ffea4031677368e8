"""Deep features through Dagster: ROI slices per patient, embeddings per center, fine-tuning on a stored split."""

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from cssci_platform.defs.embeddings.assets import center_embeddings, fine_tuned_backbones, roi_slices
from cssci_platform.defs.embeddings.checks import center_patients_embedded, roi_slice_found
from cssci_platform.defs.features.assets import preprocessed_channels
from cssci_platform.defs.features.checks import roi_survives_resampling
from cssci_platform.defs.ingest.assets import cohort_manifest, patient_scans
from cssci_platform.defs.ingest.checks import patient_qc
from cssci_platform.defs.partitions import centers_partitions, patients_partitions
from cssci_platform.defs.splits.assets import patient_splits
from cssci_platform.lib.cohort import load_cohort
from cssci_platform.lib.synthetic import write_sci_cohort
from cssci_platform.lib.warehouse import connect, table_frame
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.study import StudyResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.study_files import study_resource

CHANNELS = ["original", "gaussian"]
SLICE_ASSETS = [patient_scans, preprocessed_channels, roi_slices]
ALL = [cohort_manifest, *SLICE_ASSETS, patient_splits, fine_tuned_backbones, center_embeddings,
       patient_qc, roi_survives_resampling, roi_slice_found, center_patients_embedded]
# the study every run of these tests reads: two channels, small slices, random-init networks, a short fine-tuning
STUDY = {"preprocessing": {"channels": CHANNELS},
         "deep": {"backbones": ["resnet18"], "weights": "none", "channels": CHANNELS, "slice": {"output_size": 32},
                  "fine_tuning": {"backbones": ["resnet18"], "channels": ["original"], "epochs": 2, "batch_size": 4,
                                  "augment": False}},
         "split": {"preset": "holdout_7_3", "seed": 1}}


class DeepPlatform:
    def __init__(self, folder: Path, instance: dg.DagsterInstance) -> None:
        self.warehouse = folder / "warehouse.duckdb"
        self.store = folder / "store"
        self.cohort = load_cohort(folder / "cohort" / "cohort.yaml")
        self.instance = instance
        self.resources = {"cohort": CohortResource(manifest_path=str(self.cohort.manifest_path)),
                          "warehouse": WarehouseResource(path=str(self.warehouse)),
                          "image_store": ImageStoreResource(root=str(self.store)),
                          "study": study_resource(folder / "study", self.cohort.manifest_path, STUDY)}
        instance.add_dynamic_partitions(patients_partitions.name, sorted(self.cohort.patients))
        centers = sorted({p.center for p in self.cohort.patients.values()})
        instance.add_dynamic_partitions(centers_partitions.name, centers)

    def run(self, selection: list, partition_key: str | None = None,
            overrides: list[str] | None = None) -> dg.ExecuteInProcessResult:
        """`overrides`: study settings for this run only (the launchpad's `resources.study.config.overrides`)."""
        study = self.resources["study"]
        resources = {**self.resources, "study": StudyResource(path=study.path, overrides=overrides or [])}
        return dg.materialize(ALL, selection=[a.key for a in selection], partition_key=partition_key,
                              instance=self.instance, resources=resources, raise_on_error=False)

    def query(self, sql: str, parameters: list | None = None) -> pl.DataFrame:
        return table_frame(self.warehouse, sql, parameters)

    def patients_of(self, center: str) -> list[str]:
        return sorted(k for k, p in self.cohort.patients.items() if p.center == center)


@pytest.fixture(scope="module")
def cohort_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("deep_cohort")
    write_sci_cohort(folder, n_development=12, n_prospective=2, seed=5)
    return folder


@pytest.fixture
def deep(cohort_template: Path, tmp_path: Path) -> Iterator[DeepPlatform]:
    import shutil

    shutil.copytree(cohort_template, tmp_path / "cohort")
    with dg.instance_for_test() as instance:
        platform = DeepPlatform(tmp_path, instance)
        assert platform.run([cohort_manifest]).success
        yield platform


def _slice_all(deep: DeepPlatform, keys: list[str]) -> None:
    for key in keys:
        assert deep.run(SLICE_ASSETS, key).success, key


def test_a_center_partition_embeds_each_patient_and_channel(deep: DeepPlatform) -> None:
    center = "center_A"
    keys = deep.patients_of(center)
    _slice_all(deep, keys)
    slices = deep.query("SELECT * FROM roi_slices")
    assert slices.height == len(keys) * len(CHANNELS)
    # one slice for all channels
    assert slices.group_by("patient_key").agg(pl.col("slice_index").n_unique())["slice_index"].max() == 1

    result = deep.run([center_embeddings], center)
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    rows = deep.query("SELECT * FROM embeddings")
    assert sorted(set(rows["patient_key"])) == keys and set(rows["center"]) == {center}
    assert rows.height == len(keys) * len(CHANNELS)
    assert set(rows["embedding"].list.len()) == {512} and set(rows["weights_id"]) == {"none"}
    again = deep.run([center_embeddings], center)  # deterministic and replacing, not appending
    embedded_again = deep.query("SELECT * FROM embeddings").sort("patient_key", "channel")["embedding"].to_list()
    assert again.success and embedded_again == rows.sort("patient_key", "channel")["embedding"].to_list()


def test_a_patient_whose_channel_file_vanished_is_quarantined_and_the_center_proceeds(deep: DeepPlatform) -> None:
    keys = deep.patients_of("center_A")
    broken, healthy = keys[0], keys[1:]
    for key in keys:
        assert deep.run([patient_scans, preprocessed_channels], key).success
    Path(deep.query("SELECT image_path FROM preprocessed_channels WHERE patient_key = ? AND channel = 'gaussian' "
                    "AND sequence = 'sag_T2'", [broken])["image_path"][0]).unlink()
    results = {key: deep.run([roi_slices], key) for key in keys}
    failed = {e.check_name: e.passed for e in results[broken].get_asset_check_evaluations()}
    assert failed == {"roi_slice_found": False}
    issue = deep.query("SELECT * FROM qc_issues WHERE patient_key = ? AND stage = 'roi_slices'", [broken])
    assert issue.height == 1 and "gaussian" in issue["message"][0] and "re-materialize" in issue["fix"][0]
    assert all(all(e.passed for e in results[k].get_asset_check_evaluations()) for k in healthy)

    assert deep.run([center_embeddings], "center_A").success
    embedded = set(deep.query("SELECT DISTINCT patient_key FROM embeddings")["patient_key"])
    assert embedded == set(healthy)


def test_missing_imagenet_weights_fail_the_run_with_the_fix(deep: DeepPlatform, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    keys = deep.patients_of("center_B")
    _slice_all(deep, keys[:1])
    result = deep.run([center_embeddings], "center_B", ["deep.weights=imagenet"])
    assert not result.success
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    message = failure.event_specific_data.error.message
    assert "resnet18-f37072fd.pth" in message and "none" in message
    assert deep.query("SELECT count(*) AS n FROM embeddings")["n"][0] == 0


def test_fine_tuning_sees_training_labels_only(deep: DeepPlatform) -> None:
    _slice_all(deep, sorted(deep.cohort.patients))
    assert deep.run([patient_splits, fine_tuned_backbones]).success
    network = deep.query("SELECT * FROM networks")
    assert network.height == 1 and network["channel"][0] == "original"
    assert network["weights_id"][0].startswith("finetuned:")
    predictions = deep.query("SELECT * FROM predictions WHERE signature = 'CNN'")
    assert set(predictions["role"]) == {"train", "test", "validation"}
    assert predictions["patient_key"].n_unique() == len(deep.cohort.patients)
    sums = predictions.group_by("patient_key").agg(pl.col("probability").sum())["probability"]
    assert ((sums - 1).abs() < 1e-5).all()
    assert len(list((deep.store / "gradcam" / network["network_id"][0]).glob("*.png"))) == len(deep.cohort.patients)

    # Flip every non-training label: the fine-tuned weights must not change.
    with connect(deep.warehouse) as con:
        con.execute("UPDATE outcomes SET value = CASE value WHEN '1' THEN '0' ELSE '1' END WHERE patient_key IN "
                    "(SELECT patient_key FROM splits WHERE role <> 'train')")
    assert deep.run([fine_tuned_backbones]).success
    assert deep.query("SELECT weights_id FROM networks")["weights_id"][0] == network["weights_id"][0]

    fine_tuned = ["deep.embedding_network=fine_tuned", "deep.channels=[original]"]
    assert deep.run([center_embeddings], "center_A", fine_tuned).success
    rows = deep.query("SELECT * FROM embeddings")
    assert set(rows["network"]) == {"fine_tuned"} and set(rows["channel"]) == {"original"}
    assert set(rows["weights_id"]) == {network["weights_id"][0]}
