"""Image files: reading a volume or a DICOM series folder (refusing truncated files), atomic writing, content
hashes, and non-finite voxels counted in the file itself."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from cssci_platform.lib.imaging.checks import nonfinite_voxel_count
from cssci_platform.lib.imaging.errors import ImageReadError
from cssci_platform.lib.imaging.headers import is_metaimage, require_complete_metaimage
from cssci_platform.lib.imaging.nifti import is_nifti, nifti_payload, require_complete_nifti

VOLUME_SUFFIXES = (".nii", ".nii.gz", ".nrrd", ".mha", ".mhd")


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
        require_complete_metaimage(path)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise ImageReadError(
            path, f"unreadable or corrupt image ({_first_line(error)})", "re-export or re-copy the file"
        ) from None
    if is_nifti(path):
        require_complete_nifti(path)
    return image


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
        raise ImageReadError(folder, f"DICOM series unreadable ({_first_line(error)})",
                             "re-export the series") from None


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
