"""ROI slice selection, DL rectangle, resize and normalisation on a tiny volume with a known lesion."""

from __future__ import annotations

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from cssci_platform.lib.deep import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    RoiSliceError,
    RoiSliceSettings,
    cut_roi_slice,
    network_batch,
    plan_roi_crop,
    roi_slice,
)

SHAPE = (40, 30, 9)  # numpy (z, y, x); sagittal slices are x indices
SPACING = (1.0, 0.5, 2.0)  # SimpleITK (x, y, z) in mm
# Lesion per sagittal slice x: (z rows, y columns). Slice 4 is the largest (10 x 8 = 80 px).
LESION = {3: (slice(12, 18), slice(10, 14)), 4: (slice(10, 20), slice(8, 16)), 5: (slice(11, 19), slice(9, 15))}
NO_MARGIN = RoiSliceSettings(margin=0)


def volume(array: np.ndarray, spacing=SPACING) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    return image


def lesion_mask(lesion: dict = LESION) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    for x, (rows, cols) in lesion.items():
        mask[rows, cols, x] = 1
    return mask


def channel_image() -> np.ndarray:
    """Every voxel value encodes its own (z, y, x) index, scaled into [0, 1]."""
    z, y, x = np.indices(SHAPE)
    return ((z * 1000 + y * 10 + x) / 40_000).astype(np.float32)


def test_largest_sagittal_slice_and_its_lesion_box():
    crop = plan_roi_crop(volume(lesion_mask()), NO_MARGIN)
    assert (crop.axis, crop.slice_index, crop.roi_area_px) == ("sagittal", 4, 80)
    assert (crop.box.row_start, crop.box.row_stop, crop.box.col_start, crop.box.col_stop) == (10, 20, 8, 16)
    assert crop.slice_shape == (40, 30)
    assert crop.as_row()["slice_index"] == 4 and crop.as_row()["col_stop"] == 16


def test_crop_holds_the_right_pixels_in_index_order():
    settings = RoiSliceSettings(margin=0, output_size=(10, 8))  # same size: the resize is the identity
    result = roi_slice(volume(channel_image()), volume(lesion_mask()), settings)
    np.testing.assert_allclose(result.pixels, channel_image()[10:20, 8:16, 4], rtol=1e-6)


def test_margin_in_mm_follows_the_spacing_of_each_slice_axis():
    # sagittal rows are z (2 mm), columns y (0.5 mm): 4 mm = 2 rows and 8 columns
    crop = plan_roi_crop(volume(lesion_mask()), RoiSliceSettings(margin=4.0))
    assert (crop.box.row_start, crop.box.row_stop, crop.box.col_start, crop.box.col_stop) == (8, 22, 0, 24)
    pixels = plan_roi_crop(volume(lesion_mask()), RoiSliceSettings(margin=3, margin_unit="px"))
    assert (pixels.box.row_start, pixels.box.col_start) == (7, 5)


def test_ties_go_to_the_middle_slice():
    equal = {x: (slice(10, 14), slice(5, 9)) for x in (2, 3, 4)}
    assert plan_roi_crop(lesion_mask(equal), NO_MARGIN).slice_index == 3
    assert plan_roi_crop(lesion_mask({6: equal[2], 7: equal[2]}), NO_MARGIN).slice_index == 6


def test_slicing_axis_is_a_parameter():
    # per-z areas: z 12..17 get 8 + 4 + 6 = 18 pixels (the maximum, six tied slices -> z 14)
    crop = plan_roi_crop(lesion_mask(), RoiSliceSettings(axis="axial", margin=0))
    assert (crop.slice_index, crop.roi_area_px) == (14, 18)
    assert (crop.box.row_start, crop.box.row_stop, crop.box.col_start, crop.box.col_stop) == (8, 16, 3, 6)


def test_rectangle_from_a_separate_mask():
    rect = np.zeros(SHAPE, np.uint8)
    rect[8:22, 6:18, 3:6] = 1
    crop = plan_roi_crop(lesion_mask(), RoiSliceSettings(rectangle="rect_mask", margin=0), rect_mask=rect)
    box = crop.box
    assert (crop.slice_index, box.row_start, box.row_stop, box.col_start, box.col_stop) == (4, 8, 22, 6, 18)


