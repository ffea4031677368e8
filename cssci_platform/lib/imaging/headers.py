"""Text headers of MetaImage (.mha/.mhd) and NRRD files: the data files they name and whether the voxel data are
as long as the header promises."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cssci_platform.lib.imaging.errors import ImageReadError


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
        names = [] if value is None or value == "LOCAL" else _data_file_names(value, following)
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


def require_complete_metaimage(path: Path) -> None:
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
