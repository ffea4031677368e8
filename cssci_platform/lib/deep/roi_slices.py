"""The 2-D network input of one patient and channel: the largest-ROI slice, cropped to the DL rectangle.

Volumes are SimpleITK images (or numpy arrays in SimpleITK's (z, y, x) order, taken as 1 mm isotropic
and already in LPS order). A SimpleITK image is first reoriented to LPS from its direction cosines
(``DICOMOrient``: an exact permutation and flip of the voxel array, no resampling), so its index axes run
x = right -> left, y = anterior -> posterior, z = inferior -> superior whatever order the file stores them
in. "Sagittal" is therefore the patient's sagittal plane (``array[:, :, x]``, rows z, columns y),
"coronal" ``array[:, y, :]`` and "axial" ``array[z, :, :]``. An oblique acquisition gets the anatomical
plane closest to its own axes. The slice is chosen from the lesion mask only, so every channel of a patient
gets the same slice and crop: plan once with `plan_roi_crop`, then cut each channel with `cut_roi_slice`.

Crop boxes are half-open pixel ranges of the 2-D slice of the LPS-ordered volume (row 0 is the lowest
index: the inferior end on sagittal and coronal slices; slice indices count along the LPS axis too). No
display flip is applied.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np
import SimpleITK as sitk

from cssci_platform.lib.deep.errors import RoiSliceError

if TYPE_CHECKING:  # torch is imported where tensors are made: cutting slices needs only its resize
    import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SliceAxis = Literal["sagittal", "coronal", "axial"]
NUMPY_AXIS: dict[str, int] = {"sagittal": 2, "coronal": 1, "axial": 0}  # of (z, y, x) arrays in LPS order
CANONICAL_ORIENTATION = "LPS"
PATIENT_AXIS: dict[str, int] = {"sagittal": 0, "coronal": 1, "axial": 2}  # the plane's normal: L, P or S in LPS
RectangleMode = Literal["lesion_bbox", "rect_mask", "lesion_to_canal"]
Volume = sitk.Image | np.ndarray


@dataclass(frozen=True)
class RoiSliceSettings:
    """How the DL rectangle is drawn and resized.

    rectangle: ``lesion_bbox`` = the lesion's box in the slice; ``rect_mask`` = the box of a separately drawn
    rectangle ROI (e.g. ``dl_rect``) in that slice; ``lesion_to_canal`` = the lesion's rows (supero-inferior
    extent on a sagittal slice) with the columns widened to the canal mask's extent within those rows (the
    anterior/posterior canal boundaries), never further up or down than the lesion.
    The margin is added on all four sides in every mode. A crop that leaves the slice (an ROI at the edge of
    the field of view, as cord masks are) is cut at the slice border (``clip_to_slice``, the default; the
    pixels cut per side are kept in `RoiCrop.clipped_px`); with ``clip_to_slice=False`` it is an error.
    """

    axis: SliceAxis = "sagittal"
    rectangle: RectangleMode = "lesion_bbox"
    margin: float = 5.0
    margin_unit: Literal["mm", "px"] = "mm"
    output_size: tuple[int, int] = (224, 224)
    clip_to_slice: bool = True
    mask_label: int = 1

    def __post_init__(self) -> None:
        if self.axis not in NUMPY_AXIS:
            raise ValueError(f"unknown slice axis '{self.axis}'; choose from {', '.join(NUMPY_AXIS)}")
        if self.rectangle not in ("lesion_bbox", "rect_mask", "lesion_to_canal"):
            raise ValueError(f"unknown rectangle mode '{self.rectangle}'")
        if self.margin < 0 or self.margin_unit not in ("mm", "px"):
            raise ValueError(f"margin must be >= 0 in 'mm' or 'px', got {self.margin} {self.margin_unit}")
        if len(self.output_size) != 2 or min(self.output_size) < 1:
            raise ValueError(f"output_size must be two positive integers, got {self.output_size}")


@dataclass(frozen=True)
class CropBox:
    row_start: int
    row_stop: int
    col_start: int
    col_stop: int

    @property
    def height(self) -> int:
        return self.row_stop - self.row_start

    @property
    def width(self) -> int:
        return self.col_stop - self.col_start

    def describe(self) -> str:
        return f"rows {self.row_start}:{self.row_stop}, columns {self.col_start}:{self.col_stop}"


@dataclass(frozen=True)
class RoiCrop:
    """Where a patient's network input comes from; store it next to the embeddings."""

    axis: SliceAxis
    slice_index: int
    roi_area_px: int
    box: CropBox
    volume_shape: tuple[int, int, int]
    clipped_px: tuple[int, int, int, int] = (0, 0, 0, 0)  # cut off at the row_start, row_stop, col_start, col_stop side
    obliquity_deg: float = 0.0  # angle between the slice and the patient's plane of that name (oblique scans)

    @property
    def slice_shape(self) -> tuple[int, int]:
        shape = list(self.volume_shape)
        del shape[NUMPY_AXIS[self.axis]]
        return shape[0], shape[1]

    def as_row(self) -> dict:
        return {"slice_axis": self.axis, "slice_index": self.slice_index, "roi_area_px": self.roi_area_px,
                **asdict(self.box), "clipped_px": list(self.clipped_px)}


