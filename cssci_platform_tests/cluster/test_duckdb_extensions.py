"""Packaged DuckDB extensions load offline from their pip package, and a missing or mismatched one is named with
the package and version to install (DuckDB refuses an extension built for another version)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from cssci_platform.lib.cluster.duckdb_extensions import (
    ExtensionUnavailable,
    duckdb_version,
    load_packaged_extension,
    packaged_extension_file,
)


@pytest.fixture
def fake_extension_package(tmp_path: Path) -> Iterator[Path]:
    """A package `duckdb_extension_fake` laid out as the pip packages are, holding a (non-loadable) file for v0.0.1."""
    folder = tmp_path / "duckdb_extension_fake" / "extensions" / "v0.0.1"
    folder.mkdir(parents=True)
    (tmp_path / "duckdb_extension_fake" / "__init__.py").write_text("")
    (folder / "fake.duckdb_extension").write_bytes(b"not an extension")
    sys.path.insert(0, str(tmp_path))
    yield folder / "fake.duckdb_extension"
    sys.path.remove(str(tmp_path))
    sys.modules.pop("duckdb_extension_fake", None)


def test_a_missing_extension_names_the_package_and_version_to_install() -> None:
    with pytest.raises(ExtensionUnavailable, match=r"pip install 'duckdb-extension-no-such-thing==1\.5\.6'"):
        packaged_extension_file("no_such_thing", "v1.5.6")


def test_an_extension_built_for_another_duckdb_names_both_versions(fake_extension_package: Path) -> None:
    assert packaged_extension_file("fake", "v0.0.1") == fake_extension_package
    with pytest.raises(ExtensionUnavailable, match=r"for DuckDB v0\.0\.1, but this is DuckDB v9\.9\.9"):
        packaged_extension_file("fake", "v9.9.9")


def test_loading_switches_off_automatic_installs(fake_extension_package: Path) -> None:
    con = duckdb.connect()
    with pytest.raises(ExtensionUnavailable):
        load_packaged_extension(con, "fake")  # this DuckDB is not v0.0.1
    assert con.execute("SELECT current_setting('autoinstall_known_extensions')").fetchone() == (False,)
    assert duckdb_version(con) == f"v{duckdb.__version__}"


def test_the_ducklake_extension_loads_offline_where_packaged_for_this_duckdb() -> None:
    try:
        packaged_extension_file("ducklake", f"v{duckdb.__version__}")
    except ExtensionUnavailable as error:
        pytest.skip(str(error))
    con = duckdb.connect()
    load_packaged_extension(con, "ducklake")
    loaded = con.execute("SELECT loaded FROM duckdb_extensions() WHERE extension_name = 'ducklake'").fetchone()
    assert loaded == (True,)
