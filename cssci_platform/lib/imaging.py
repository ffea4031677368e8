"""SimpleITK image I/O, geometry checks, resampling and filter channels.

Every function takes and returns `SimpleITK.Image` objects; voxel data never leaves SimpleITK except for
the checks that need numpy. Errors name the file and say what to do.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")
CHANNELS = ("original", "mean", "box", "gaussian", "median")


class ImageReadError(Exception):
    """A file that should hold an image (or a DICOM series folder) could not be read."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        self.path, self.reason, self.fix = Path(path), reason, fix
        super().__init__(f"{path}: {reason}. Fix: {fix}")


def has_volume_suffix(path: Path) -> bool:
    return path.name.lower().endswith(VOLUME_SUFFIXES)


def read_image(path: Path) -> sitk.Image:
    """Read a NIfTI/NRRD/MHA/MHD volume or a DICOM series folder (the largest series in it)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(path, "file not found", "check the path in the manifest (relative to data_root)")
    if path.is_dir():
        return _read_dicom_series(path)
    if not has_volume_suffix(path):
        raise ImageReadError(
            path, f"unsupported file type '{path.suffix}'", f"convert to one of {', '.join(VOLUME_SUFFIXES)}"
        )
    if path.stat().st_size == 0:
        raise ImageReadError(path, "file is empty (0 bytes)", "re-export or re-copy the file")
    if is_metaimage(path):
        _require_complete_metaimage(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageReadError(
            path, f"unreadable or corrupt image ({_first_line(error)})", "re-export or re-copy the file"
        ) from None
    if is_nifti(path):
        _require_complete_nifti(path)
    return image


def is_nifti(path: Path) -> bool:
    return path.name.lower().endswith((".nii", ".nii.gz"))


@dataclass(frozen=True)
class NiftiPayload:
    """The voxel bytes of a NIfTI file as stored, read without ITK (see `nifti_payload`)."""

    expected_bytes: int
    data: bytes
    dtype: np.dtype | None  # None for types we only size-check (complex, RGB)


# NIfTI datatype code -> numpy dtype (without byte order)
NIFTI_DTYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}


def nifti_payload(path: Path) -> NiftiPayload:
    """Parse a NIfTI-1/2 header and read the voxel data section as it is on disk.

    ITK's NIfTI reader (ITK 5.4, SimpleITK 2.5) silently accepts a truncated file (zero-filling the rest)
    and replaces NaN/Inf voxels by 0, so completeness and non-finite checks must look at the raw bytes.
    """
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as stream:
            raw = stream.read()
    except (OSError, EOFError) as error:
        raise ImageReadError(path, f"unreadable or corrupt image (compressed stream truncated or damaged: {error})",
                             "re-copy the file (an interrupted transfer?) or re-export it") from None
    header = _nifti_header(raw, path)
    count = int(np.prod(header["dims"], dtype=np.int64))
    expected = count * header["bitpix"] // 8
    code = NIFTI_DTYPES.get(header["datatype"])
    dtype = np.dtype(header["order"] + code) if code else None
    return NiftiPayload(expected, raw[header["offset"]:header["offset"] + expected], dtype)


def _nifti_header(raw: bytes, path: Path) -> dict:
    for order in ("<", ">"):
        if len(raw) >= 4 and struct.unpack(order + "i", raw[:4])[0] == 348 and len(raw) >= 348:
            ndim, *dims = struct.unpack(order + "8h", raw[40:56])
            datatype, bitpix = struct.unpack(order + "2h", raw[70:74])
            offset = int(struct.unpack(order + "f", raw[108:112])[0])
            return {"order": order, "dims": dims[:ndim], "datatype": datatype, "bitpix": bitpix, "offset": max(offset, 348)}
        if len(raw) >= 540 and struct.unpack(order + "i", raw[:4])[0] == 540:
            datatype, bitpix = struct.unpack(order + "2h", raw[12:16])
            ndim, *dims = struct.unpack(order + "8q", raw[16:80])
            offset = struct.unpack(order + "q", raw[168:176])[0]
            return {"order": order, "dims": dims[:ndim], "datatype": datatype, "bitpix": bitpix, "offset": max(offset, 540)}
    raise ImageReadError(path, "not a NIfTI-1 or NIfTI-2 header", "re-export the file as NIfTI")


def _require_complete_nifti(path: Path) -> None:
    payload = nifti_payload(path)
    if len(payload.data) < payload.expected_bytes:
        raise ImageReadError(
            path, f"unreadable or corrupt image (truncated: {len(payload.data)} of {payload.expected_bytes} voxel bytes present)",
            "re-copy the file (an interrupted transfer?) or re-export it",
        )


def is_metaimage(path: Path) -> bool:
    return path.name.lower().endswith((".mha", ".mhd"))


# MetaImage ElementType -> bytes per element (MetaIO's MET_ValueTypeSize)
METAIMAGE_ELEMENT_BYTES = {
    "MET_CHAR": 1, "MET_UCHAR": 1, "MET_SHORT": 2, "MET_USHORT": 2, "MET_INT": 4, "MET_UINT": 4,
    "MET_LONG": 4, "MET_ULONG": 4, "MET_LONG_LONG": 8, "MET_ULONG_LONG": 8, "MET_FLOAT": 4, "MET_DOUBLE": 8,
}
METAIMAGE_HEADER_LIMIT = 1 << 16  # a MetaImage header is a few hundred bytes of "Key = value" lines


@dataclass(frozen=True)
class MetaImageHeader:
    fields: dict[str, str]
    header_bytes: int  # where the voxel data starts in a .mha (ElementDataFile = LOCAL)

    def data_file(self, header_path: Path) -> Path | None:
        """The one separate data file (a .mhd's .raw/.zraw), None when the data follow the header (LOCAL)
        or are split over a list or numbered pattern of files (see `header_data_files`)."""
        name = self.fields.get("ElementDataFile", "LOCAL")
        if name == "LOCAL" or name.startswith("LIST") or "%" in name or " " in name:
            return None
        return header_path.parent / name


def metaimage_header(path: Path) -> MetaImageHeader | None:
    """The `Key = value` fields of a MetaImage header up to ElementDataFile; None when not found."""
    with open(path, "rb") as stream:
        head = stream.read(METAIMAGE_HEADER_LIMIT)
    fields: dict[str, str] = {}
    position = 0
    while (end := head.find(b"\n", position)) != -1:
        key, _, value = head[position:end].decode("latin-1").partition("=")
        fields[key.strip()] = value.strip()
        position = end + 1
        if key.strip() == "ElementDataFile":
            return MetaImageHeader(fields, position)
    return None


def header_data_files(path: Path) -> list[Path]:
    """Every file a MetaImage (.mha/.mhd) or NRRD header names for its voxel data (ElementDataFile /
    `data file:`), resolved against the header's folder; empty when the voxels follow the header."""
    path = Path(path)
    if is_metaimage(path):
        value, following = _header_field(path, "ElementDataFile", "=")
        names = [] if value in (None, "LOCAL") else _data_file_names(value, following)
    elif path.name.lower().endswith((".nrrd", ".nhdr")):
        value, following = _header_field(path, "data file", ":")
        if value is None:
            value, following = _header_field(path, "datafile", ":")
        names = [] if value is None else _data_file_names(value, following)
    else:
        names = []
    return [path.parent / name for name in names]


def _header_field(path: Path, key: str, separator: str) -> tuple[str | None, list[str]]:
    """(value of `key`, the header lines after it) from the first 64 KB of a text header."""
    with open(path, "rb") as stream:
        lines = stream.read(METAIMAGE_HEADER_LIMIT).decode("latin-1").splitlines()
    for number, line in enumerate(lines):
        if not line.strip() and separator == ":":
            break  # a NRRD header ends at its first empty line; what follows may be voxel bytes
        name, found, value = line.partition(separator)
        if found and name.strip() == key:
            return value.strip(), lines[number + 1:]
    return None, []


def _data_file_names(value: str, following: list[str]) -> list[str]:
    """The file names of a data-file field: one name, `LIST` (names on the following lines, up to the first
    empty line or binary data), or a printf pattern `name%03d.raw first last step`."""
    if value.split()[0] == "LIST":
        names = []
        for line in following:
            if not line.strip() or not line.isprintable():
                break
            names.append(line.strip())
        return names
    parts = value.split()
    if "%" in parts[0] and len(parts) >= 4 and all(p.lstrip("-").isdigit() for p in parts[1:4]):
        first, last, step = (int(p) for p in parts[1:4])
        return [parts[0] % number for number in range(first, last + (1 if step > 0 else -1), step or 1)]
    return [value]


def _require_complete_metaimage(path: Path) -> None:
    """Refuse a MetaImage whose voxel data are shorter than its header promises (ITK only says
    "No such file or directory" for a truncated file) or whose separate data file is missing."""
    header = metaimage_header(path)
    if header is None or header.fields.get("HeaderSize", "0") != "0":
        return
    data_file = header.data_file(path)
    if data_file is not None and not data_file.is_file():
        raise ImageReadError(path, f"data file {data_file} (ElementDataFile in the header) not found",
                             "copy the .raw/.zraw data file next to the .mhd header, or re-export as .mha")
    expected = _metaimage_data_bytes(header.fields)
    if expected is None:
        return
    found = data_file.stat().st_size if data_file is not None else path.stat().st_size - header.header_bytes
    if found < expected[0]:
        raise ImageReadError(
            path, f"unreadable or corrupt image (truncated: {found} of {expected[0]} {expected[1]} present)",
            "re-copy the file (an interrupted transfer?) or re-export it",
        )


def _metaimage_data_bytes(fields: dict[str, str]) -> tuple[int, str] | None:
    """(bytes the data must have, what they are), from CompressedDataSize or DimSize x element size."""
    if fields.get("CompressedData", "False").lower() == "true":
        size = fields.get("CompressedDataSize", "")
        return (int(size), "compressed data bytes") if size.isdigit() else None
    element = METAIMAGE_ELEMENT_BYTES.get(fields.get("ElementType", "").removesuffix("_ARRAY"))
    try:
        dims = [int(d) for d in fields["DimSize"].split()]
        channels = int(fields.get("ElementNumberOfChannels", "1"))
    except (KeyError, ValueError):
        return None
    if element is None:
        return None
    return int(np.prod(dims, dtype=np.int64)) * channels * element, "voxel bytes"


def nonfinite_voxels_in_file(path: Path, image: sitk.Image) -> int:
    """Non-finite voxel count of a file's image; for NIfTI counted in the raw bytes (ITK zeroes them)."""
    if Path(path).is_file() and is_nifti(Path(path)):
        payload = nifti_payload(Path(path))
        if payload.dtype is None or payload.dtype.kind != "f":
            return 0
        values = np.frombuffer(payload.data, dtype=payload.dtype)
        return int(values.size - np.count_nonzero(np.isfinite(values)))
    return nonfinite_voxel_count(image)


def _read_dicom_series(folder: Path) -> sitk.Image:
    series_ids = sitk.ImageSeriesReader.GetGDCMSeriesIDs(str(folder)) or ()
    if not series_ids:
        raise ImageReadError(folder, "folder holds no DICOM series", "point the manifest at a DICOM series folder")
    file_lists = [sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(folder), sid) for sid in series_ids]
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(max(file_lists, key=len))
    try:
        return reader.Execute()
    except RuntimeError as error:
        raise ImageReadError(folder, f"DICOM series unreadable ({_first_line(error)})", "re-export the series") from None


