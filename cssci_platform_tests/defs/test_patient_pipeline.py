import gzip
import math

import dagster as dg
import SimpleITK as sitk

from cssci_platform.resources import cohort as cohort_resource
from cssci_platform_tests.defs.conftest import Platform, check_results

TWO_CHANNELS = ["preprocessing.channels=[original, gaussian]", "deep.channels=[original, gaussian]"]


def test_cohort_manifest_writes_tidy_tables(platform: Platform) -> None:
    result = platform.materialize_manifest()
    assert result.success
    patients = platform.query("SELECT * FROM patients ORDER BY patient_key")
    assert patients.height == 5
    assert set(patients["cohort"]) == {"development", "prospective"}
    clinical = platform.query("SELECT * FROM clinical WHERE variable = 'age'")
    assert clinical.height == 5 and clinical["value_number"].is_not_null().all()
    outcomes = platform.query("SELECT o.value, p.cohort FROM outcomes o JOIN patients p USING (patient_key)")
    assert outcomes.filter(outcomes["cohort"] == "prospective")["value"].is_null().all()
    assert outcomes.filter(outcomes["cohort"] == "development")["value"].is_in(["0", "1"]).all()


def test_clean_patient_gets_scans_channels_and_finite_features(platform: Platform) -> None:
    platform.materialize_manifest()
    key = platform.register()[0]
    result = platform.materialize_patient(key, [*TWO_CHANNELS, "imaging.radiomics_rois=[lesion, cord]"])
    assert result.success
    assert check_results(result) == {"patient_qc": True, "roi_survives_resampling": True, "features_finite": True}
    materializations = [e.event_specific_data.materialization for e in result.get_asset_materialization_events()]
    materialized = {(m.asset_key.to_user_string(), m.partition) for m in materializations}
    assert materialized == {("patient_scans", key), ("preprocessed_channels", key), ("radiomics_features", key)}
    scans = platform.query("SELECT * FROM scans WHERE patient_key = ?", [key])
    assert set(scans["kind"]) == {"image", "mask"} and scans["sha256"].str.len_chars().min() == 64
    channels = platform.query("SELECT * FROM preprocessed_channels WHERE patient_key = ?", [key])
    assert sorted(set(channels["channel"])) == ["gaussian", "original"]
    image = sitk.ReadImage(channels["image_path"][0])
    assert image.GetSpacing() == (1.0, 1.0, 1.0)
    array = sitk.GetArrayViewFromImage(image)
    assert array.min() >= 0.0 and array.max() <= 1.0
    features = platform.query("SELECT * FROM radiomics_features WHERE patient_key = ?", [key])
    assert features.height > 0 and all(math.isfinite(v) for v in features["value"])
    assert set(features["channel"]) == {"original", "gaussian"}
    assert set(features["roi"]) == {"lesion", "cord"}
    assert features["params_hash"].n_unique() == 1 and features["extractor_version"][0].startswith("pyradiomics")
    wide = platform.query("SELECT * FROM radiomics_wide WHERE patient_key = ?", [key])
    assert wide.height == 1 and "sag_T2__lesion__original__original_shape_VoxelVolume" in wide.columns


def test_corrupt_file_quarantines_only_that_patient_and_fix_clears_it(platform: Platform) -> None:
    platform.materialize_manifest()
    bad, good = platform.register()[:2]
    image_path = platform.manifest.parent / "images" / bad / "sag_T2.nii.gz"
    original_bytes = image_path.read_bytes()
    image_path.write_bytes(gzip.compress(b"not a nifti at all")[:20])

    failed = platform.materialize_patient(bad, TWO_CHANNELS)
    assert check_results(failed) == {"patient_qc": False}
    assert not failed.success  # blocking check failed: downstream steps did not run
    issues = platform.query("SELECT * FROM qc_issues WHERE patient_key = ?", [bad])
    assert issues["code"].to_list() == ["unreadable_file"]
    assert f"images/{bad}/sag_T2.nii.gz" in issues["message"][0]
    assert platform.query("SELECT * FROM radiomics_features WHERE patient_key = ?", [bad]).height == 0

    assert platform.materialize_patient(good, TWO_CHANNELS).success
    assert platform.query("SELECT count(*) AS n FROM radiomics_features WHERE patient_key = ?", [good])["n"][0] > 0
    status = dict(platform.query("SELECT patient_key, status FROM patient_status").iter_rows())
    assert status[bad] == "quarantined" and status[good] == "features"

    image_path.write_bytes(original_bytes)
    fixed = platform.materialize_patient(bad, TWO_CHANNELS)
    assert fixed.success and all(check_results(fixed).values())
    assert platform.query("SELECT * FROM qc_issues WHERE patient_key = ?", [bad]).height == 0


