"""NIfTI-1/2 files read without ITK: the header and the voxel bytes as stored, so that truncated files and NaN
voxels (which ITK's reader zero-fills and zeroes) are seen."""

from __future__ import annotations

import gzip
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cssci_platform.lib.imaging.errors import ImageReadError


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
            return {"order": order, "dims": dims[:ndim], "datatype": datatype, "bitpix": bitpix,
                    "offset": max(offset, 348)}
        if len(raw) >= 540 and struct.unpack(order + "i", raw[:4])[0] == 540:
            datatype, bitpix = struct.unpack(order + "2h", raw[12:16])
            ndim, *dims = struct.unpack(order + "8q", raw[16:80])
            offset = struct.unpack(order + "q", raw[168:176])[0]
            return {"order": order, "dims": dims[:ndim], "datatype": datatype, "bitpix": bitpix,
                    "offset": max(offset, 540)}
    raise ImageReadError(path, "not a NIfTI-1 or NIfTI-2 header", "re-export the file as NIfTI")


def require_complete_nifti(path: Path) -> None:
    payload = nifti_payload(path)
    found, expected = len(payload.data), payload.expected_bytes
    if found < expected:
        raise ImageReadError(
            path, f"unreadable or corrupt image (truncated: {found} of {expected} voxel bytes present)",
            "re-copy the file (an interrupted transfer?) or re-export it",
        )