def test_lesion_widened_to_the_canal_but_not_beyond_the_lesion_rows():
    canal = np.zeros(SHAPE, np.uint8)
    canal[:, 5:21, :] = 1  # the canal runs the whole height of the volume
    canal[15, 2:25, 4] = 1  # a wider canal at one row inside the lesion's rows
    canal[30, 0:30, 4] = 1  # and outside them: must not widen the box
    crop = plan_roi_crop(lesion_mask(), RoiSliceSettings(rectangle="lesion_to_canal", margin=0), canal_mask=canal)
    assert (crop.box.row_start, crop.box.row_stop, crop.box.col_start, crop.box.col_stop) == (10, 20, 2, 25)


def test_network_input_is_three_channel_imagenet_normalised():
    result = roi_slice(volume(channel_image()), volume(lesion_mask()), RoiSliceSettings(margin=1, margin_unit="px"))
    tensor = result.network_input()
    assert result.pixels.shape == (224, 224) and tensor.shape == (3, 224, 224) and tensor.dtype == torch.float32
    for channel in range(3):
        expected = (result.pixels - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel]
        np.testing.assert_allclose(tensor[channel].numpy(), expected, rtol=1e-5, atol=1e-6)
    assert network_batch([result, result]).shape == (2, 3, 224, 224)


def test_every_channel_gets_the_same_planned_crop():
    crop = plan_roi_crop(volume(lesion_mask()), NO_MARGIN)
    first = cut_roi_slice(volume(channel_image()), crop, NO_MARGIN)
    second = cut_roi_slice(volume(1.0 - channel_image()), crop, NO_MARGIN)
    assert first.crop == second.crop
    np.testing.assert_allclose(first.pixels + second.pixels, 1.0, atol=1e-5)


def raises(code: str, call, *args, **kwargs) -> RoiSliceError:
    with pytest.raises(RoiSliceError) as caught:
        call(*args, **kwargs)
    assert caught.value.code == code
    assert caught.value.fix and caught.value.message
    return caught.value


def test_empty_roi_on_every_slice():
    error = raises("roi_empty", plan_roi_crop, volume(np.zeros(SHAPE, np.uint8)))
    assert "sagittal" in error.message and "segmentation" in error.fix
    raises("roi_empty", plan_roi_crop, lesion_mask(), RoiSliceSettings(mask_label=2))


def test_crop_leaving_the_slice_is_an_error_when_clipping_is_switched_off():
    near_edge = lesion_mask({4: (slice(1, 6), slice(20, 28))})
    error = raises("crop_outside_slice", plan_roi_crop, near_edge,
                   RoiSliceSettings(margin=2, margin_unit="px", clip_to_slice=False))
    assert "rows -1:8" in error.message and "clip_to_slice" in error.fix


def test_slice_smaller_than_the_crop_when_clipping_is_switched_off():
    error = raises("slice_smaller_than_crop", plan_roi_crop, lesion_mask(),
                   RoiSliceSettings(margin=20, margin_unit="px", clip_to_slice=False))
    assert "50 x 48" in error.message and "40 x 30" in error.message and "clip_to_slice" in error.fix


def test_wrong_dimensions_and_mismatched_grids():
    raises("wrong_dimensions", plan_roi_crop, lesion_mask()[:, :, 4])
    raises("wrong_dimensions", plan_roi_crop, lesion_mask()[None])
    vector = sitk.Compose([volume(lesion_mask())] * 2)
    raises("wrong_dimensions", plan_roi_crop, vector)
    crop = plan_roi_crop(lesion_mask(), NO_MARGIN)
    raises("shape_mismatch", cut_roi_slice, channel_image()[:, :, :8], crop)
    raises("shape_mismatch", plan_roi_crop, lesion_mask(), NO_MARGIN, canal_mask=np.zeros((2, 2, 2)))


def test_missing_or_empty_rectangle_and_canal_masks():
    raises("rect_roi_missing", plan_roi_crop, lesion_mask(), RoiSliceSettings(rectangle="rect_mask"))
    rect_elsewhere = np.zeros(SHAPE, np.uint8)
    rect_elsewhere[:, :, 0] = 1
    raises("rect_roi_empty", plan_roi_crop, lesion_mask(), RoiSliceSettings(rectangle="rect_mask"),
           rect_mask=rect_elsewhere)
    raises("canal_roi_missing", plan_roi_crop, lesion_mask(), RoiSliceSettings(rectangle="lesion_to_canal"))
    canal_elsewhere = np.zeros(SHAPE, np.uint8)
    canal_elsewhere[30:35, :, :] = 1
    raises("canal_roi_empty", plan_roi_crop, lesion_mask(), RoiSliceSettings(rectangle="lesion_to_canal", margin=0),
           canal_mask=canal_elsewhere)


