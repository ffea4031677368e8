"""The content-addressed feature store shared by the experiments of one cohort (issue 18, reuse across experiments):
verified reads, atomic writes, concurrent writers, nothing read from outside its root."""

from __future__ import annotations

import json
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import polars as pl
import pytest

from cssci_platform.lib.feature_store import (
    BESIDE_MANIFEST,
    ENTRY_SUFFIX,
    FEATURE_STORE_ENV,
    FeatureStore,
    FeatureStoreError,
    content_key,
    feature_store_root,
)

ROWS = pl.DataFrame({"feature": ["a", "b"], "value": [1.5, -2.0]})


def test_saved_rows_are_found_again_under_their_key(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "store")
    key = content_key(image="abc", params="p1")
    store.save_rows("P001/sag_T2/case", key, ROWS)
    assert store.find_rows("P001/sag_T2/case", key).equals(ROWS)
    assert store.find_rows("P001/sag_T2/case", content_key(image="abc", params="p2")) is None
    assert store.find_rows("P001/sag_T2/other", key) is None


@pytest.mark.parametrize("damage", ["flip_a_byte", "truncate", "delete_data", "garbage_record"])
def test_a_damaged_entry_reads_as_absent(tmp_path: Path, damage: str) -> None:
    store = FeatureStore(tmp_path / "store")
    key = content_key(case=1)
    data = store.save_rows("P/s/case", key, ROWS)
    record = data.parent / f"case{ENTRY_SUFFIX}"
    if damage == "flip_a_byte":
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 0xFF
        data.write_bytes(bytes(raw))
    elif damage == "truncate":
        data.write_bytes(data.read_bytes()[:10])
    elif damage == "delete_data":
        data.unlink()
    else:
        record.write_text("{not json", encoding="utf-8")
    assert store.find("P/s/case", key) is None
    store.save_rows("P/s/case", key, ROWS)  # computed again, replacing it
    assert store.find_rows("P/s/case", key).equals(ROWS)


def test_symlinks_out_of_the_root_are_never_followed(tmp_path: Path) -> None:
    outside = FeatureStore(tmp_path / "elsewhere")
    key = content_key(case=2)
    foreign = outside.save_rows("case", key, ROWS)
    store = FeatureStore(tmp_path / "store")
    store.folder("P")
    (store.root / "P" / f"case{ENTRY_SUFFIX}").symlink_to(foreign.parent / f"case{ENTRY_SUFFIX}")
    assert store.find("P/case", key) is None  # a valid entry, but outside the root
    record = json.loads((foreign.parent / f"case{ENTRY_SUFFIX}").read_text())
    (store.root / "P" / "case2.entry.json").write_text(json.dumps({**record, "file": "../../elsewhere/x"}))
    assert store.find("P/case2", key) is None  # a record naming a file out of its folder
    (store.root / "link").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    with pytest.raises(FeatureStoreError, match="outside the store"):
        store.save_rows("link/case", key, ROWS)
    assert store.find("link/case", key) is None
    store.save_rows("P/case", key, ROWS)  # replaces the link itself, never writes through it
    assert not (store.root / "P" / f"case{ENTRY_SUFFIX}").is_symlink()
    assert store.find_rows("P/case", key).equals(ROWS)
    assert outside.find_rows("case", key).equals(ROWS)


def _save_many(root: str, worker: int) -> str:
    store = FeatureStore(Path(root))
    key = content_key(case="shared")
    rows = pl.DataFrame({"feature": [f"f{i}" for i in range(2000)], "value": [float(i) for i in range(2000)]})
    for _ in range(30):
        store.save_rows("P/s/case", key, rows)
    return str(store.find("P/s/case", key))


def test_two_concurrent_writers_of_one_key_leave_one_valid_entry(tmp_path: Path) -> None:
    root = tmp_path / "store"
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:  # polars: no fork
        found = list(pool.map(_save_many, [str(root)] * 2, [0, 1]))
    store = FeatureStore(root)
    entry = store.find("P/s/case", content_key(case="shared"))
    assert entry is not None and found == [str(entry)] * 2
    assert store.find_rows("P/s/case", content_key(case="shared")).height == 2000
    leftovers = sorted(p.name for p in (root / "P" / "s").iterdir())
    assert leftovers == sorted([entry.name, f"case{ENTRY_SUFFIX}"])  # no temporary file left behind


def test_the_root_is_the_setting_else_the_variable_else_beside_the_manifest(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = tmp_path / "cohort" / "cohort.yaml"
    manifest.parent.mkdir()
    monkeypatch.delenv(FEATURE_STORE_ENV, raising=False)
    assert feature_store_root(None, manifest) == manifest.parent.resolve() / BESIDE_MANIFEST
    monkeypatch.setenv(FEATURE_STORE_ENV, str(tmp_path / "shared"))
    assert feature_store_root(None, manifest) == (tmp_path / "shared").resolve()
    assert feature_store_root(str(tmp_path / "chosen"), manifest) == (tmp_path / "chosen").resolve()
