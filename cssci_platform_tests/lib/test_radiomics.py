"""Unit tests of the PyRadiomics facade on small synthetic volumes (no reference data needed)."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cssci_platform.lib import radiomics as rad
from cssci_platform.lib.radiomics import (
    RadiomicsCase,
    RadiomicsError,
    extract_cases,
    extract_features,
    extractor_version,
    load_params,
    params_from_settings,
)

DEFAULT_CLASSES = {"shape", "firstorder", "glcm", "glrlm", "glszm", "gldm", "ngtdm"}


def phantom(
    shape: tuple[int, int, int] = (20, 22, 24), radii: tuple[float, float, float] = (5, 6, 7), seed: int = 0
) -> tuple[sitk.Image, sitk.Image]:
    """A noisy [0, 1] volume (1 mm isotropic) with a brighter ellipsoid ROI labelled 1."""
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    centre = [(s - 1) / 2 for s in shape]
    inside = sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)) <= 1
    values = np.clip(0.35 + 0.3 * inside + 0.1 * rng.standard_normal(shape), 0, 1).astype(np.float32)
    image = sitk.GetImageFromArray(values)
    mask = sitk.GetImageFromArray(inside.astype(np.uint8))
    mask.CopyInformation(image)
    return image, mask


def test_default_profile_gives_the_seven_classes_as_finite_floats() -> None:
    image, mask = phantom()
    features = extract_features(image, mask, load_params("default"))

    assert {name.split("_")[1] for name in features} == DEFAULT_CLASSES
    assert all(name.startswith("original_") for name in features)
    assert len(features) == 107  # 14 + 18 + 24 + 16 + 16 + 14 + 5
    assert all(type(v) is float and math.isfinite(v) for v in features.values())


def test_original_log_wavelet_gives_1316_features() -> None:
    image, mask = phantom(shape=(16, 16, 16), radii=(4, 5, 5))
    features = extract_features(image, mask, load_params("original_log_wavelet"))

    assert len(features) == 1316  # 14 shape + 93 x 14 image types
    image_types = {name.split("_")[0] for name in features}
    assert len(image_types) == 14
    assert {f"log-sigma-{s}-0-mm-3D" for s in range(1, 6)} <= image_types
    assert sum(t.startswith("wavelet-") for t in image_types) == 8


def test_skipped_log_sigma_is_an_error_not_a_shorter_vector() -> None:
    # 5 voxels per axis: PyRadiomics silently skips sigma 5 mm (needs ceil(5 / 1) + 1 = 6 voxels)
    image, mask = phantom(shape=(5, 5, 5), radii=(2, 2, 2))
    with pytest.raises(RadiomicsError, match=r"LoG sigma \[5.0\] mm skipped"):
        extract_features(image, mask, load_params("original_log_wavelet"))


def test_empty_mask_names_the_label() -> None:
    image, mask = phantom()
    empty = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
    empty.CopyInformation(mask)
    with pytest.raises(RadiomicsError, match="empty ROI: label 1 has no voxels"):
        extract_features(image, empty, load_params("default"))
    with pytest.raises(RadiomicsError, match=r"label 2 has no voxels .*present: \[1\]"):
        extract_features(image, mask, load_params("default"), label=2)


def test_too_small_roi_is_rejected_precisely() -> None:
    image, _ = phantom()
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, dtype=np.uint8)
    array[5:7, 5:7, 5:7] = 1  # 8 voxels < minimumROISize 27
    mask = sitk.GetImageFromArray(array)
    mask.CopyInformation(image)
    with pytest.raises(RadiomicsError, match=r"label 1 \(8 voxels\) rejected: .*too small"):
        extract_features(image, mask, load_params("default"))


def test_unknown_profile_lists_the_available_ones() -> None:
    with pytest.raises(RadiomicsError, match="unknown radiomics profile 'nope'.*default, original_log_wavelet"):
        load_params("nope")
    with pytest.raises(RadiomicsError, match="does not exist"):
        load_params(Path("/nonexistent/params.yaml"))


def test_params_hash_is_stable_and_tracks_the_yaml_text(tmp_path: Path) -> None:
    first, again = load_params("default"), load_params("default")
    assert first.sha256 == again.sha256 == hashlib.sha256(first.text.encode()).hexdigest()
    assert first.name == "default" and first.path is not None and first.settings["binWidth"] == 0.02

    copy = tmp_path / "mine.yaml"
    copy.write_text(first.text, encoding="utf-8")
    assert load_params(copy).sha256 == first.sha256 and load_params(str(copy)).name == "mine"

    copy.write_text(first.text.replace("binWidth: 0.02", "binWidth: 0.03"), encoding="utf-8")
    changed = load_params(copy)
    assert changed.sha256 != first.sha256 and changed.settings["binWidth"] == 0.03


def test_invalid_parameter_file_names_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("setting:\n  binWidth: -1\n", encoding="utf-8")
    with pytest.raises(RadiomicsError, match=f"invalid PyRadiomics parameters in {bad}"):
        load_params(bad)
    bad.write_text("settings:\n  binWidth: 1\n", encoding="utf-8")
    with pytest.raises(RadiomicsError, match=r"unknown top-level keys \['settings'\]"):
        load_params(bad)


def test_params_from_settings_defaults_and_determinism() -> None:
    a = params_from_settings({"binWidth": 0.05, "label": 1})
    b = params_from_settings({"label": 1, "binWidth": 0.05})
    assert a.sha256 == b.sha256 and a.path is None and a.name == "custom"
    assert a.image_types == {"Original": {}} and set(a.feature_classes) == DEFAULT_CLASSES
    assert params_from_settings({"binWidth": 0.1}).sha256 != a.sha256


def test_extractor_is_built_once_per_params() -> None:
    params = load_params("default")
    assert rad._extractor(params) is rad._extractor(load_params("default"))


def test_extractor_version_names_pyradiomics() -> None:
    name, version = extractor_version().split(" ")
    assert name.startswith("pyradiomics") and version[0].isdigit()


def _write_case(folder: Path, case_id: str, seed: int, empty: bool = False) -> RadiomicsCase:
    image, mask = phantom(seed=seed)
    if empty:
        mask = sitk.Image(mask.GetSize(), sitk.sitkUInt8)
        mask.CopyInformation(image)
    image_path, mask_path = folder / f"{case_id}_image.nrrd", folder / f"{case_id}_mask.nrrd"
    sitk.WriteImage(image, str(image_path))
    sitk.WriteImage(mask, str(mask_path))
    return RadiomicsCase(case_id, image_path, mask_path)


def test_extract_cases_keeps_order_and_isolates_bad_cases(tmp_path: Path) -> None:
    cases = [_write_case(tmp_path, f"p{i}", seed=i) for i in range(3)]
    missing = RadiomicsCase("missing", tmp_path / "nope_image.nrrd", cases[0].mask_path)
    empty = _write_case(tmp_path, "empty", seed=9, empty=True)

    results = extract_cases([cases[0], missing, cases[1], empty, cases[2]], load_params("default"))

    assert [cid for cid, _ in results] == ["p0", "missing", "p1", "empty", "p2"]
    errors = dict(results)
    assert all(isinstance(errors[cid], dict) and len(errors[cid]) == 107 for cid in ("p0", "p1", "p2"))
    assert "case missing" in str(errors["missing"]) and "image file does not exist" in str(errors["missing"])
    assert "case empty" in str(errors["empty"]) and "label 1 has no voxels" in str(errors["empty"])


def test_unreadable_file_is_reported_for_its_case(tmp_path: Path) -> None:
    good = _write_case(tmp_path, "p0", seed=0)
    (tmp_path / "corrupt.nrrd").write_text("not an image", encoding="utf-8")
    corrupt = RadiomicsCase("corrupt", good.image_path, tmp_path / "corrupt.nrrd")

    (_, error), (_, features) = extract_cases([corrupt, good], load_params("default"))

    assert isinstance(error, RadiomicsError) and isinstance(features, dict)
    assert f"case corrupt (image {good.image_path}" in str(error)
    assert f"cannot read mask file {tmp_path / 'corrupt.nrrd'}: Unable to determine ImageIO reader" in str(error)


def test_geometry_mismatch_is_reported_with_both_grids() -> None:
    image, mask = phantom()
    mask.SetSpacing((1.0, 1.0, 1.5))
    with pytest.raises(RadiomicsError, match=r"geometry mismatch \(label 1\): spacing image \(1.0, 1.0, 1.0\)"):
        extract_features(image, mask, load_params("default"))


def _channels_on_one_mask(folder: Path, count: int) -> list[RadiomicsCase]:
    """`count` filter channels of one image (noise of a different seed each) on the same mask file."""
    image, mask = phantom(seed=0)
    mask_path = folder / "mask.nrrd"
    sitk.WriteImage(mask, str(mask_path))
    cases = []
    for index in range(count):
        channel, _ = phantom(seed=index + 1)
        channel_path = folder / f"channel{index}.nrrd"
        sitk.WriteImage(channel, str(channel_path))
        cases.append(RadiomicsCase(f"p/T2/lesion/primary/channel{index}", channel_path, mask_path))
    return cases


def _count_shape_computations(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts PyRadiomics' shape kernel (marching cubes and the mesh's diameters: the costliest part of a case)."""
    import radiomics.shape

    calls: list[int] = []
    kernel = radiomics.shape.cShape

    class CountingKernel:
        def __getattr__(self, name: str):
            return getattr(kernel, name)

        @staticmethod
        def calculate_coefficients(*args):
            calls.append(1)
            return kernel.calculate_coefficients(*args)

    monkeypatch.setattr(radiomics.shape, "cShape", CountingKernel())
    return calls


def test_a_masks_shape_features_are_computed_once_for_all_its_channels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Shape features depend on the mask alone; five channels on one mask computed them five times (70 % of a large
    tumour's extraction). Values and their order are those of extracting each case on its own."""
    cases = _channels_on_one_mask(tmp_path, 3)
    params = load_params("default")
    alone = [extract_cases([case], params)[0] for case in cases]
    calls = _count_shape_computations(monkeypatch)

    together = extract_cases(cases, params)

    assert len(calls) == 1
    assert [(cid, list(features.items())) for cid, features in together] == \
        [(cid, list(features.items())) for cid, features in alone]
    assert all(len(features) == 107 for _, features in together)


def test_shape_is_computed_per_case_when_resegmentation_makes_the_roi_depend_on_the_image(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cases = _channels_on_one_mask(tmp_path, 2)
    params = params_from_settings({"binWidth": 0.02, "resegmentRange": [0.3, 1.0], "label": 1})
    alone = [extract_cases([case], params)[0] for case in cases]
    calls = _count_shape_computations(monkeypatch)

    together = extract_cases(cases, params)

    assert len(calls) == 2
    assert [(cid, list(f.items())) for cid, f in together] == [(cid, list(f.items())) for cid, f in alone]
