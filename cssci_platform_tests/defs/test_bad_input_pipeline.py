"""Bad input through real materializations (issue 17): links leaving data_root, NaN masks, huge cells, DICOM PHI."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk

from cssci_platform_tests.defs.conftest import Platform
from cssci_platform_tests.lib.test_imaging import write_dicom_series

ONE_CHANNEL = ["preprocessing.channels=[original]", "deep.channels=[original]"]
PHI_TAGS = {"0010|0010": "Doe^Jane", "0010|0030": "19470312", "0010|0020": "MRN-99887766"}


def replace_in_table(platform: Platform, old: str, new: str) -> None:
    table = platform.manifest.parent / "patients.csv"
    text = table.read_text(encoding="utf-8")
    assert old in text
    table.write_text(text.replace(old, new), encoding="utf-8")


def warehouse_text(platform: Platform) -> str:
    """Every row of every warehouse table, as text."""
    tables = platform.query("SELECT table_name FROM information_schema.tables")["table_name"].to_list()
    return "\n".join(f"{t}: {platform.query(f'SELECT * FROM {t}').rows()}" for t in tables)


def run_log_text(platform: Platform, result) -> str:
    return "\n".join(str(entry) for entry in platform.instance.all_logs(result.run_id))


def radiomics_rows(platform: Platform, key: str) -> int:
    tables = platform.query("SELECT table_name FROM information_schema.tables")["table_name"].to_list()
    if "radiomics_features" not in tables:
        return 0
    return platform.query("SELECT count(*) AS n FROM radiomics_features WHERE patient_key = ?", [key])["n"][0]


def test_no_phi_from_dicom_headers_reaches_the_warehouse_the_run_log_or_the_console(platform: Platform, capfd) -> None:
    key = platform.register()[0]
    images = platform.manifest.parent / "images" / key
    image = sitk.Cast(sitk.ReadImage(str(images / "sag_T2.nii.gz")), sitk.sitkInt16)
    write_dicom_series(images / "sag_T2_dicom", image, series_number=1, extra_tags=PHI_TAGS)
    assert all(b"Doe^Jane" in f.read_bytes() for f in (images / "sag_T2_dicom").iterdir())  # the PHI is really there
    replace_in_table(platform, f"images/{key}/sag_T2.nii.gz", f"images/{key}/sag_T2_dicom")
    assert platform.materialize_manifest().success
    result = platform.materialize_patient(key, ONE_CHANNEL)
    assert result.success
    scans = platform.query("SELECT path FROM scans WHERE patient_key = ?", [key])["path"].to_list()
    assert f"images/{key}/sag_T2_dicom" in scans and radiomics_rows(platform, key) > 0
    captured = capfd.readouterr()
    places = {"warehouse": warehouse_text(platform), "run log": run_log_text(platform, result),
              "console": captured.out + captured.err}
    for value in PHI_TAGS.values():
        for place, text in places.items():
            assert value not in text, f"{value} found in the {place}"


def test_an_image_linked_outside_data_root_quarantines_only_that_patient(platform: Platform, tmp_path) -> None:
    bad, good = platform.register()[:2]
    outside = tmp_path / "outside"
    outside.mkdir()
    linked = platform.manifest.parent / "images" / bad / "sag_T2.nii.gz"
    linked.rename(outside / "elsewhere.nii.gz")
    linked.symlink_to(outside / "elsewhere.nii.gz")
    good_image = platform.manifest.parent / "images" / good / "sag_T2.nii.gz"
    good_image.rename(good_image.with_name("real_T2.nii.gz"))
    good_image.symlink_to("real_T2.nii.gz")  # a link that stays inside data_root is followed
    assert platform.materialize_manifest().success
    assert not platform.materialize_patient(bad, ONE_CHANNEL).success
    issues = platform.query("SELECT code, file, message FROM qc_issues WHERE patient_key = ?", [bad])
    assert issues.rows() == [("path_escapes_root", f"images/{bad}/sag_T2.nii.gz", issues["message"][0])]
    assert f"{linked} is a symbolic link to {(outside / 'elsewhere.nii.gz').resolve()}" in issues["message"][0]
    assert radiomics_rows(platform, bad) == 0
    assert platform.materialize_patient(good, ONE_CHANNEL).success
    assert radiomics_rows(platform, good) > 0


def test_nan_voxels_in_a_float_mask_quarantine_the_patient_before_features(platform: Platform) -> None:
    key = platform.register()[0]
    mask_path = platform.manifest.parent / "images" / key / "sag_T2_lesion.nii.gz"
    mask = sitk.ReadImage(str(mask_path), sitk.sitkFloat32)
    data = sitk.GetArrayFromImage(mask)
    data.flat[np.flatnonzero(data == 0)[:100]] = np.nan
    nan_mask = sitk.GetImageFromArray(data)
    nan_mask.CopyInformation(mask)
    sitk.WriteImage(nan_mask, str(mask_path))
    assert platform.materialize_manifest().success
    assert not platform.materialize_patient(key, ONE_CHANNEL).success
    issues = platform.query("SELECT code, message FROM qc_issues WHERE patient_key = ?", [key])
    message = f"images/{key}/sag_T2_lesion.nii.gz: 100 mask voxels are NaN or infinite"
    assert issues.rows() == [("nonfinite_voxels", message)]
    assert radiomics_rows(platform, key) == 0


@pytest.mark.parametrize("size", [10_485_760])
def test_a_ten_megabyte_clinical_cell_is_stored_and_printed_short(platform: Platform, capfd, size: int) -> None:
    key = platform.register()[0]
    table = platform.manifest.parent / "patients.csv"
    lines = table.read_text(encoding="utf-8").splitlines()
    header = lines[0].split(",")
    line = next(i for i, text in enumerate(lines) if text.startswith(f"{key},"))
    cells = lines[line].split(",")
    cells[header.index("age")] = "9" * size
    lines[line] = ",".join(cells)
    table.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert platform.materialize_manifest().success
    messages = platform.query("SELECT message FROM qc_issues WHERE patient_key = ?", [key])["message"].to_list()
    assert len(messages) == 1 and len(messages[0]) < 400 and f"({size} characters)" in messages[0]
    captured = capfd.readouterr()
    assert len(captured.out) + len(captured.err) < size // 10
