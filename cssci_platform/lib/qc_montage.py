"""One patient's QC montage: what the pipeline cut, drawn so a radiologist can judge the masks at a glance.

One row per sequence: the slice with the largest lesion area (the slice the network input is cut from), shown
whole with every ROI's contour (lesion red, cord green, a drawn DL rectangle ROI blue, other ROIs in further
colours) and the DL rectangle the network sees (yellow box, on the sequence the ROI slices were cut from); the
same contours on a zoom around the lesion; then each preprocessed channel of that slice. Slices are shown as a
radiologist reads them: superior up on sagittal and coronal slices, anterior up on axial ones, anterior left on
sagittal ones and the patient's right on the image's left otherwise (the volumes are reoriented to LPS first).

A sequence without a lesion mask (or with an empty one) is shown at its middle slice, and the row says so.
The PNG is palette-quantized to stay small enough for Dagster metadata (about 50-120 kB for two sequences).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import SimpleITK as sitk
from PIL import Image, ImageDraw

from cssci_platform.lib.deep.patient_slices import PRIMARY, axis_named_in
from cssci_platform.lib.deep.roi_slices import NUMPY_AXIS, CropBox, SliceAxis, reoriented_to_lps

FOLDER = "qc_montages"  # image_store.folder(FOLDER) / f"{patient_key}.png"
PANEL_PX = 180  # the longer side of every panel
ZOOM_MARGIN_PX = 12  # voxels shown around the lesion's box in the zoom panel
DL_BOX_COLOUR = (255, 215, 0)
ROI_COLOURS: dict[str, tuple[int, int, int]] = {"lesion": (255, 0, 0), "cord": (0, 220, 0), "dl_rect": (40, 120, 255)}
OTHER_COLOURS = [(255, 0, 255), (0, 230, 230), (255, 140, 0), (160, 90, 255)]
TEXT_COLOUR, BACKGROUND = (235, 235, 235), (0, 0, 0)
TITLE_PX, LABEL_PX = 16, 14


@dataclass(frozen=True)
class DlRectangle:
    """Where the network input was cut: the `roi_slices` row's sequence, plane, slice and crop box."""

    sequence: str
    axis: SliceAxis
    slice_index: int
    box: CropBox


@dataclass(frozen=True)
class SequenceVolumes:
    """One sequence's preprocessed files: channel -> image, ROI -> primary mask (same grid)."""

    sequence: str
    axis: SliceAxis
    channels: Mapping[str, Path]
    masks: Mapping[str, Path] = field(default_factory=dict)


@dataclass(frozen=True)
class SequenceRow:
    """The panels of one sequence, ready to compose; `slice_index` in the LPS-ordered volume."""

    sequence: str
    axis: SliceAxis
    slice_index: int
    note: str
    panels: list[tuple[str, np.ndarray]]  # (label, RGB uint8 array)


def roi_colour(roi: str, rois: Sequence[str]) -> tuple[int, int, int]:
    """The contour colour of an ROI: fixed for lesion / cord / dl_rect, the others in order of `rois`."""
    if roi in ROI_COLOURS:
        return ROI_COLOURS[roi]
    others = [r for r in sorted(rois) if r not in ROI_COLOURS]
    return OTHER_COLOURS[others.index(roi) % len(OTHER_COLOURS)] if roi in others else OTHER_COLOURS[0]


def lps_array(image: sitk.Image) -> np.ndarray:
    """The voxels as a (z, y, x) array in LPS order (see `lib.deep.roi_slices`)."""
    return sitk.GetArrayFromImage(reoriented_to_lps(image))


