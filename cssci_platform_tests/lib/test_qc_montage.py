"""The QC montage shows where the masks are: a shifted mask moves its contour, and the contour then encloses
other tissue; the PNG keeps the contour colours exact and stays small."""

import io
from pathlib import Path

import numpy as np
import polars as pl
import SimpleITK as sitk
from PIL import Image

from cssci_platform.lib.deep.roi_slices import CropBox
from cssci_platform.lib.qc_montage import (
    PANEL_PX,
    ROI_COLOURS,
    DlRectangle,
    draw_sequence_row,
    lps_array,
    montage_png,
    patient_montage,
    png_markdown,
    roi_colour,
    write_montage,
)
from cssci_platform_tests.refdata import refdata_root

SHAPE = (60, 40, 30)  # (z, y, x): sagittal slices are 60 x 40 pixels
LESION_CENTRE = (30, 20, 15)
RED = ROI_COLOURS["lesion"]


def _phantom() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A dim volume with a bright lesion (an ellipsoid), its exact mask, and a cord mask around it."""
    z, y, x = np.indices(SHAPE)
    cz, cy, cx = LESION_CENTRE
    lesion = ((z - cz) / 6) ** 2 + ((y - cy) / 3) ** 2 + ((x - cx) / 3) ** 2 <= 1
    volume = np.where(lesion, 1.0, 0.15).astype(np.float32) + np.random.default_rng(0).normal(0, 0.01, SHAPE)
    cord = (np.abs(y - LESION_CENTRE[1]) <= 5) & (np.abs(x - LESION_CENTRE[2]) <= 5)
    return volume.astype(np.float32), lesion, cord


def _shifted(mask: np.ndarray, voxels: int) -> np.ndarray:
    """The mask moved `voxels` along y (anterior -> posterior: the columns of a sagittal slice)."""
    return np.roll(mask, voxels, axis=1)


def _red(panel: np.ndarray) -> np.ndarray:
    return np.all(panel == RED, axis=-1)


def _row(volume: np.ndarray, lesion: np.ndarray, cord: np.ndarray):
    return draw_sequence_row("sag_T2", "sagittal", {"original": volume, "gaussian": volume},
                             {"lesion": lesion, "cord": cord}, "lesion")


def _inside_contour_grey(panel: np.ndarray) -> float:
    """Mean grey of the pixels between the leftmost and rightmost lesion-contour pixel of each row."""
    red = _red(panel)
    values = []
    for row in np.flatnonzero(red.any(axis=1)):
        columns = np.flatnonzero(red[row])
        between = np.arange(columns[0], columns[-1] + 1)
        values.extend(panel[row, c, 0] for c in between if not red[row, c])
    return float(np.mean(values))


def test_a_shifted_mask_moves_its_contour_by_the_shift_in_the_whole_slice() -> None:
    volume, lesion, cord = _phantom()
    right, wrong = _row(volume, lesion, cord), _row(volume, _shifted(lesion, 8), cord)
    scale = PANEL_PX / max(SHAPE[0], SHAPE[1])
    right_columns = np.flatnonzero(_red(right.panels[0][1]).any(axis=0))
    wrong_columns = np.flatnonzero(_red(wrong.panels[0][1]).any(axis=0))
    moved = wrong_columns.mean() - right_columns.mean()
    assert abs(moved - 8 * scale) <= 2, moved
    assert not np.array_equal(_red(right.panels[0][1]), _red(wrong.panels[0][1]))


def test_in_the_zoom_a_right_mask_encloses_the_bright_lesion_and_a_shifted_one_does_not() -> None:
    volume, lesion, cord = _phantom()
    right, wrong = _row(volume, lesion, cord), _row(volume, _shifted(lesion, 8), cord)
    assert right.panels[1][0] == "zoom"
    assert _inside_contour_grey(right.panels[1][1]) > 200
    assert _inside_contour_grey(wrong.panels[1][1]) < 80


def test_the_slice_shown_is_the_largest_lesion_slice_and_channels_follow() -> None:
    volume, lesion, cord = _phantom()
    row = _row(volume, lesion, cord)
    assert row.slice_index == LESION_CENTRE[2]
    assert [label for label, _ in row.panels] == ["contours", "zoom", "original", "gaussian"]
    assert row.note == ""


def test_without_a_lesion_mask_the_middle_slice_is_shown_and_the_row_says_so() -> None:
    volume, _, cord = _phantom()
    row = draw_sequence_row("sag_T1", "sagittal", {"original": volume}, {"cord": cord}, "lesion")
    assert row.slice_index == SHAPE[2] // 2
    assert "no lesion mask" in row.note


def test_the_dl_rectangle_is_drawn_where_the_crop_was_cut() -> None:
    volume, lesion, cord = _phantom()
    box = CropBox(20, 40, 10, 30)  # LPS rows (inferior first): shown flipped, superior up
    rectangle = DlRectangle("sag_T2", "sagittal", LESION_CENTRE[2], box)
    row = draw_sequence_row("sag_T2", "sagittal", {"original": volume}, {"lesion": lesion}, "lesion", rectangle)
    yellow = np.all(row.panels[0][1] == (255, 215, 0), axis=-1)
    scale = PANEL_PX / max(SHAPE[0], SHAPE[1])
    rows, columns = np.flatnonzero(yellow.any(axis=1)), np.flatnonzero(yellow.any(axis=0))
    assert abs(rows[0] - (SHAPE[0] - 40) * scale) <= 1 and abs(rows[-1] + 1 - (SHAPE[0] - 20) * scale) <= 1
    assert abs(columns[0] - 10 * scale) <= 1 and abs(columns[-1] + 1 - 30 * scale) <= 1


def _write(array: np.ndarray, path: Path, flip_x: bool = False) -> Path:
    """`array` (z, y, x in LPS) as a file; `flip_x`: stored right-left flipped with a direction saying so."""
    image = sitk.GetImageFromArray(array[:, :, ::-1] if flip_x else array)
    if flip_x:
        image.SetDirection((-1, 0, 0, 0, 1, 0, 0, 0, 1))
    sitk.WriteImage(image, str(path))
    return path


def _patient_frames(folder: Path, flip_x: bool = False) -> tuple[pl.DataFrame, pl.DataFrame]:
    volume, lesion, cord = _phantom()
    channels = [{"sequence": s, "channel": c, "image_path": str(_write(volume, folder / f"{s}_{c}.nrrd", flip_x))}
                for s in ("sag_T1", "sag_T2") for c in ("original", "mean", "box", "gaussian", "median")]
    masks = [{"sequence": s, "roi": roi, "segmentation": "primary",
              "mask_path": str(_write(mask.astype(np.uint8), folder / f"{s}_{roi}.nrrd", flip_x))}
             for s in ("sag_T1", "sag_T2") for roi, mask in (("lesion", lesion), ("cord", cord))]
    return pl.DataFrame(channels), pl.DataFrame(masks)


def test_a_patient_montage_from_files_is_a_small_png_with_exact_contour_colours(tmp_path: Path) -> None:
    channels, masks = _patient_frames(tmp_path)
    png = montage_png(patient_montage("P-1", channels, masks, "lesion"))
    assert len(png) < 150_000
    decoded = np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))
    assert _red(decoded).sum() > 50 and np.all(decoded == ROI_COLOURS["cord"], axis=-1).sum() > 50
    assert png_markdown(png).startswith("![QC montage](data:image/png;base64,")
    assert write_montage(tmp_path / "qc_montages", "P-1", png).read_bytes() == png


def test_a_volume_stored_in_another_orientation_is_shown_the_same_way(tmp_path: Path) -> None:
    (tmp_path / "lps").mkdir(), (tmp_path / "flipped").mkdir()
    lps = patient_montage("P-1", *_patient_frames(tmp_path / "lps"), "lesion")
    flipped = patient_montage("P-1", *_patient_frames(tmp_path / "flipped", flip_x=True), "lesion")
    assert np.array_equal(lps, flipped)


def test_on_a_real_cervical_t2_the_montage_shows_superior_up() -> None:
    """The Spinal Cord Toolbox T2 (stored PSR) with its cord labelled by vertebral level: C2 is drawn above C5."""
    folder = refdata_root() / "spinal_cord_sct" / "t2"
    image = lps_array(sitk.ReadImage(str(folder / "t2.nii.gz")))
    levels = lps_array(sitk.ReadImage(str(folder / "t2_seg-manual_labeled.nii.gz")))
    rois = {"cord": levels > 0, "C2": levels == 2, "C5": levels == 5}
    row = draw_sequence_row("T2", "sagittal", {"original": image}, rois, "cord")
    panel = row.panels[0][1]

    def mean_row(roi: str) -> float:
        drawn = np.all(panel == roi_colour(roi, list(rois)), axis=-1)
        assert drawn.sum() > 20, roi
        return float(np.flatnonzero(drawn.any(axis=1)).mean())

    assert mean_row("C2") < mean_row("C5") - 50  # rows grow downwards: C2 (superior) sits well above C5
