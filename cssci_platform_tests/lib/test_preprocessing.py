"""Per-patient preprocessing: channel files and masks on a 1 mm grid, content-addressed caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from cssci_platform.lib.imaging import CHANNELS, ChannelSettings, GeometryTolerance
from cssci_platform.lib.preprocessing import PreprocessedPatient, PreprocessingSettings, preprocess_patient
from cssci_platform.lib.quality import inspect_patient
from cssci_platform_tests.lib.conftest import (
    LESION_BOX,
    SEQUENCE,
    TinyCohort,
    base_row,
    from_array,
    make_image,
    make_mask,
)

CORD_COL = f"mask__{SEQUENCE}__cord"
RATER2_COL = f"mask__{SEQUENCE}__lesion__rater2"
CORD_BOX = (slice(2, 14), slice(4, 20), slice(4, 16))


@pytest.fixture
def one_patient(tiny_cohort) -> TinyCohort:
    rows = [base_row("P001", **{CORD_COL: "masks/P001_sag_T2_cord.nii.gz", RATER2_COL: "masks/P001_rater2.nii.gz"})]
    cohort = tiny_cohort(rows)
    cohort.write("masks/P001_sag_T2_cord.nii.gz", make_mask(labels={1: CORD_BOX}))
    return cohort


def run(cohort: TinyCohort, store: Path,
        settings: PreprocessingSettings = PreprocessingSettings()) -> PreprocessedPatient:
    loaded = cohort.load()
    inspection = inspect_patient(loaded, loaded.patients["P001"], GeometryTolerance())
    assert inspection.passed, inspection.issues
    return preprocess_patient(inspection.scans, loaded.resolve, store, settings)


def read(path: str) -> sitk.Image:
    return sitk.ReadImage(path)


def test_writes_one_file_per_channel_and_mask(one_patient, tmp_path):
    store = tmp_path / "store"
    result = run(one_patient, store)
    assert [c.channel for c in result.channels] == list(CHANNELS)
    expected = [("lesion", "primary"), ("cord", "primary"), ("lesion", "rater2")]
    assert [(m.roi, m.segmentation) for m in result.masks] == expected
    assert result.computed_files == len(CHANNELS) + 3
    written = sorted(p for p in store.rglob("*") if p.is_file() and not p.name.endswith(".entry.json"))
    assert len(list(store.rglob("*.entry.json"))) == len(written)  # each file has its entry record
    stored = [c.image_path for c in result.channels] + [m.mask_path for m in result.masks]
    assert sorted(map(str, written)) == sorted(stored)
    for channel in result.channels:
        assert Path(channel.image_path).parent == store / "P001" / SEQUENCE
        assert Path(channel.image_path).name.startswith(f"{channel.channel}-")
        assert (channel.patient_key, channel.sequence) == ("P001", SEQUENCE)
        assert channel.settings_digest == PreprocessingSettings().digest()
    cohort = one_patient.load()
    scans = {s.path: s.sha256 for s in inspect_patient(cohort, cohort.patients["P001"], GeometryTolerance()).scans}
    assert {c.source_sha256 for c in result.channels} == {scans[f"images/P001_{SEQUENCE}.nii.gz"]}
    assert result.masks[0].source_sha256 == scans[f"masks/P001_{SEQUENCE}_lesion.nii.gz"]


def test_channels_are_one_mm_isotropic_in_unit_range(one_patient, tmp_path):
    result = run(one_patient, tmp_path / "store")
    reference = read(result.channels[0].image_path)
    assert reference.GetSize() == (16, 19, 24)  # 20 x 0.8, 24 x 0.8, 16 x 1.5 mm
    for channel in result.channels:
        image = read(channel.image_path)
        assert image.GetPixelID() == sitk.sitkFloat32
        np.testing.assert_allclose(image.GetSpacing(), (1.0, 1.0, 1.0), atol=1e-6)
        assert image.GetSize() == reference.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), reference.GetOrigin(), atol=1e-5)
        values = sitk.GetArrayFromImage(image)
        assert values.min() >= 0.0 and values.max() <= 1.0, channel.channel
    original = sitk.GetArrayFromImage(read(result.channels[0].image_path))
    assert original.min() == 0.0 and original.max() == 1.0
    assert not np.array_equal(original, sitk.GetArrayFromImage(read(result.channels[1].image_path)))


def test_masks_are_binary_on_the_channel_grid(one_patient, tmp_path):
    result = run(one_patient, tmp_path / "store")
    grid = read(result.channels[0].image_path)
    for mask_file in result.masks:
        mask = read(mask_file.mask_path)
        assert mask.GetPixelID() == sitk.sitkUInt8
        assert mask.GetSize() == grid.GetSize()
        np.testing.assert_allclose(mask.GetSpacing(), grid.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(mask.GetOrigin(), grid.GetOrigin(), atol=1e-5)
        assert set(np.unique(sitk.GetArrayFromImage(mask))) == {0, 1}
    # the lesion keeps roughly its physical volume (384 voxels of 0.96 mm^3)
    lesion = sitk.GetArrayFromImage(read(result.masks[0].mask_path)).sum()
    assert 0.7 * 384 * 0.96 < lesion < 1.3 * 384 * 0.96


def test_second_call_is_cached(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    stamps = {p: p.stat().st_mtime_ns for p in store.rglob("*.nrrd")}
    assert stamps
    second = run(one_patient, store)
    assert second.computed_files == 0
    assert second.channels == first.channels and second.masks == first.masks
    assert {p: p.stat().st_mtime_ns for p in store.rglob("*.nrrd")} == stamps


def test_a_deleted_output_is_recomputed_alone(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    Path(first.channels[2].image_path).unlink()
    again = run(one_patient, store)
    assert again.computed_files == 1 and again.channels == first.channels
    assert Path(first.channels[2].image_path).is_file()


def test_changing_a_setting_gives_new_files(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    settings = PreprocessingSettings(gaussian_sigma_mm=2.0)
    second = run(one_patient, store, settings)
    assert second.computed_files == len(CHANNELS) + 3
    first_paths = {c.image_path for c in first.channels} | {m.mask_path for m in first.masks}
    second_paths = {c.image_path for c in second.channels} | {m.mask_path for m in second.masks}
    assert first_paths.isdisjoint(second_paths)
    assert {c.settings_digest for c in second.channels} == {settings.digest()} != {PreprocessingSettings().digest()}
    assert first.channels[3].channel == second.channels[3].channel == "gaussian"
    old, new = (sitk.GetArrayFromImage(read(r.channels[3].image_path)) for r in (first, second))
    assert new.var() < old.var()  # wider Gaussian, smoother image
    assert run(one_patient, store).computed_files == 0  # the old files are still there


def test_changing_the_input_file_gives_new_files(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    one_patient.write(f"images/P001_{SEQUENCE}.nii.gz", make_image(seed=42))
    second = run(one_patient, store)
    assert second.computed_files == len(CHANNELS) + 3  # masks too: their key includes the image hash
    assert {c.image_path for c in first.channels}.isdisjoint({c.image_path for c in second.channels})
    assert {c.source_sha256 for c in second.channels} != {c.source_sha256 for c in first.channels}


def test_changing_only_a_mask_recomputes_only_that_mask(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    cord = make_mask(labels={1: (slice(3, 13), slice(4, 20), slice(4, 16))})
    one_patient.write("masks/P001_sag_T2_cord.nii.gz", cord)
    second = run(one_patient, store)
    assert second.computed_files == 1
    assert second.channels == first.channels
    assert [m.mask_path == n.mask_path for m, n in zip(first.masks, second.masks, strict=True)] == [True, False, True]


def test_channel_subset(one_patient, tmp_path):
    result = run(one_patient, tmp_path / "store", PreprocessingSettings(channels=("original", "median")))
    assert [c.channel for c in result.channels] == ["original", "median"]
    assert result.computed_files == 2 + 3


def test_unknown_channel_in_settings():
    with pytest.raises(ValueError) as caught:
        PreprocessingSettings(channels=("original", "laplacian", "wavelet"))
    assert "'original', 'mean', 'box', 'gaussian' or 'median'" in str(caught.value)
    assert "laplacian" in str(caught.value) and "wavelet" in str(caught.value)


def test_the_filter_sizes_the_papers_specify_are_study_settings():
    from cssci_platform.lib.study_config import load_config

    study = load_config("demo", ["preprocessing.gaussian_sigma_mm=2.0", "preprocessing.median_radius=2",
                                 "preprocessing.upper_percentile=99.5"])
    assert study.preprocessing.filters == ChannelSettings(gaussian_sigma_mm=2.0, median_radius=2)
    assert study.preprocessing.upper_percentile == 99.5


def test_the_digest_names_the_files_a_store_already_holds():
    # the value the settings dataclass gave before it became the study's section: stored files are found again
    assert PreprocessingSettings().digest() == "7c6ab9a6934def0f"
    assert PreprocessingSettings(spacing_mm=(2.0, 2.0, 2.0), channels=("original",)).digest() == "71c59269c148b9d8"


def test_digest_depends_on_every_setting():
    base = PreprocessingSettings()
    variants = [
        base.model_copy(update={"spacing_mm": (0.5, 0.5, 0.5)}),
        base.model_copy(update={"lower_percentile": 1.0}),
        base.model_copy(update={"upper_percentile": 99.0}),
        base.model_copy(update={"channels": ("original",)}),
        base.model_copy(update={"mean_radius": 2}),
        base.model_copy(update={"box_radius": 3}),
        base.model_copy(update={"gaussian_sigma_mm": 2.0}),
        base.model_copy(update={"median_radius": 2}),
    ]
    digests = {base.digest()} | {v.digest() for v in variants}
    assert len(digests) == len(variants) + 1
    assert PreprocessingSettings().digest() == base.digest()


def test_gaussian_channel_stays_in_unit_range_at_a_sharp_edge(tiny_cohort, tmp_path):
    cohort = tiny_cohort([base_row("P001")])
    step = np.zeros((16, 24, 20), np.float32)
    step[LESION_BOX] = 1000.0
    cohort.write(f"images/P001_{SEQUENCE}.nii.gz", from_array(step, spacing=(1.0, 1.0, 1.0)))
    cohort.write(f"masks/P001_{SEQUENCE}_lesion.nii.gz", make_mask(spacing=(1.0, 1.0, 1.0)))
    result = run(cohort, tmp_path / "store", PreprocessingSettings(channels=("gaussian",)))
    values = sitk.GetArrayFromImage(read(result.channels[0].image_path))
    assert values.min() >= 0.0 and values.max() <= 1.0


def test_a_corrupted_channel_file_is_recomputed_not_used(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    damaged = Path(first.channels[1].image_path)
    good_bytes = damaged.read_bytes()
    raw = bytearray(good_bytes)
    raw[-20] ^= 0xFF
    damaged.write_bytes(bytes(raw))
    again = run(one_patient, store)
    assert again.computed_files == 1
    assert Path(again.channels[1].image_path).read_bytes() == good_bytes


def test_a_half_written_channel_file_is_recomputed_not_used(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    partial = Path(first.masks[0].mask_path)
    partial.write_bytes(partial.read_bytes()[: partial.stat().st_size // 2])
    again = run(one_patient, store)
    assert again.computed_files == 1
    assert set(np.unique(sitk.GetArrayFromImage(read(again.masks[0].mask_path)))) == {0, 1}


def test_a_channel_symlinked_out_of_the_store_is_not_read(one_patient, tmp_path):
    store = tmp_path / "store"
    first = run(one_patient, store)
    outside = tmp_path / "outside.nrrd"
    linked = Path(first.channels[0].image_path)
    outside.write_bytes(linked.read_bytes())
    linked.unlink()
    linked.symlink_to(outside)
    again = run(one_patient, store)
    assert again.computed_files == 1
    assert all(not Path(c.image_path).is_symlink() for c in again.channels)
    assert all(Path(c.image_path).resolve().is_relative_to(store.resolve()) for c in again.channels)


def test_two_homes_preprocessing_at_once_share_one_valid_copy(one_patient, tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    store = tmp_path / "store"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(run, [one_patient, one_patient], [store, store]))
    assert results[0].channels == results[1].channels and results[0].masks == results[1].masks
    assert run(one_patient, store).computed_files == 0  # every entry the two wrote is valid