def _first_line(error: Exception) -> str:
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return (lines[-1] if lines else type(error).__name__)[:200]


def write_image(image: sitk.Image, path: Path, compression_level: int = -1) -> None:
    """Write atomically: a reader never sees a half-written file. `compression_level` (0-9, -1 = library
    default) is honoured by the NRRD/MHA writers; SimpleITK's NIfTI writer always uses its default."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=path.parent, suffix="".join(path.suffixes))
    os.close(handle)
    try:
        sitk.WriteImage(image, tmp_name, True, compression_level)
        os.replace(tmp_name, path)
    finally:
        if os.path.exists(tmp_name):
            os.remove(tmp_name)


def file_sha256(path: Path) -> str:
    """Content hash of a file, or of every file of a folder (DICOM series) in name order."""
    digest, path = hashlib.sha256(), Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if file != path:
            digest.update(str(file.relative_to(path)).encode())
        with open(file, "rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class Geometry:
    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of(cls, image: sitk.Image) -> Geometry:
        return cls(image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


@dataclass(frozen=True)
class GeometryTolerance:
    spacing_mm: float = 1e-3
    origin_mm: float = 1e-2
    direction: float = 1e-4


def geometry_mismatches(image: sitk.Image, mask: sitk.Image, tolerance: GeometryTolerance) -> list[str]:
    """Human-readable differences between the image grid and the mask grid, empty when they agree."""
    img, msk = Geometry.of(image), Geometry.of(mask)
    problems = []
    if img.size != msk.size:
        problems.append(f"size differs: image {img.size} vs mask {msk.size}")
    for field, limit in (("spacing", tolerance.spacing_mm), ("origin", tolerance.origin_mm)):
        a, b = np.asarray(getattr(img, field)), np.asarray(getattr(msk, field))
        if a.shape != b.shape or np.max(np.abs(a - b)) > limit:
            problems.append(f"{field} differs beyond {limit} mm: image {_fmt(a)} vs mask {_fmt(b)}")
    a, b = np.asarray(img.direction), np.asarray(msk.direction)
    if a.shape != b.shape or np.max(np.abs(a - b)) > tolerance.direction:
        problems.append(f"direction differs beyond {tolerance.direction}: image {_fmt(a)} vs mask {_fmt(b)}")
    return problems


def _fmt(values: np.ndarray) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"


def nonfinite_voxel_count(image: sitk.Image) -> int:
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.floating):
        return 0
    return int(array.size - np.count_nonzero(np.isfinite(array)))


def mask_label_counts(mask: sitk.Image) -> dict[int, int]:
    """Voxel count per non-zero label of a mask. Non-integer values count as their rounding (see
    `nonintegral_voxels`); NaN/Inf voxels are not labels and are left out (see `nonfinite_voxel_count`)."""
    array = sitk.GetArrayViewFromImage(mask)
    labels = np.round(array[np.isfinite(array)]) if np.issubdtype(array.dtype, np.floating) else array
    values, counts = np.unique(labels[labels != 0], return_counts=True)
    return {int(v): int(c) for v, c in zip(values, counts, strict=True)}


@dataclass(frozen=True)
class NonIntegralVoxels:
    count: int
    example: float | None  # one offending value, to quote in a message


def nonintegral_voxels(image: sitk.Image) -> NonIntegralVoxels:
    """Finite voxels whose value is not a whole number (0.9999 in a mask saved as float)."""
    array = sitk.GetArrayViewFromImage(image)
    if not np.issubdtype(array.dtype, np.floating):
        return NonIntegralVoxels(0, None)
    finite = array[np.isfinite(array)]
    fractional = finite[finite != np.round(finite)]
    return NonIntegralVoxels(int(fractional.size), float(fractional[0]) if fractional.size else None)


def normalize_unit_range(image: sitk.Image, lower_percentile: float = 0.0, upper_percentile: float = 100.0) -> sitk.Image:
    """Linear map of intensities to [0, 1]; values outside the percentile window are clipped."""
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    low, high = np.percentile(array, [lower_percentile, upper_percentile])
    scale = float(high - low) or 1.0
    normalized = np.clip((array - low) / scale, 0.0, 1.0).astype(np.float32)
    return _like(normalized, image)


def _like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(reference)
    return image


INTERPOLATORS = {"linear": sitk.sitkLinear, "bspline": sitk.sitkBSpline, "nearest": sitk.sitkNearestNeighbor}


def resample_to_spacing(image: sitk.Image, spacing: tuple[float, float, float], is_mask: bool = False,
                        interpolator: str = "linear") -> sitk.Image:
    """Resample onto a grid with `spacing` covering the same physical extent. Images use `interpolator`
    (trilinear by default, as IBSI recommends; 'bspline' is PyRadiomics' default), masks nearest neighbour."""
    if interpolator not in INTERPOLATORS:
        raise ValueError(f"unknown interpolator '{interpolator}'; choose from {', '.join(INTERPOLATORS)}")
    old_spacing, old_size = np.asarray(image.GetSpacing()), np.asarray(image.GetSize())
    new_size = np.maximum(1, np.round(old_spacing * old_size / np.asarray(spacing))).astype(int)
    interpolator_id = sitk.sitkNearestNeighbor if is_mask else INTERPOLATORS[interpolator]
    pixel_type = image.GetPixelID() if is_mask else sitk.sitkFloat32
    # Align the outer voxel edges of both grids: shift the first voxel centre by half the spacing change.
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    origin = np.asarray(image.GetOrigin()) + direction @ ((np.asarray(spacing) - old_spacing) / 2)
    return sitk.Resample(
        image, [int(s) for s in new_size], sitk.Transform(), interpolator_id, tuple(float(o) for o in origin),
        tuple(float(s) for s in spacing), image.GetDirection(), 0, pixel_type,
    )


def resample_mask_onto(mask: sitk.Image, reference: sitk.Image) -> sitk.Image:
    """Nearest-neighbour resampling of a mask onto the grid of an (already resampled) image."""
    return sitk.Resample(mask, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


@dataclass(frozen=True)
class ChannelSettings:
    """Filter parameters in voxels (radius) or mm (sigma), applied after resampling to isotropic spacing."""

    mean_radius: int = 1
    box_radius: int = 2
    gaussian_sigma_mm: float = 1.0
    median_radius: int = 1


def filter_channel(image: sitk.Image, channel: str, settings: ChannelSettings = ChannelSettings()) -> sitk.Image:
    """One filter channel of a normalized image: original, mean (3x3x3 neighbourhood mean), box (5x5x5
    box mean via integral image), gaussian (discrete Gaussian convolution, sigma in mm; unlike the recursive
    IIR filter it cannot overshoot, so [0, 1] inputs stay in [0, 1]) or median (3x3x3)."""
    image = sitk.Cast(image, sitk.sitkFloat32)
    if channel == "original":
        return image
    if channel == "mean":
        return sitk.Mean(image, [settings.mean_radius] * 3)
    if channel == "box":
        return sitk.BoxMean(image, [settings.box_radius] * 3)
    if channel == "gaussian":
        return sitk.DiscreteGaussian(image, settings.gaussian_sigma_mm ** 2, 32, 0.001, True)
    if channel == "median":
        return sitk.Median(image, [settings.median_radius] * 3)
    raise ValueError(f"unknown channel '{channel}'; choose from {', '.join(CHANNELS)}")