@dataclass(frozen=True, eq=False)
class RoiSlice:
    """A resized crop in the channel's own intensity units (``pixels``, (H, W)), ready for the network."""

    crop: RoiCrop
    pixels: np.ndarray

    def network_input(self) -> torch.Tensor:
        """(3, H, W) float32: the grey crop replicated to RGB with ImageNet mean/std normalisation."""
        import torch

        return imagenet_normalize(torch.from_numpy(self.pixels))


def imagenet_normalize(grey: torch.Tensor) -> torch.Tensor:
    """(..., H, W) grey values in [0, 1] -> (..., 3, H, W) normalised as the ImageNet weights expect."""
    import torch

    rgb = grey.float().unsqueeze(-3).expand(*grey.shape[:-2], 3, *grey.shape[-2:])
    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    return (rgb - mean) / std


def network_batch(slices: Sequence[RoiSlice]) -> torch.Tensor:
    """(n, 3, H, W) network inputs of several slices of the same output size."""
    import torch

    return torch.stack([s.network_input() for s in slices])


def roi_slice(image: Volume, lesion_mask: Volume, settings: RoiSliceSettings = RoiSliceSettings(),
              rect_mask: Volume | None = None, canal_mask: Volume | None = None) -> RoiSlice:
    """Plan the crop from the masks and cut it out of ``image`` in one call."""
    return cut_roi_slice(image, plan_roi_crop(lesion_mask, settings, rect_mask, canal_mask), settings)


