"""Paths that must stay inside a root: every symbolic link resolved, anything leaving the roots refused.

A site's files live under one root (the cohort's `data_root`, the inbox). Sites may link to a read-only
image archive instead of copying; such archives are accepted only when declared (`archive_roots:` in
cohort.yaml) and passed here as `allowed_roots`. Every other path whose real location (all links
followed) lies outside the roots raises `PathEscapeError`, which names the link that leaves.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

ARCHIVE_ROOTS_FIX = "declare the archive it points into in cohort.yaml under `archive_roots:`"


class PathEscapeError(ValueError):
    """A path whose real location is outside its root and every allowed root.

    `reason` says which link (or path) leaves and where it points; `fix` says what to do.
    """

    def __init__(
        self, path: Path, link: Path | None, target: Path, roots: Sequence[Path], named_by: Path | None = None
    ) -> None:
        self.path, self.link, self.target, self.roots = path, link, target, tuple(roots)
        where = " or ".join(str(root) for root in self.roots)
        if named_by is not None:
            self.reason = f"{named_by} names the data file {target}, outside {where}"
            self.fix = (f"keep the data file beside its header under {self.roots[0]}, or re-export as one "
                        ".mha/.nrrd file")
        elif link is None:
            self.reason = f"{path} is outside {where}"
            self.fix = f"move it under {self.roots[0]}"
        else:
            self.reason = f"{link} is a symbolic link to {target}, outside {where}"
            self.fix = (f"copy the files under {self.roots[0]} instead of linking, or, if it points into a "
                        f"read-only image archive, {ARCHIVE_ROOTS_FIX}")
        super().__init__(f"{self.reason}; {self.fix}")


def archive_root_problem(root: Path) -> str | None:
    """Why `root` cannot be an image archive that links may point into (None when it can): a file-system root
    would let links reach every file, and a missing folder is a mount that is not there."""
    if root == Path(root.anchor):
        return (f"archive_roots: {root} would let links reach every file; name the archive folder itself "
                "(e.g. /mnt/pacs_export)")
    if not root.is_dir():
        return (f"archive_roots: {root} does not exist or is not a folder; mount the archive, or remove it from "
                "archive_roots")
    return None


def real_path(path: Path) -> Path:
    """`path` with every symbolic link resolved, whether or not it exists."""
    return Path(os.path.realpath(path))


def is_within(path: Path, roots: Iterable[Path]) -> bool:
    """Whether the real location of `path` is one of `roots` (real locations) or inside one."""
    real = real_path(path)
    return any(real.is_relative_to(real_path(root)) for root in roots)


def resolve_within(path: Path, root: Path, allowed_roots: Sequence[Path] = ()) -> Path:
    """The real location of `path` (relative paths are taken under `root`), refused if it leaves the roots.

    Raises `PathEscapeError` naming the first symbolic link on the way that points outside `root` and
    `allowed_roots`, or the path itself when it leaves without a link (an absolute path, `..`).
    """
    roots = [Path(root), *map(Path, allowed_roots)]
    candidate = Path(root) / path
    real = real_path(candidate)
    if is_within(real, roots):
        return real
    link = _first_link_outside(candidate, Path(root), roots)
    target = real_path(link) if link is not None else real
    raise PathEscapeError(candidate, link, target, [real_path(r) for r in roots])


def require_tree_within(folder: Path, roots: Sequence[Path]) -> None:
    """Refuse a folder (a DICOM series) holding any symbolic link, at any depth, whose target leaves `roots`.

    Linked sub-folders are checked as links, not entered, as the image readers do not enter them either.
    """
    for parent, folders, files in os.walk(folder, followlinks=False):
        for name in sorted([*folders, *files]):
            entry = Path(parent) / name
            if entry.is_symlink() and not is_within(entry, roots):
                raise PathEscapeError(entry, entry, real_path(entry), [real_path(r) for r in roots])


def require_data_files_within(header: Path, data_files: Sequence[Path], roots: Sequence[Path]) -> None:
    """Refuse an image header (.mhd, detached .nrrd) that names a voxel data file outside `roots`."""
    for data_file in data_files:
        if not is_within(data_file, roots):
            raise PathEscapeError(data_file, None, real_path(data_file), [real_path(r) for r in roots], named_by=header)


def _first_link_outside(candidate: Path, root: Path, roots: Sequence[Path]) -> Path | None:
    """The first component of `candidate` that is a symbolic link leaving `roots`, searched below `root`.

    Components are walked as written (`..` is not folded away first, so `link/../x` still names `link`);
    links above `root` itself (a linked home folder) belong to the root and are not blamed.
    """
    absolute_root = root if root.is_absolute() else Path.cwd() / root
    absolute = candidate if candidate.is_absolute() else Path.cwd() / candidate
    parts = absolute.parts
    skip = len(absolute_root.parts) if parts[: len(absolute_root.parts)] == absolute_root.parts else 1
    for depth in range(skip + 1, len(parts) + 1):
        prefix = Path(*parts[:depth])
        if prefix.is_symlink() and not is_within(prefix, roots):
            return prefix
    return None
