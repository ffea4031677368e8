"""A content-addressed store of per-patient features, shared by every experiment (home) on one cohort.

An entry is a data file (a preprocessed channel or mask, or one case's radiomics values as parquet) and its entry
record `<name>.entry.json`: the full key (a hash of the inputs' content and every setting and library version that
shapes the result), the data file's name and its sha256. Writers put the data file under a name carrying its own
content hash (temp file + rename), then the record (temp file + rename), so two experiments filling the same key at
once leave one valid entry: whichever record lands last names a complete file. A read verifies the record's key and
the file's hash; a missing, partial, corrupted or foreign entry reads as absent, so it is computed again and
replaced. Nothing outside the store's root is read or written: paths are resolved and symlinks leading out refused.

Where the store is: `CSSCI_FEATURE_STORE` when set, else `.cssci_feature_store` beside the cohort manifest (every
home of a cohort names the same manifest, so they share it), or a user cache folder when the manifest's folder is
not writable.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

FEATURE_STORE_ENV = "CSSCI_FEATURE_STORE"
BESIDE_MANIFEST = ".cssci_feature_store"
ENTRY_SUFFIX = ".entry.json"
_CHUNK = 1 << 20


class FeatureStoreError(Exception):
    """A store path that would leave the store's root (a symlink out, or `..` in a name)."""


def feature_store_root(configured: str | None, manifest: Path) -> Path:
    """The store's root: `configured` (the resource's setting), else `CSSCI_FEATURE_STORE`, else beside the
    manifest (or the user cache folder when the manifest's folder is read-only)."""
    chosen = configured or os.environ.get(FEATURE_STORE_ENV)
    if chosen:
        return Path(chosen).expanduser().resolve()
    folder = Path(manifest).resolve().parent
    if os.access(folder, os.W_OK):
        return folder / BESIDE_MANIFEST
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return (cache / "cssci" / "feature_store").resolve()


def content_key(**parts: object) -> str:
    """The sha256 of the parts as a sorted JSON document: an entry's full key."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass(frozen=True)
class FeatureStore:
    root: Path

    def folder(self, relative: str) -> Path:
        """`relative` under the root, created; refused when it resolves outside the root."""
        path = self._inside(self.root / relative, relative)
        path.mkdir(parents=True, exist_ok=True)
        return self._inside(path, relative)

    def find(self, relative: str, key: str) -> Path | None:
        """The verified data file of entry `relative` (e.g. `P001/sag_T2/original-<key16>`), or None when there is
        none or it is not valid (wrong key, missing or altered data file, a path out of the root)."""
        record_path = self.root / f"{relative}{ENTRY_SUFFIX}"
        try:
            if record_path.is_symlink():
                return None
            record_path = self._inside(record_path, relative)
            if not record_path.is_file():
                return None
            record = json.loads(record_path.read_text(encoding="utf-8"))
            name = record["file"]
            if record["key"] != key or not isinstance(name, str) or Path(name).name != name:
                return None
            data = record_path.parent / name
            if data.is_symlink() or not data.is_file():
                return None
            self._inside(data, relative)
            return data if file_sha256(data) == record["sha256"] else None
        except (FeatureStoreError, OSError, ValueError, KeyError, TypeError):
            return None

    def save(self, relative: str, key: str, suffix: str, write: Callable[[Path], None]) -> Path:
        """Write entry `relative`: `write(path)` fills a temporary file, which becomes `<name>-<sha16><suffix>`;
        then the record. Returns the data file."""
        folder = self.folder(str(Path(relative).parent))
        base = Path(relative).name
        handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{base}-", suffix=suffix)
        os.close(handle)
        try:
            write(Path(temporary))
            sha = file_sha256(Path(temporary))
            data = folder / f"{base}-{sha[:16]}{suffix}"
            os.replace(temporary, data)
        finally:
            if os.path.exists(temporary):
                os.remove(temporary)
        record = json.dumps({"key": key, "file": data.name, "sha256": sha}, sort_keys=True)
        _write_atomically(folder / f"{base}{ENTRY_SUFFIX}", record)
        return data

    def find_rows(self, relative: str, key: str) -> pl.DataFrame | None:
        path = self.find(relative, key)
        if path is None:
            return None
        try:
            return pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError):
            return None

    def save_rows(self, relative: str, key: str, rows: pl.DataFrame) -> Path:
        return self.save(relative, key, ".parquet", lambda path: rows.write_parquet(path))

    def _inside(self, path: Path, what: str) -> Path:
        root = self.root.resolve()
        resolved = path.resolve()
        if resolved != root and root not in resolved.parents:
            raise FeatureStoreError(f"feature store entry {what!r} resolves to {resolved}, outside the store {root} "
                                    "(a symlink out of the store?): remove it or point CSSCI_FEATURE_STORE elsewhere")
        return resolved


def _write_atomically(path: Path, text: str) -> None:
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}-")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