def largest_roi_slice(mask: np.ndarray | None, axis: SliceAxis) -> int | None:
    """The slice with the largest ROI area along `axis` (ties: the middle one, as `plan_roi_crop` chooses), or
    None for a missing or empty mask."""
    if mask is None or not mask.any():
        return None
    numpy_axis = NUMPY_AXIS[axis]
    areas = mask.sum(axis=tuple(a for a in range(3) if a != numpy_axis))
    tied = np.flatnonzero(areas == areas.max())
    return int(tied[(len(tied) - 1) // 2])


def sequence_row(volumes: SequenceVolumes, target_roi: str, mask_label: int = 1,
                 dl_rectangle: DlRectangle | None = None) -> SequenceRow:
    """Read one sequence's channels and masks and draw its panels."""
    channels = {name: lps_array(sitk.ReadImage(str(path))) for name, path in volumes.channels.items()}
    masks = {roi: lps_array(sitk.ReadImage(str(path))) == mask_label for roi, path in volumes.masks.items()}
    return draw_sequence_row(volumes.sequence, volumes.axis, channels, masks, target_roi, dl_rectangle)


def draw_sequence_row(sequence: str, axis: SliceAxis, channels: Mapping[str, np.ndarray],
                      masks: Mapping[str, np.ndarray], target_roi: str,
                      dl_rectangle: DlRectangle | None = None) -> SequenceRow:
    """The panels of one sequence from (z, y, x) LPS arrays: channels by name (the first is shown with the
    contours), boolean masks by ROI. The slice is the DL rectangle's where it belongs to this sequence, else the
    largest `target_roi` slice, else the middle one."""
    first = next(iter(channels.values()))
    rectangle = dl_rectangle if dl_rectangle and dl_rectangle.sequence == sequence and \
        dl_rectangle.axis == axis else None
    found = largest_roi_slice(masks.get(target_roi), axis)
    index = rectangle.slice_index if rectangle else found
    note = "" if found is not None else f"no {target_roi} mask: middle slice"
    if index is None:
        index = first.shape[NUMPY_AXIS[axis]] // 2
    flip = axis != "axial"
    planes = {name: _plane(volume, axis, index, flip) for name, volume in channels.items()}
    outlines = {roi: _plane(mask, axis, index, flip) for roi, mask in masks.items()}
    box = _flipped_box(rectangle.box, first.shape, axis) if rectangle else None
    base = next(iter(planes.values()))
    zoom = _zoom_window(outlines.get(target_roi), box, base.shape)
    rois = list(outlines)
    whole = _annotated(base, outlines, rois, box, None)
    zoomed = _annotated(base, outlines, rois, box, zoom)
    panels = [("contours", whole), ("zoom", zoomed)]
    panels += [(name, _scaled(_grey(plane), None)) for name, plane in planes.items()]
    return SequenceRow(sequence, axis, index, note, panels)


def compose_montage(patient_key: str, rows: Sequence[SequenceRow], rois: Sequence[str]) -> np.ndarray:
    """The rows under a title line naming the patient and the contour colours: one RGB uint8 array."""
    width = max([sum(p.shape[1] + 4 for _, p in row.panels) for row in rows] + [PANEL_PX * 3])
    heights = [2 * LABEL_PX + max(p.shape[0] for _, p in row.panels) + 6 for row in rows]
    canvas = Image.new("RGB", (width + 4, TITLE_PX + 4 + sum(heights)), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    x = 2
    for text, colour in [(f"{patient_key}   contours:", TEXT_COLOUR), *((r, roi_colour(r, rois)) for r in rois),
                         ("DL rectangle", DL_BOX_COLOUR)]:
        draw.text((x, 2), text, fill=colour)
        x += int(draw.textlength(text)) + 10
    top = TITLE_PX + 4
    for row, height in zip(rows, heights):
        header = f"{row.sequence}: {row.axis} slice {row.slice_index}" + (f" ({row.note})" if row.note else "")
        draw.text((2, top), header, fill=TEXT_COLOUR)
        left = 2
        for label, panel in row.panels:
            draw.text((left, top + LABEL_PX), label, fill=TEXT_COLOUR)
            canvas.paste(Image.fromarray(panel), (left, top + 2 * LABEL_PX))
            left += panel.shape[1] + 4
        top += height
    return np.asarray(canvas)


def montage_png(image: np.ndarray) -> bytes:
    """The montage as a palette PNG: 128 greys plus the exact contour and text colours (no dithering)."""
    colours = [BACKGROUND, TEXT_COLOUR, DL_BOX_COLOUR, *ROI_COLOURS.values(), *OTHER_COLOURS]
    greys = [(g, g, g) for g in np.linspace(0, 255, 256 - len(colours)).astype(int)]
    palette = Image.new("P", (1, 1))
    palette.putpalette([channel for colour in [*colours, *greys] for channel in colour])
    buffer = io.BytesIO()
    Image.fromarray(image).quantize(palette=palette, dither=Image.Dither.NONE).save(buffer, "PNG", optimize=True)
    return buffer.getvalue()


def png_markdown(png: bytes, alt: str = "QC montage") -> str:
    """An inline image for Dagster's markdown metadata."""
    return f"![{alt}](data:image/png;base64,{base64.b64encode(png).decode('ascii')})"


def write_montage(folder: Path, patient_key: str, png: bytes) -> Path:
    """`folder / <patient_key>.png`, written atomically."""
    path = folder / f"{patient_key}.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp.png")
    temporary.write_bytes(png)
    temporary.replace(path)
    return path


def _plane(volume: np.ndarray, axis: SliceAxis, index: int, flip: bool) -> np.ndarray:
    plane = np.take(volume, index, axis=NUMPY_AXIS[axis])
    return plane[::-1] if flip else plane  # rows run inferior -> superior in LPS: superior up for display


def _flipped_box(box: CropBox, shape: tuple[int, ...], axis: SliceAxis) -> CropBox:
    """The crop box in display rows (flipped like the plane for sagittal and coronal slices)."""
    if axis == "axial":
        return box
    rows = [s for a, s in enumerate(shape) if a != NUMPY_AXIS[axis]][0]
    return CropBox(rows - box.row_stop, rows - box.row_start, box.col_start, box.col_stop)


def _zoom_window(mask: np.ndarray | None, box: CropBox | None, shape: tuple[int, int]) -> CropBox:
    """A square window around the lesion (and the DL box), clipped to the slice; the whole slice without one."""
    boxes = [b for b in (_bounding_box(mask) if mask is not None else None, box) if b is not None]
    if not boxes:
        return CropBox(0, shape[0], 0, shape[1])
    rows = (min(b.row_start for b in boxes), max(b.row_stop for b in boxes))
    cols = (min(b.col_start for b in boxes), max(b.col_stop for b in boxes))
    half = max(rows[1] - rows[0], cols[1] - cols[0]) // 2 + ZOOM_MARGIN_PX
    centre = ((rows[0] + rows[1]) // 2, (cols[0] + cols[1]) // 2)
    return CropBox(max(centre[0] - half, 0), min(centre[0] + half, shape[0]),
                   max(centre[1] - half, 0), min(centre[1] + half, shape[1]))


def _bounding_box(mask: np.ndarray) -> CropBox | None:
    if not mask.any():
        return None
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return CropBox(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _grey(plane: np.ndarray) -> np.ndarray:
    """uint8 greys, the 1st to 99.5th percentile stretched over 0..255."""
    values = plane.astype(np.float32)
    finite = values[np.isfinite(values)]
    low, high = (np.percentile(finite, [1, 99.5]) if finite.size else (0.0, 1.0))
    scaled = np.clip((np.nan_to_num(values) - low) / max(float(high - low), 1e-6), 0, 1)
    return (scaled * 255).astype(np.uint8)


def _scale_factor(shape: tuple[int, int]) -> float:
    return PANEL_PX / max(shape)


def _scaled(grey: np.ndarray, window: CropBox | None) -> np.ndarray:
    """An RGB panel of PANEL_PX on its longer side (nearest neighbour: voxels stay visible)."""
    part = grey if window is None else grey[window.row_start:window.row_stop, window.col_start:window.col_stop]
    rows, cols = _upscaled_indices(part.shape)
    return np.repeat(part[np.ix_(rows, cols)][..., None], 3, axis=2)


def _upscaled_indices(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    factor = _scale_factor(shape)
    height, width = max(round(shape[0] * factor), 1), max(round(shape[1] * factor), 1)
    return ((np.arange(height) / factor).astype(int).clip(0, shape[0] - 1),
            (np.arange(width) / factor).astype(int).clip(0, shape[1] - 1))


def _annotated(plane: np.ndarray, outlines: Mapping[str, np.ndarray], rois: Sequence[str], box: CropBox | None,
               window: CropBox | None) -> np.ndarray:
    """The grey panel with each ROI's outline and the DL box drawn on the upscaled pixels."""
    panel = _scaled(_grey(plane), window)
    offset = (window.row_start, window.col_start) if window else (0, 0)
    part_shape = (window.height, window.width) if window else plane.shape
    rows, cols = _upscaled_indices(part_shape)
    for roi, mask in outlines.items():
        part = mask if window is None else mask[window.row_start:window.row_stop, window.col_start:window.col_stop]
        panel[_outline(part[np.ix_(rows, cols)])] = roi_colour(roi, rois)
    if box is not None:
        inside_rows = (rows + offset[0] >= box.row_start) & (rows + offset[0] < box.row_stop)
        inside_cols = (cols + offset[1] >= box.col_start) & (cols + offset[1] < box.col_stop)
        panel[_outline(np.outer(inside_rows, inside_cols))] = DL_BOX_COLOUR
    return panel


def _outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of `mask` with a neighbour outside it (4-neighbourhood), two pixels thick."""
    inner = mask.copy()
    for _ in range(2):
        padded = np.pad(inner, 1, constant_values=False)
        inner = inner & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def patient_montage(patient_key: str, channels: pl.DataFrame, masks: pl.DataFrame, target_roi: str,
                    mask_label: int = 1, dl_rectangle: DlRectangle | None = None) -> np.ndarray:
    """The montage of one patient from its warehouse rows: `channels` (preprocessed_channels: sequence, channel,
    image_path) and `masks` (preprocessed_masks: sequence, roi, segmentation, mask_path; primary ones drawn).
    Each sequence is cut in the plane its name states (`sag_`, `ax_`, ...), the DL sequence in the DL plane,
    else sagittal."""
    primary = masks.filter(pl.col("segmentation") == PRIMARY) if masks.height else masks
    rows = []
    for sequence in dict.fromkeys(channels["sequence"]):
        files = channels.filter(pl.col("sequence") == sequence)
        ordered = sorted(files.iter_rows(named=True), key=lambda r: r["channel"] != "original")
        rois = {r["roi"]: Path(r["mask_path"]) for r in primary.filter(pl.col("sequence") == sequence)
                .iter_rows(named=True)} if primary.height else {}
        on_dl = dl_rectangle is not None and dl_rectangle.sequence == sequence
        axis = dl_rectangle.axis if on_dl and dl_rectangle else (axis_named_in(sequence) or "sagittal")
        volumes = SequenceVolumes(sequence, axis, {r["channel"]: Path(r["image_path"]) for r in ordered}, rois)
        rows.append(sequence_row(volumes, target_roi, mask_label, dl_rectangle))
    all_rois = sorted(set(primary["roi"])) if primary.height else []
    return compose_montage(patient_key, rows, all_rois)


def dl_rectangle_of(slice_rows: Sequence[Mapping]) -> DlRectangle | None:
    """The DL rectangle of a patient's `roi_slices` rows (all channels share it), or None without rows."""
    if not slice_rows:
        return None
    row = slice_rows[0]
    return DlRectangle(row["sequence"], row["axis"], int(row["slice_index"]), CropBox(*(int(v) for v in row["crop"])))
