"""Features computed once per cohort and shared by every experiment on it (issue 18, reuse across experiments): two
studies in two homes (own warehouse, image store and Dagster instance) on one cohort; the second extracts nothing and
gets the first's rows; a changed radiomics setting or image computes anew."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import numpy as np
import pytest
import SimpleITK as sitk
import yaml

from cssci_platform.lib.feature_store import BESIDE_MANIFEST, FEATURE_STORE_ENV
from cssci_platform.lib.radiomics import PROFILE_DIR
from cssci_platform.resources.cohort import CohortResource
from cssci_platform.resources.image_store import ImageStoreResource
from cssci_platform.resources.warehouse import WarehouseResource
from cssci_platform_tests.defs.conftest import Platform
from cssci_platform_tests.study_files import study_resource

ONE_CHANNEL = ["preprocessing.channels=[original, mean]", "deep.channels=[original]"]
ROWS = "SELECT * EXCLUDE (value), value FROM radiomics_features WHERE patient_key = ? ORDER BY ALL"


@pytest.fixture
def cohort(synthetic_cohort_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(FEATURE_STORE_ENV, raising=False)  # the default: beside the manifest
    shutil.copytree(synthetic_cohort_template, tmp_path / "cohort")
    return tmp_path / "cohort" / "cohort.yaml"


def _home(manifest: Path, home: Path, study: str, instance: dg.DagsterInstance) -> Platform:
    resources = {"cohort": CohortResource(manifest_path=str(manifest)),
                 "warehouse": WarehouseResource(path=str(home / "warehouse.duckdb")),
                 "image_store": ImageStoreResource(root=str(home / "image_store")),
                 "study": study_resource(home, manifest, name=study)}
    return Platform(manifest, home / "warehouse.duckdb", instance, resources)


@pytest.fixture
def two_homes(cohort: Path, tmp_path: Path) -> Iterator[tuple[Platform, Platform]]:
    with dg.instance_for_test() as first, dg.instance_for_test() as second:
        homes = (_home(cohort, tmp_path / "home_a", "first_outcome", first),
                 _home(cohort, tmp_path / "home_b", "second_outcome", second))
        for home in homes:
            assert home.materialize_manifest().success
        yield homes


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.to_user_string() == asset]
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def test_the_second_experiment_on_a_cohort_reuses_the_firsts_features(two_homes: tuple[Platform, Platform]) -> None:
    first, second = two_homes
    key = first.register()[0]
    second.register()
    computed = first.materialize_patient(key, ONE_CHANNEL)
    assert computed.success
    radiomics = _metadata(computed, "radiomics_features")
    assert radiomics["computed_extractions"] == radiomics["extractions"] > 0 and radiomics["features"] == "computed"
    assert _metadata(computed, "preprocessed_channels")["features"] == "computed"

    store = first.manifest.parent / BESIDE_MANIFEST
    written = {path: path.stat().st_mtime_ns for path in store.rglob("*") if path.is_file()}
    reused = second.materialize_patient(key, ONE_CHANNEL)
    assert reused.success
    # nothing extracted or preprocessed again: no store file written or rewritten (any computed case is saved)
    assert {path: path.stat().st_mtime_ns for path in store.rglob("*") if path.is_file()} == written
    radiomics = _metadata(reused, "radiomics_features")
    assert (radiomics["computed_extractions"], radiomics["reused_extractions"]) == (0, radiomics["extractions"])
    channels = _metadata(reused, "preprocessed_channels")
    assert (channels["computed_files"], channels["features"]) == (0, "reused")
    assert second.query(ROWS, [key]).equals(first.query(ROWS, [key]))
    assert second.query(ROWS, [key]).height > 0
    assert Path(radiomics["feature_store"]).is_relative_to(first.manifest.parent / BESIDE_MANIFEST)
    # the second home keeps no copy of the voxel data: its channels are the store's files
    assert set(second.query("SELECT image_path FROM preprocessed_channels")["image_path"]) == \
        set(first.query("SELECT image_path FROM preprocessed_channels")["image_path"])


def test_a_changed_radiomics_setting_computes_anew(two_homes: tuple[Platform, Platform], tmp_path: Path) -> None:
    first, second = two_homes
    key = first.register()[0]
    second.register()
    assert first.materialize_patient(key, ONE_CHANNEL).success
    params = yaml.safe_load((PROFILE_DIR / "default.yaml").read_text())
    params["setting"]["binWidth"] = 0.05
    coarser = tmp_path / "coarser.yaml"
    coarser.write_text(yaml.safe_dump(params), encoding="utf-8")
    changed = second.materialize_patient(key, [*ONE_CHANNEL, f"radiomics.params={coarser}"])
    assert changed.success
    radiomics = _metadata(changed, "radiomics_features")
    assert radiomics["computed_extractions"] == radiomics["extractions"] > 0
    assert _metadata(changed, "preprocessed_channels")["features"] == "reused"  # preprocessing did not change
    texture = "SELECT value FROM radiomics_features WHERE patient_key = ? AND feature = 'original_glcm_Contrast'"
    assert not second.query(texture, [key]).equals(first.query(texture, [key]))


def test_one_changed_voxel_computes_anew(two_homes: tuple[Platform, Platform]) -> None:
    first, second = two_homes
    key = first.register()[0]
    second.register()
    assert first.materialize_patient(key, ONE_CHANNEL).success
    image_path = first.manifest.parent / "images" / key / "sag_T2.nii.gz"
    image = sitk.ReadImage(str(image_path))
    array = sitk.GetArrayFromImage(image)
    array[tuple(np.array(array.shape) // 2)] += 1
    changed = sitk.GetImageFromArray(array)
    changed.CopyInformation(image)
    sitk.WriteImage(changed, str(image_path))
    again = second.materialize_patient(key, ONE_CHANNEL)
    assert again.success
    channels = _metadata(again, "preprocessed_channels")
    assert channels["computed_files"] > 0 and channels["features"] != "reused"
    radiomics = _metadata(again, "radiomics_features")
    assert 0 < radiomics["computed_extractions"] < radiomics["extractions"]  # sag_T2's, not sag_T1's
    assert radiomics["reused_extractions"] == radiomics["extractions"] - radiomics["computed_extractions"]


def test_a_corrupted_stored_radiomics_entry_is_recomputed(two_homes: tuple[Platform, Platform]) -> None:
    first, second = two_homes
    key = first.register()[0]
    second.register()
    computed = first.materialize_patient(key, ONE_CHANNEL)
    store = Path(_metadata(computed, "radiomics_features")["feature_store"]) / "radiomics"
    [damaged, *_] = sorted(store.rglob("*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:-30])
    again = second.materialize_patient(key, ONE_CHANNEL)
    radiomics = _metadata(again, "radiomics_features")
    assert (radiomics["computed_extractions"], radiomics["reused_extractions"]) == (1, radiomics["extractions"] - 1)
    assert second.query(ROWS, [key]).equals(first.query(ROWS, [key]))
