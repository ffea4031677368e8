"""SimpleITK I/O, geometry checks, intensity normalization, resampling and filter channels."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cssci_platform.lib.imaging import (
    CHANNELS,
    VOLUME_SUFFIXES,
    ChannelSettings,
    GeometryTolerance,
    ImageReadError,
    NonIntegralVoxels,
    file_sha256,
    filter_channel,
    geometry_mismatches,
    has_volume_suffix,
    header_data_files,
    mask_label_counts,
    nonfinite_voxel_count,
    nonfinite_voxels_in_file,
    nonintegral_voxels,
    normalize_unit_range,
    read_image,
    resample_mask_onto,
    resample_to_spacing,
    write_image,
)
from cssci_platform_tests.lib.conftest import (
    LESION_BOX,
    LESION_VOXELS,
    ORIGIN,
    SIZE,
    SPACING,
    from_array,
    make_image,
    make_mask,
)

FLIPPED = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)  # RAS-like vs LPS: a common real-world mismatch


def array(image: sitk.Image) -> np.ndarray:
    return sitk.GetArrayFromImage(image)


def geometry(image: sitk.Image) -> tuple:
    return image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection()


def assert_same_geometry(a: sitk.Image, b: sitk.Image, atol: float = 1e-5) -> None:
    assert a.GetSize() == b.GetSize()
    for getter in ("GetSpacing", "GetOrigin", "GetDirection"):
        np.testing.assert_allclose(getattr(a, getter)(), getattr(b, getter)(), atol=atol, err_msg=getter)


def rotation_z(angle: float) -> tuple[float, ...]:
    c, s = math.cos(angle), math.sin(angle)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


# ---------------------------------------------------------------- reading and writing


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii", ".nrrd", ".mha"])
@pytest.mark.parametrize("kind", ["float_image", "int16_image", "uint8_mask"])
def test_write_read_round_trip(tmp_path, suffix, kind):
    if kind == "uint8_mask":
        image = make_mask(origin=(1.5, -2.25, 30.0), direction=FLIPPED)
    else:
        image = make_image(
            origin=(1.5, -2.25, 30.0), direction=FLIPPED, dtype=np.float32 if kind == "float_image" else np.int16
        )
    path = tmp_path / "sub" / f"scan{suffix}"
    write_image(image, path)
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary file left behind
    back = read_image(path)
    assert back.GetPixelID() == image.GetPixelID()
    np.testing.assert_array_equal(array(back), array(image))
    assert_same_geometry(back, image)


def test_write_replaces_an_existing_file(tmp_path):
    path = tmp_path / "scan.nii.gz"
    write_image(make_image(seed=1), path)
    write_image(make_image(seed=2), path)
    np.testing.assert_array_equal(array(read_image(path)), array(make_image(seed=2)))
    assert [p.name for p in tmp_path.iterdir()] == ["scan.nii.gz"]


def write_dicom_series(
    folder: Path, image: sitk.Image, series_number: int, extra_tags: dict[str, str] | None = None
) -> None:
    """One file per slice with the tags a GDCM series reader needs for geometry, plus `extra_tags`
    (e.g. PatientName "0010|0010") on every slice."""
    folder.mkdir(parents=True, exist_ok=True)
    writer = sitk.ImageFileWriter()
    writer.KeepOriginalImageUIDOn()
    root = "1.2.826.0.1.3680043.2.1125.9"
    series_uid, study_uid = f"{root}.{series_number}", f"{root}.100"
    d = image.GetDirection()
    spacing = image.GetSpacing()
    for k in range(image.GetDepth()):
        slice_ = image[:, :, k]
        tags = {
            "0008|0060": "MR",
            "0008|0016": "1.2.840.10008.5.1.4.1.1.4",
            "0008|0018": f"{series_uid}.{k + 1}",
            "0020|000d": study_uid,
            "0020|000e": series_uid,
            "0020|0011": str(series_number),
            "0020|0013": str(k + 1),
            "0020|0032": "\\".join(f"{v:.6f}" for v in image.TransformIndexToPhysicalPoint((0, 0, k))),
            "0020|0037": "\\".join(f"{v:.6f}" for v in (d[0], d[3], d[6], d[1], d[4], d[7])),
            "0028|0030": f"{spacing[1]}\\{spacing[0]}",
            "0018|0050": str(spacing[2]),
        }
        for tag, value in {**tags, **(extra_tags or {})}.items():
            slice_.SetMetaData(tag, value)
        writer.SetFileName(str(folder / f"s{series_number}_{k:03d}.dcm"))
        writer.Execute(slice_)


def test_dicom_series_folder_round_trip(tmp_path):
    image = make_image(spacing=(0.8, 0.7, 1.5), origin=(1.0, 2.0, 3.0), dtype=np.int16)
    write_dicom_series(tmp_path / "series", image, series_number=1)
    back = read_image(tmp_path / "series")
    np.testing.assert_array_equal(array(back), array(image))
    assert_same_geometry(back, image)


def test_dicom_folder_with_two_series_reads_the_largest(tmp_path):
    big = make_image(dtype=np.int16, seed=1)
    small = make_image(size=(20, 24, 5), dtype=np.int16, seed=2)
    write_dicom_series(tmp_path / "mixed", big, series_number=1)
    write_dicom_series(tmp_path / "mixed", small, series_number=2)
    back = read_image(tmp_path / "mixed")
    assert back.GetSize() == SIZE
    np.testing.assert_array_equal(array(back), array(big))


def read_error(path: Path) -> ImageReadError:
    with pytest.raises(ImageReadError) as caught:
        read_image(path)
    error = caught.value
    assert error.path == path
    assert str(error) == f"{path}: {error.reason}. Fix: {error.fix}"
    return error


def test_missing_file(tmp_path):
    error = read_error(tmp_path / "absent.nii.gz")
    assert error.reason == "file not found"
    assert "check the path in the manifest" in error.fix


def test_empty_file(tmp_path):
    path = tmp_path / "empty.nii.gz"
    path.touch()
    error = read_error(path)
    assert error.reason == "file is empty (0 bytes)"
    assert error.fix == "re-export or re-copy the file"


@pytest.mark.parametrize("name", ["garbage.nii.gz", "garbage.nii", "garbage.nrrd", "garbage.mha"])
def test_garbage_bytes(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(b"definitely not an image\n" * 40)
    error = read_error(path)
    assert error.reason.startswith("unreadable or corrupt image (")
    assert error.fix == "re-export or re-copy the file"


def truncate(path: Path, fraction: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


def test_truncated_gzip_that_loses_the_header(tmp_path):
    path = tmp_path / "scan.nii.gz"
    write_image(make_image(), path)
    truncate(path, 0.002)  # a few bytes: not even the gzip header survives
    assert read_error(path).reason.startswith("unreadable or corrupt image (")


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_truncated_nrrd_and_mha(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    write_image(make_image(), path)
    truncate(path)
    assert read_error(path).reason.startswith("unreadable or corrupt image (")


@pytest.mark.parametrize("compressed", [False, True])
def test_a_truncated_mha_says_truncated_with_the_byte_counts_not_no_such_file(tmp_path, compressed):
    path = tmp_path / "scan.mha"
    sitk.WriteImage(make_image(), str(path), compressed)
    truncate(path)
    reason = read_error(path).reason
    assert "No such file" not in reason
    unit = "compressed data bytes" if compressed else "voxel bytes"
    expected = SIZE[0] * SIZE[1] * SIZE[2] * 4
    assert reason.startswith("unreadable or corrupt image (truncated: "), reason
    assert f"of {'' if compressed else expected}" in reason and f"{unit} present" in reason


def test_a_truncated_mhd_data_file_is_reported_as_truncated(tmp_path):
    path = tmp_path / "scan.mhd"
    sitk.WriteImage(make_image(), str(path), False)
    truncate(tmp_path / "scan.raw")
    assert "truncated: " in read_error(path).reason


def test_an_mhd_whose_data_file_is_missing_names_it(tmp_path):
    path = tmp_path / "scan.mhd"
    sitk.WriteImage(make_image(), str(path), False)
    (tmp_path / "scan.raw").unlink()
    error = read_error(path)
    assert error.reason == f"data file {tmp_path / 'scan.raw'} (ElementDataFile in the header) not found"
    assert "copy the .raw/.zraw data file" in error.fix


def test_header_data_files_of_single_file_images_are_empty(tmp_path):
    for name in ("a.mha", "a.nrrd", "a.nii.gz"):
        write_image(make_image(), tmp_path / name)
        assert header_data_files(tmp_path / name) == []


@pytest.mark.parametrize("header", ["a.mhd", "a.nhdr"])
def test_header_data_files_names_the_separate_data_file(tmp_path, header):
    sitk.WriteImage(make_image(), str(tmp_path / header), False)
    assert header_data_files(tmp_path / header) == [tmp_path / "a.raw"]


@pytest.mark.parametrize(
    "field, following, names",
    [
        ("ElementDataFile = LIST", "s1.raw\ns2.raw\n", ["s1.raw", "s2.raw"]),
        ("ElementDataFile = ../x%02d.raw 1 3 1", "", ["../x01.raw", "../x02.raw", "../x03.raw"]),
        ("ElementDataFile = /abs/v.raw", "", ["/abs/v.raw"]),
    ],
)
def test_header_data_files_reads_lists_and_patterns(tmp_path, field, following, names):
    (tmp_path / "h.mhd").write_text(f"ObjectType = Image\nNDims = 3\nDimSize = 2 2 2\n{field}\n{following}")
    assert header_data_files(tmp_path / "h.mhd") == [tmp_path / n for n in names]


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_truncated_nifti(tmp_path, suffix):
    path = tmp_path / f"scan{suffix}"
    write_image(make_image(), path)
    truncate(path)
    assert read_error(path).reason.startswith("unreadable or corrupt image (")


@pytest.mark.parametrize(
    "name, suffix", [("scan.png", ".png"), ("scan.dcm", ".dcm"), ("scan.nii.zip", ".zip"), ("scan", "")]
)
def test_unsupported_suffix(tmp_path, name, suffix):
    path = tmp_path / name
    path.write_bytes(b"x")
    error = read_error(path)
    assert error.reason == f"unsupported file type '{suffix}'"
    assert error.fix == "convert to one of " + ", ".join(VOLUME_SUFFIXES)


@pytest.mark.parametrize("content", [None, "notes.txt"])
def test_folder_without_dicom_series(tmp_path, content):
    folder = tmp_path / "series"
    folder.mkdir()
    if content:
        (folder / content).write_text("no dicom here", encoding="utf-8")
    error = read_error(folder)
    assert error.reason == "folder holds no DICOM series"
    assert "DICOM series folder" in error.fix


def test_volume_suffix_is_case_insensitive():
    assert has_volume_suffix(Path("A.NII.GZ")) and has_volume_suffix(Path("a.mhd"))
    assert not has_volume_suffix(Path("a.nii.gz.bak")) and not has_volume_suffix(Path("a.gz"))


# ---------------------------------------------------------------- hashing


def test_file_sha256_is_stable_and_content_sensitive(tmp_path):
    path = tmp_path / "scan.nii.gz"
    write_image(make_image(), path)
    digest = file_sha256(path)
    assert len(digest) == 64 and digest == file_sha256(path)
    copy = tmp_path / "copy" / "scan.nii.gz"
    copy.parent.mkdir()
    copy.write_bytes(path.read_bytes())
    assert file_sha256(copy) == digest  # same name and bytes elsewhere: same hash
    data = bytearray(path.read_bytes())
    data[-10] ^= 0xFF
    path.write_bytes(bytes(data))
    assert file_sha256(path) != digest


def test_file_sha256_of_a_large_file_reads_in_blocks(tmp_path):
    path = tmp_path / "big.nii"
    payload = bytes(range(256)) * 9000  # > 2 blocks of 1 MiB
    path.write_bytes(payload)
    expected = hashlib.sha256(payload).hexdigest()  # content only: a renamed copy keeps its hash
    assert file_sha256(path) == expected


def test_file_sha256_of_a_folder_covers_every_file(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    for k in range(3):
        (folder / f"{k}.dcm").write_bytes(bytes([k]) * 100)
    digest = file_sha256(folder)
    assert digest == file_sha256(folder)
    (folder / "1.dcm").write_bytes(bytes([9]) * 100)
    changed = file_sha256(folder)
    assert changed != digest
    (folder / "3.dcm").write_bytes(b"new")
    assert file_sha256(folder) not in (digest, changed)


# ---------------------------------------------------------------- geometry and voxel checks


TOLERANCE = GeometryTolerance()


def test_same_grid_has_no_mismatch():
    assert geometry_mismatches(make_image(), make_mask(), TOLERANCE) == []


def test_size_mismatch():
    problems = geometry_mismatches(make_image(), make_mask(size=(20, 24, 15)), TOLERANCE)
    assert problems == ["size differs: image (20, 24, 16) vs mask (20, 24, 15)"]


@pytest.mark.parametrize("delta, flagged", [(0.0005, False), (0.005, True)])
def test_spacing_tolerance(delta, flagged):
    mask = make_mask(spacing=(SPACING[0] + delta, SPACING[1], SPACING[2]))
    problems = geometry_mismatches(make_image(), mask, TOLERANCE)
    if flagged:
        assert problems == [
            f"spacing differs beyond 0.001 mm: image (0.8, 0.8, 1.5) vs mask ({SPACING[0] + delta:.4g}, 0.8, 1.5)"
        ]
    else:
        assert problems == []


@pytest.mark.parametrize("delta, flagged", [(0.005, False), (-0.009, False), (0.02, True), (-0.5, True)])
def test_origin_tolerance(delta, flagged):
    mask = make_mask(origin=(ORIGIN[0], ORIGIN[1], ORIGIN[2] + delta))
    problems = geometry_mismatches(make_image(), mask, TOLERANCE)
    assert len(problems) == int(flagged)
    if flagged:
        assert problems[0].startswith("origin differs beyond 0.01 mm: image (-8, -9.6, -12) vs mask (-8, -9.6, ")


def test_origin_tolerance_is_configurable():
    mask = make_mask(origin=(ORIGIN[0] + 0.2, ORIGIN[1], ORIGIN[2]))
    assert geometry_mismatches(make_image(), mask, GeometryTolerance(origin_mm=0.5)) == []
    assert len(geometry_mismatches(make_image(), mask, GeometryTolerance(origin_mm=0.1))) == 1


@pytest.mark.parametrize("direction, flagged", [(rotation_z(1e-5), False), (rotation_z(0.01), True), (FLIPPED, True)])
def test_direction_tolerance(direction, flagged):
    problems = geometry_mismatches(make_image(), make_mask(direction=direction), TOLERANCE)
    assert len(problems) == int(flagged)
    if flagged:
        assert problems[0].startswith("direction differs beyond 0.0001: image (1, 0, 0, 0, 1, 0, 0, 0, 1) vs mask (")


def test_every_difference_is_reported():
    mask = make_mask(size=(10, 24, 16), spacing=(1.0, 0.8, 1.5), origin=(0.0, 0.0, 0.0), direction=FLIPPED)
    problems = geometry_mismatches(make_image(), mask, TOLERANCE)
    assert [p.split()[0] for p in problems] == ["size", "spacing", "origin", "direction"]


def test_two_d_mask_against_three_d_image():
    mask2d = sitk.Image([20, 24], sitk.sitkUInt8)
    problems = geometry_mismatches(make_image(), mask2d, TOLERANCE)
    assert [p.split()[0] for p in problems] == ["size", "spacing", "origin", "direction"]


def test_nonfinite_voxel_count():
    assert nonfinite_voxel_count(nan_volume()) == 3
    assert nonfinite_voxel_count(make_image()) == 0
    assert nonfinite_voxel_count(make_image(dtype=np.int16)) == 0


def nan_volume() -> sitk.Image:
    data = array(make_image())
    data[0, 0, 0], data[3, 4, 5], data[-1, -1, -1] = np.nan, np.inf, -np.inf
    return from_array(data)


@pytest.mark.parametrize("suffix", [".nrrd", ".mha"])
def test_nonfinite_voxels_survive_a_round_trip(tmp_path, suffix):
    write_image(nan_volume(), tmp_path / f"nan{suffix}")
    assert nonfinite_voxel_count(read_image(tmp_path / f"nan{suffix}")) == 3


@pytest.mark.parametrize("suffix", [".nii.gz", ".nii"])
def test_nonfinite_voxels_of_a_nifti_are_counted_in_the_file(tmp_path, suffix):
    path = tmp_path / f"nan{suffix}"
    write_image(nan_volume(), path)
    image = read_image(path)
    assert nonfinite_voxel_count(image) == 0  # ITK's NIfTI reader zeroes NaN/Inf (ITK 5.4) ...
    assert nonfinite_voxels_in_file(path, image) == 3  # ... so QC counts them in the raw voxel bytes


def test_mask_label_counts():
    mask = make_mask(labels={1: LESION_BOX, 2: (slice(0, 2), slice(0, 3), slice(0, 4))})
    assert mask_label_counts(mask) == {1: LESION_VOXELS, 2: 24}
    assert mask_label_counts(make_mask(labels={})) == {}
    float_mask = sitk.Cast(make_mask(), sitk.sitkFloat32)
    assert mask_label_counts(float_mask) == {1: LESION_VOXELS}


def test_mask_label_counts_leave_nan_voxels_out():
    data = array(sitk.Cast(make_mask(), sitk.sitkFloat32))
    data[0, 0, :5] = np.nan
    assert mask_label_counts(from_array(data)) == {1: LESION_VOXELS}


def test_nonintegral_voxels_counts_fractional_labels_only():
    data = array(sitk.Cast(make_mask(), sitk.sitkFloat32))
    data[LESION_BOX] = 0.9999
    data[0, 0, 0] = np.nan
    found = nonintegral_voxels(from_array(data))
    assert found.count == LESION_VOXELS and found.example == pytest.approx(0.9999)
    assert nonintegral_voxels(sitk.Cast(make_mask(), sitk.sitkFloat32)) == NonIntegralVoxels(0, None)
    assert nonintegral_voxels(make_mask()) == NonIntegralVoxels(0, None)


# ---------------------------------------------------------------- normalization and resampling


def test_normalize_unit_range_full_window():
    image = make_image(origin=(3.0, 4.0, 5.0))
    out = normalize_unit_range(image)
    values = array(out)
    assert out.GetPixelID() == sitk.sitkFloat32
    assert values.min() == 0.0 and values.max() == 1.0
    assert_same_geometry(out, image, atol=0)
    source = array(image).astype(np.float64)
    np.testing.assert_allclose(values, (source - source.min()) / (source.max() - source.min()), atol=1e-6)


def test_normalize_unit_range_clips_outside_the_percentiles():
    data = np.random.default_rng(3).normal(100.0, 10.0, SIZE[::-1]).astype(np.float32)
    data[0, 0, 0] = 1e6  # one hot voxel must not squash everything else towards 0
    values = array(normalize_unit_range(from_array(data), 1.0, 99.0))
    assert values.min() == 0.0 and values.max() == 1.0
    n = values.size
    assert 0.009 * n <= np.count_nonzero(values == 0.0) <= 0.011 * n
    assert 0.009 * n <= np.count_nonzero(values == 1.0) <= 0.011 * n
    assert 0.45 < float(np.median(values)) < 0.55


def test_normalize_constant_image_is_finite():
    values = array(normalize_unit_range(from_array(np.full(SIZE[::-1], 7.0, np.float32))))
    assert np.all(values == 0.0)


@pytest.mark.parametrize("target", [(1.0, 1.0, 1.0), (0.5, 0.5, 0.5), (2.0, 2.0, 3.0), (1.0, 0.6, 2.5)])
def test_resample_keeps_the_extent_and_takes_the_spacing(target):
    image = make_image(direction=FLIPPED)
    out = resample_to_spacing(image, target)
    np.testing.assert_allclose(out.GetSpacing(), target)
    old_extent = np.asarray(SIZE) * np.asarray(SPACING)
    new_extent = np.asarray(out.GetSize()) * np.asarray(target)
    assert np.all(np.abs(new_extent - old_extent) <= np.asarray(target) / 2 + 1e-9)
    assert out.GetDirection() == image.GetDirection()
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    first_edge = np.asarray(image.GetOrigin()) - direction @ (np.asarray(SPACING) / 2)
    new_first_edge = np.asarray(out.GetOrigin()) - direction @ (np.asarray(target) / 2)
    np.testing.assert_allclose(new_first_edge, first_edge, atol=1e-9)  # outer voxel edges stay aligned
    assert out.GetPixelID() == sitk.sitkFloat32


def test_resample_to_one_mm():
    out = resample_to_spacing(make_image(), (1.0, 1.0, 1.0))
    assert out.GetSize() == (16, 19, 24)  # 16 mm x 19.2 mm x 24 mm


def test_resampled_mask_stays_binary_with_nearest_neighbour():
    mask = make_mask()
    out = resample_to_spacing(mask, (1.0, 1.0, 1.0), is_mask=True)
    assert out.GetPixelID() == sitk.sitkUInt8
    values = array(out)
    assert set(np.unique(values)) == {0, 1}
    physical = LESION_VOXELS * np.prod(SPACING)
    assert abs(values.sum() * 1.0 - physical) / physical < 0.3


def test_resample_mask_onto_a_resampled_image():
    base = resample_to_spacing(make_image(), (1.0, 1.0, 1.0))
    out = resample_mask_onto(make_mask(labels={1: LESION_BOX}), base)
    assert_same_geometry(out, base, atol=0)
    assert out.GetPixelID() == sitk.sitkUInt8
    assert set(np.unique(array(out))) == {0, 1}


def test_resampling_a_smooth_image_keeps_values():
    z, y, x = np.meshgrid(*(np.arange(n, dtype=np.float32) for n in SIZE[::-1]), indexing="ij")
    ramp = from_array((x * 0.8 + 2 * y * 0.8).astype(np.float32))  # linear in mm
    out = resample_to_spacing(ramp, (1.6, 1.6, 1.5))
    # voxel (i, j, k) of the output lies at x = 0.4 + 1.6 i, y = 0.4 + 1.6 j mm from the input origin
    # (first voxel centre moved by half the spacing change so the outer edges stay put)
    values = array(out)
    k, j, i = 3, 4, 5
    assert values[k, j, i] == pytest.approx((0.4 + 1.6 * i) + 2 * (0.4 + 1.6 * j), abs=1e-3)


# ---------------------------------------------------------------- filter channels


@pytest.mark.parametrize("channel", CHANNELS)
def test_every_channel_keeps_the_geometry(channel):
    image = make_image(origin=(1.0, 2.0, 3.0), direction=FLIPPED, dtype=np.int16)
    out = filter_channel(image, channel)
    assert out.GetPixelID() == sitk.sitkFloat32
    assert geometry(out) == geometry(image)


def test_original_is_the_identity_as_float32():
    image = make_image(dtype=np.int16)
    out = filter_channel(image, "original")
    assert out.GetPixelID() == sitk.sitkFloat32
    np.testing.assert_array_equal(array(out), array(image).astype(np.float32))


@pytest.mark.parametrize("channel", CHANNELS)
def test_constant_image_stays_constant(channel):
    out = array(filter_channel(from_array(np.full(SIZE[::-1], 0.25, np.float32)), channel))
    np.testing.assert_allclose(out, 0.25, atol=1e-6)


def test_mean_is_the_three_cube_neighbourhood_mean():
    data = np.random.default_rng(5).random(SIZE[::-1]).astype(np.float32)
    out = array(filter_channel(from_array(data), "mean"))
    np.testing.assert_allclose(out[5, 6, 7], data[4:7, 5:8, 6:9].mean(), rtol=1e-5)


def test_box_is_the_five_cube_mean_and_differs_from_mean():
    data = np.random.default_rng(5).random(SIZE[::-1]).astype(np.float32)
    image = from_array(data)
    box, mean = array(filter_channel(image, "box")), array(filter_channel(image, "mean"))
    np.testing.assert_allclose(box[5, 6, 7], data[3:8, 4:9, 5:10].mean(), rtol=1e-4)
    assert np.abs(box - mean).max() > 0.01
    same_radius = array(filter_channel(image, "box", ChannelSettings(box_radius=1)))
    np.testing.assert_allclose(same_radius[2:-2, 2:-2, 2:-2], mean[2:-2, 2:-2, 2:-2], atol=1e-5)


def test_median_removes_a_single_voxel_spike():
    data = np.zeros(SIZE[::-1], np.float32)
    data[8, 12, 10] = 1.0
    out = array(filter_channel(from_array(data), "median"))
    assert out.max() == 0.0
    blurred = array(filter_channel(from_array(data), "mean"))
    assert blurred.max() > 0  # a mean only spreads it


def test_gaussian_reduces_noise_and_scales_with_sigma():
    data = np.random.default_rng(9).normal(0.5, 0.1, SIZE[::-1]).astype(np.float32)
    image = from_array(data, spacing=(1.0, 1.0, 1.0))
    small = array(filter_channel(image, "gaussian", ChannelSettings(gaussian_sigma_mm=0.7)))
    large = array(filter_channel(image, "gaussian", ChannelSettings(gaussian_sigma_mm=2.0)))
    assert small.var() < 0.5 * data.var()
    assert large.var() < 0.5 * small.var()
    assert abs(float(large.mean()) - float(data.mean())) < 0.01


def test_unknown_channel_lists_the_choices():
    with pytest.raises(ValueError) as caught:
        filter_channel(make_image(), "laplacian")
    assert str(caught.value) == "unknown channel 'laplacian'; choose from original, mean, box, gaussian, median"


def test_channels_constant():
    assert CHANNELS == ("original", "mean", "box", "gaussian", "median")