def test_mask_geometry_mismatch_is_a_failed_blocking_check(platform: Platform) -> None:
    platform.materialize_manifest()
    key = platform.register()[0]
    mask_path = platform.manifest.parent / "images" / key / "sag_T2_lesion.nii.gz"
    mask = sitk.ReadImage(str(mask_path))
    mask.SetOrigin(tuple(o + 5.0 for o in mask.GetOrigin()))
    sitk.WriteImage(mask, str(mask_path))
    result = platform.materialize_patient(key)
    assert check_results(result) == {"patient_qc": False}
    evaluation = result.get_asset_check_evaluations()[0]
    assert evaluation.severity == dg.AssetCheckSeverity.ERROR
    assert evaluation.partition == key  # the failed check sits on that patient's partition
    assert "origin differs" in evaluation.metadata["issues"].value
    codes = platform.query("SELECT code FROM qc_issues WHERE patient_key = ?", [key])["code"].to_list()
    assert codes == ["geometry_mismatch"]


def test_downstream_asset_alone_refuses_a_quarantined_patient(platform: Platform) -> None:
    platform.materialize_manifest()
    key = platform.register()[0]
    (platform.manifest.parent / "images" / key / "sag_T1.nii.gz").unlink()
    assert not platform.materialize_patient(key).success
    from cssci_platform_tests.defs.conftest import PATIENT_ASSETS, PATIENT_CHECKS

    alone = dg.materialize([*PATIENT_ASSETS, *PATIENT_CHECKS], selection=["preprocessed_channels"], partition_key=key,
                           instance=platform.instance, resources=platform.resources, raise_on_error=False)
    assert not alone.success
    failure = next(e for e in alone.all_events if e.event_type_value == "STEP_FAILURE")
    assert "quarantined" in failure.message or "quarantined" in str(failure.event_specific_data.error)


def test_preprocessing_rerun_reuses_cached_files(platform: Platform) -> None:
    platform.materialize_manifest()
    key = platform.register()[0]
    first = platform.materialize_patient(key, TWO_CHANNELS)
    second = platform.materialize_patient(key, TWO_CHANNELS)
    metadata = [
        next(e.event_specific_data.materialization.metadata for e in run.get_asset_materialization_events()
             if e.asset_key.to_user_string() == "preprocessed_channels")
        for run in (first, second)
    ]
    assert metadata[0]["computed_files"].value > 0
    assert metadata[1]["computed_files"].value == 0


def test_the_manifest_is_read_once_per_run_not_once_per_asset(platform: Platform, monkeypatch) -> None:
    platform.materialize_manifest()
    key = platform.register()[0]
    loads = []
    real_load = cohort_resource.load_cohort
    monkeypatch.setattr(cohort_resource, "load_cohort", lambda path: loads.append(path) or real_load(path))
    platform.manifest.write_text(platform.manifest.read_text() + "\n# edited\n")  # the manifest changed: read again
    assert platform.materialize_patient(key, TWO_CHANNELS).success
    assert len(loads) == 1, f"patient_scans and preprocessed_channels each read the manifest: {len(loads)} loads"
    assert platform.materialize_patient(key, TWO_CHANNELS).success
    assert len(loads) == 1  # unchanged since: not read again