def test_non_finite_pixels_in_the_crop():
    image = channel_image()
    image[15, 10, 4] = np.nan
    raises("nonfinite_pixels", roi_slice, image, lesion_mask(), NO_MARGIN)


def test_invalid_settings_are_rejected():
    with pytest.raises(ValueError, match="slice axis"):
        RoiSliceSettings(axis="oblique")
    with pytest.raises(ValueError, match="margin"):
        RoiSliceSettings(margin=-1)


# --- An ROI at the edge of the image: clipped by default, the clipped pixels recorded per side -------------

def test_default_settings_clip_a_crop_that_leaves_the_slice_and_record_each_side():
    near_edge = lesion_mask({4: (slice(1, 6), slice(20, 28))})  # rows 1:6, columns 20:28 of a 40 x 30 slice
    crop = plan_roi_crop(near_edge, RoiSliceSettings(margin=2, margin_unit="px"))
    assert (crop.box.row_start, crop.box.row_stop, crop.box.col_start, crop.box.col_stop) == (0, 8, 18, 30)
    assert crop.clipped_px == (1, 0, 0, 0)  # (row_start, row_stop, col_start, col_stop) sides
    assert crop.as_row()["clipped_px"] == [1, 0, 0, 0]


def test_a_crop_larger_than_the_slice_is_clipped_to_the_whole_slice_by_default():
    crop = plan_roi_crop(lesion_mask(), RoiSliceSettings(margin=20, margin_unit="px"))  # lesion rows 10:20, cols 8:16
    assert (crop.box.row_start, crop.box.row_stop, crop.box.col_start, crop.box.col_stop) == (0, 40, 0, 30)
    assert crop.clipped_px == (10, 0, 12, 6)


def test_a_crop_inside_the_slice_clips_nothing():
    assert plan_roi_crop(lesion_mask(), RoiSliceSettings(margin=2, margin_unit="px")).clipped_px == (0, 0, 0, 0)


# --- "Sagittal" is the patient's sagittal plane, whatever the file's axis order -------------------------------

PATIENT_AXES = {"left_right": 0, "posterior_anterior": 1, "inferior_superior": 2}  # LPS physical coordinates


def physical_coordinate_image(reference: sitk.Image, patient_axis: str) -> sitk.Image:
    """An image on `reference`'s grid whose every voxel holds its own physical coordinate along `patient_axis`."""
    size = reference.GetSize()
    index = np.stack(np.meshgrid(*[np.arange(n) for n in size], indexing="ij"), axis=-1).reshape(-1, 3)
    direction = np.asarray(reference.GetDirection()).reshape(3, 3)
    points = np.asarray(reference.GetOrigin()) + (index * np.asarray(reference.GetSpacing())) @ direction.T
    values = points[:, PATIENT_AXES[patient_axis]].reshape(size).transpose(2, 1, 0)  # (x, y, z) -> (z, y, x)
    image = sitk.GetImageFromArray(values.astype(np.float32))
    image.CopyInformation(reference)
    return image


def axes_permuted(image: sitk.Image) -> sitk.Image:
    """The same physical volume stored with its index axes permuted and one flipped (a PSR-like direction)."""
    return sitk.Flip(sitk.PermuteAxes(image, (2, 0, 1)), (False, True, False))


def asymmetric_phantom() -> sitk.Image:
    """A lesion whose largest sagittal (constant x) section is at x = 11, distinct from its coronal and axial ones."""
    mask = np.zeros((20, 24, 28), np.uint8)  # (z, y, x), identity direction: x = L, y = P, z = S
    mask[4:16, 6:12, 9:14] = 1
    mask[2:18, 5:14, 11] = 1
    image = sitk.GetImageFromArray(mask)
    image.SetOrigin((-13.0, 4.0, 30.0))
    return image


def test_sagittal_slice_of_an_axes_permuted_phantom_is_the_patient_sagittal_plane():
    lesion = asymmetric_phantom()
    rotated = axes_permuted(lesion)
    assert rotated.GetDirection() != lesion.GetDirection() and rotated.GetSize() == (20, 28, 24)
    settings = RoiSliceSettings(margin=0, output_size=(16, 9))  # the crop's own size: no resampling
    for mask in (lesion, rotated):
        left_right = roi_slice(physical_coordinate_image(mask, "left_right"), mask, settings).pixels
        assert np.ptp(left_right) == 0 and left_right[0, 0] == -13.0 + 11  # one L-R position: sagittal
        superior = roi_slice(physical_coordinate_image(mask, "inferior_superior"), mask, settings).pixels
        posterior = roi_slice(physical_coordinate_image(mask, "posterior_anterior"), mask, settings).pixels
        np.testing.assert_array_equal(superior[:, 0], 30.0 + np.arange(2, 18))  # rows run inferior -> superior
        np.testing.assert_array_equal(posterior[0], 4.0 + np.arange(5, 14))  # columns run anterior -> posterior