def plan_roi_crop(lesion_mask: Volume, settings: RoiSliceSettings = RoiSliceSettings(),
                  rect_mask: Volume | None = None, canal_mask: Volume | None = None) -> RoiCrop:
    """Choose the slice with the largest lesion area and the crop box on it.

    Ties between equally large slices go to the middle one of the tied indices (lower middle for an even
    count), so the choice is deterministic and sits inside a lesion of constant cross-section.
    """
    lesion, spacing = _volume(lesion_mask, "lesion mask")
    lesion = lesion == settings.mask_label
    axis = NUMPY_AXIS[settings.axis]
    areas = lesion.sum(axis=tuple(a for a in range(3) if a != axis))
    if areas.max() == 0:
        raise RoiSliceError("roi_empty", f"the lesion mask has no voxel with label {settings.mask_label} on any "
                            f"{settings.axis} slice", "check the segmentation (right ROI and label exported?) and "
                            "re-run preprocessing; until then the patient has no deep features")
    tied = np.flatnonzero(areas == areas.max())
    index = int(tied[(len(tied) - 1) // 2])
    lesion_2d = np.take(lesion, index, axis=axis)
    rect_2d = _other_slice(rect_mask, lesion.shape, index, settings, "rectangle mask")
    box = _rectangle(lesion_2d, index, settings, rect_2d,
                     _other_slice(canal_mask, lesion.shape, index, settings, "canal mask"))
    wanted = _with_margin(box, _margin_px(settings, spacing, axis))
    box = _fitted_to_slice(wanted, lesion_2d.shape, index, settings)
    return RoiCrop(settings.axis, index, int(areas[index]), box, tuple(lesion.shape), _clipped_px(wanted, box),
                   plane_obliquity_deg(lesion_mask, settings.axis))


def cut_roi_slice(image: Volume, crop: RoiCrop, settings: RoiSliceSettings = RoiSliceSettings()) -> RoiSlice:
    """Cut the planned crop out of one channel volume and resize it (bilinear, antialiased)."""
    array, _ = _volume(image, "image")
    if array.shape != crop.volume_shape:
        raise RoiSliceError("shape_mismatch", f"the image has {array.shape} voxels (z, y, x) but the mask had "
                            f"{crop.volume_shape}", "resample the mask onto the image grid (preprocessing does this)")
    plane = np.take(array, crop.slice_index, axis=NUMPY_AXIS[crop.axis])
    b = crop.box
    patch = plane[b.row_start:b.row_stop, b.col_start:b.col_stop].astype(np.float32)
    if not np.isfinite(patch).all():
        raise RoiSliceError("nonfinite_pixels", f"the crop ({b.describe()}) of {crop.axis} slice {crop.slice_index} "
                            "holds NaN or infinite values", "check the channel file; re-run preprocessing")
    return RoiSlice(crop, resize(patch, settings.output_size))


def resize(patch: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear with antialiasing (Pillow's filter on float32, which torch's `interpolate(mode="bilinear",
    antialias=True)` and torchvision's resize reproduce): no torch needed to cut a slice."""
    from PIL import Image

    rows, cols = size
    image = Image.fromarray(np.ascontiguousarray(patch, dtype=np.float32), mode="F")
    return np.array(image.resize((cols, rows), Image.Resampling.BILINEAR), dtype=np.float32)  # writable copy


def _volume(volume: Volume, what: str) -> tuple[np.ndarray, tuple[float, float, float]]:
    """(z, y, x) array in LPS order and its spacing in the same order."""
    if isinstance(volume, sitk.Image):
        if volume.GetDimension() != 3 or volume.GetNumberOfComponentsPerPixel() != 1:
            raise RoiSliceError("wrong_dimensions", f"the {what} is {volume.GetDimension()}-D with "
                                f"{volume.GetNumberOfComponentsPerPixel()} component(s); expected a scalar 3-D volume",
                                "pass the preprocessed 3-D channel volume and mask")
        canonical = reoriented_to_lps(volume)
        # a view only of the caller's image: a view of the temporary reoriented one would outlive its buffer
        array = sitk.GetArrayViewFromImage(volume) if canonical is volume else sitk.GetArrayFromImage(canonical)
        return array, tuple(reversed(canonical.GetSpacing()))
    array = np.asarray(volume)
    if array.ndim != 3:
        raise RoiSliceError("wrong_dimensions", f"the {what} has {array.ndim} dimensions {array.shape}; expected "
                            "a 3-D (z, y, x) volume", "pass the preprocessed 3-D channel volume and mask")
    return array, (1.0, 1.0, 1.0)


def reoriented_to_lps(image: sitk.Image) -> sitk.Image:
    """The same voxels with index axes permuted and flipped to run right->left, anterior->posterior,
    inferior->superior (the nearest such order for an oblique image); exact, no interpolation."""
    if sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection()) == CANONICAL_ORIENTATION:
        return image
    return sitk.DICOMOrient(image, CANONICAL_ORIENTATION)


def plane_obliquity_deg(volume: Volume, axis: SliceAxis) -> float:
    """Degrees between the slice normal of the LPS-ordered volume and the patient axis the plane is named after
    (0 for a scan whose axes are the patient's; a numpy array is taken as LPS-aligned)."""
    if not isinstance(volume, sitk.Image):
        return 0.0
    direction = np.asarray(reoriented_to_lps(volume).GetDirection()).reshape(3, 3)
    index_axis = 2 - NUMPY_AXIS[axis]  # SimpleITK's (x, y, z) index order
    cosine = abs(direction[PATIENT_AXIS[axis], index_axis])
    return round(math.degrees(math.acos(min(1.0, cosine))), 6)


def _other_slice(mask: Volume | None, shape: tuple[int, ...], index: int, settings: RoiSliceSettings,
                 what: str) -> np.ndarray | None:
    if mask is None:
        return None
    array, _ = _volume(mask, what)
    if array.shape != shape:
        raise RoiSliceError("shape_mismatch", f"the {what} has {array.shape} voxels but the lesion mask {shape}",
                            "resample every mask onto the image grid (preprocessing does this)")
    return np.take(array == settings.mask_label, index, axis=NUMPY_AXIS[settings.axis])


def _rectangle(lesion: np.ndarray, index: int, settings: RoiSliceSettings, rect: np.ndarray | None,
               canal: np.ndarray | None) -> CropBox:
    where = f"{settings.axis} slice {index}"
    if settings.rectangle == "rect_mask":
        if rect is None:
            raise RoiSliceError("rect_roi_missing", "rectangle 'rect_mask' needs a rectangle ROI mask (e.g. 'dl_rect')",
                                "provide the rectangle ROI, or use rectangle 'lesion_bbox'")
        if not rect.any():
            raise RoiSliceError("rect_roi_empty", f"the rectangle ROI has no voxel on {where} (the largest-lesion "
                                "slice)", "draw the DL rectangle so it covers the lesion's largest slice, or use "
                                "rectangle 'lesion_bbox'")
        return _bounding_box(rect)
    box = _bounding_box(lesion)
    if settings.rectangle == "lesion_bbox":
        return box
    if canal is None:
        raise RoiSliceError("canal_roi_missing", "rectangle 'lesion_to_canal' needs a canal (or cord) mask",
                            "provide the canal/cord ROI, or use rectangle 'lesion_bbox'")
    rows = canal[box.row_start:box.row_stop]
    if not rows.any():
        raise RoiSliceError("canal_roi_empty", f"the canal mask has no voxel in the lesion's rows "
                            f"{box.row_start}:{box.row_stop} on {where}", "check that the canal/cord mask covers "
                            "the injury level, or use rectangle 'lesion_bbox'")
    columns = np.flatnonzero(rows.any(axis=0))
    return CropBox(box.row_start, box.row_stop, min(box.col_start, int(columns[0])),
                   max(box.col_stop, int(columns[-1]) + 1))


def _bounding_box(mask: np.ndarray) -> CropBox:
    rows, cols = np.flatnonzero(mask.any(axis=1)), np.flatnonzero(mask.any(axis=0))
    return CropBox(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1)


def _margin_px(settings: RoiSliceSettings, spacing_zyx: tuple[float, float, float], axis: int) -> tuple[int, int]:
    if settings.margin_unit == "px":
        return int(settings.margin), int(settings.margin)
    row_spacing, col_spacing = (s for a, s in enumerate(spacing_zyx) if a != axis)
    return math.ceil(settings.margin / row_spacing - 1e-9), math.ceil(settings.margin / col_spacing - 1e-9)


def _with_margin(box: CropBox, margin: tuple[int, int]) -> CropBox:
    rows, cols = margin
    return CropBox(box.row_start - rows, box.row_stop + rows, box.col_start - cols, box.col_stop + cols)


def _fitted_to_slice(box: CropBox, shape: tuple[int, int], index: int, settings: RoiSliceSettings) -> CropBox:
    where = f"{settings.axis} slice {index} ({shape[0]} x {shape[1]} pixels)"
    if settings.clip_to_slice:
        return CropBox(max(box.row_start, 0), min(box.row_stop, shape[0]),
                       max(box.col_start, 0), min(box.col_stop, shape[1]))
    if box.height > shape[0] or box.width > shape[1]:
        raise RoiSliceError("slice_smaller_than_crop", f"the crop is {box.height} x {box.width} pixels (ROI plus "
                            f"{settings.margin:g} {settings.margin_unit} margin) but {where} is smaller",
                            "set clip_to_slice: true to cut it at the slice border, lower the margin, or check that "
                            "the volume was resampled to the expected spacing")
    inside = box.row_start >= 0 and box.col_start >= 0 and box.row_stop <= shape[0] and box.col_stop <= shape[1]
    if not inside:
        raise RoiSliceError("crop_outside_slice", f"the crop ({box.describe()}; ROI plus {settings.margin:g} "
                            f"{settings.margin_unit} margin) leaves {where}", "lower the margin, or set "
                            "clip_to_slice: true to cut the crop at the slice border")
    return box


def _clipped_px(wanted: CropBox, fitted: CropBox) -> tuple[int, int, int, int]:
    """Pixels of the wanted crop cut off at each side: (row_start, row_stop, col_start, col_stop)."""
    return (fitted.row_start - wanted.row_start, wanted.row_stop - fitted.row_stop,
            fitted.col_start - wanted.col_start, wanted.col_stop - fitted.col_stop)
