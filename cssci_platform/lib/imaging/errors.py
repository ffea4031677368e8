"""The error of an image file that cannot be read: which file, why, and what to do."""

from __future__ import annotations

from pathlib import Path


class ImageReadError(Exception):
    """A file that should hold an image (or a DICOM series folder) could not be read."""

    def __init__(self, path: Path, reason: str, fix: str) -> None:
        self.path, self.reason, self.fix = Path(path), reason, fix
        super().__init__(f"{path}: {reason}. Fix: {fix}")