def test_coronal_and_axial_slices_of_the_permuted_phantom_follow_the_patient_axes_too():
    rotated = axes_permuted(asymmetric_phantom())
    for axis, constant_axis in (("coronal", "posterior_anterior"), ("axial", "inferior_superior")):
        pixels = roi_slice(physical_coordinate_image(rotated, constant_axis), rotated,
                           RoiSliceSettings(axis=axis, margin=0)).pixels
        assert np.ptp(pixels) < 1e-4, axis


def test_real_cord_t2_sagittal_slice_is_the_patient_sagittal_plane_and_the_cord_is_clipped():
    from cssci_platform.lib.imaging import resample_mask_onto, resample_to_spacing
    from cssci_platform_tests.refdata import refdata_root

    folder = refdata_root() / "spinal_cord_sct" / "t2"
    image = resample_to_spacing(sitk.ReadImage(str(folder / "t2.nii.gz")), (1.0, 1.0, 1.0))
    cord = resample_mask_onto(sitk.ReadImage(str(folder / "t2_seg-manual.nii.gz")), image)
    assert sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == "PSR"
    crop = plan_roi_crop(cord, RoiSliceSettings())  # shipped defaults: sagittal, 5 mm margin
    assert crop.slice_shape == (55, 60)  # rows: the 55 mm supero-inferior field of view; columns: 60 mm A-P
    assert (crop.box.row_start, crop.box.row_stop) == (0, 55) and crop.clipped_px[:2] == (5, 5)
    left_right = cut_roi_slice(physical_coordinate_image(image, "left_right"), crop).pixels
    assert np.ptp(left_right) < 1e-3  # one L-R position: the sagittal plane in patient space


def rotated_about_the_body_axis(image: sitk.Image, degrees: float) -> sitk.Image:
    """The same voxels with direction cosines turned `degrees` about the inferior-superior axis (an oblique scan)."""
    angle = np.radians(degrees)
    turned = sitk.Image(image)
    turned.SetDirection((np.cos(angle), -np.sin(angle), 0.0, np.sin(angle), np.cos(angle), 0.0, 0.0, 0.0, 1.0))
    return turned


def test_an_oblique_scan_gets_the_nearest_plane_and_its_angle_off_that_plane():
    phantom = asymmetric_phantom()
    assert plan_roi_crop(phantom, NO_MARGIN).obliquity_deg == 0.0
    assert plan_roi_crop(axes_permuted(phantom), NO_MARGIN).obliquity_deg == 0.0
    oblique = plan_roi_crop(rotated_about_the_body_axis(phantom, 30.0), NO_MARGIN)
    assert oblique.obliquity_deg == pytest.approx(30.0) and oblique.slice_index == 11
    axial = plan_roi_crop(rotated_about_the_body_axis(phantom, 30.0), RoiSliceSettings(axis="axial", margin=0))
    assert axial.obliquity_deg == pytest.approx(0.0, abs=1e-6)  # the turn is about the axial plane's own normal


def test_the_resize_matches_torchs_antialiased_bilinear_without_loading_torch() -> None:
    """Cutting a slice (the patient step roi_slices) needs no torch (issue 18, memory); the resize is Pillow's
    bilinear filter, which is what torch's `interpolate(mode="bilinear", antialias=True)` reproduces, so the network
    input is the same to float32 rounding. torch is the independent reference here."""
    import subprocess
    import sys

    import torch
    import torch.nn.functional as F

    from cssci_platform.lib.deep.roi_slices import resize

    rng = np.random.default_rng(3)
    for shape in [(37, 51), (300, 260), (224, 224), (12, 90), (500, 31)]:  # down, up, same, and mixed per axis
        patch = rng.random(shape).astype(np.float32) * 1000
        reference = F.interpolate(torch.from_numpy(patch)[None, None], size=(224, 200), mode="bilinear",
                                  align_corners=False, antialias=True)[0, 0].numpy()
        np.testing.assert_allclose(resize(patch, (224, 200)), reference, rtol=0, atol=1e-6 * 1000 * 20)
    code = ("import sys, numpy as np\nfrom cssci_platform.lib.deep.roi_slices import roi_slice\n"
            "volume = np.zeros((5, 20, 20), np.float32); volume[2, 5:12, 6:14] = 1\n"
            "roi_slice(volume, volume)\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
