"""DuckDB extensions loaded offline from pip packages (`duckdb-extension-<name>`), never downloaded at run time.

Each package holds `extensions/<DuckDB version>/<name>.duckdb_extension`; DuckDB loads a C++ extension only when it
was built for exactly its own version ("can only be loaded with that version of DuckDB"), so the package's version
must equal DuckDB's: pin both together.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb

from cssci_platform.lib.failures import ExplainedError


class ExtensionUnavailable(ExplainedError):
    """A DuckDB extension is not installed for this DuckDB version; the message says which package to pin."""


def duckdb_version(con: duckdb.DuckDBPyConnection) -> str:
    """The connection's DuckDB version as extensions name it, e.g. 'v1.5.5'."""
    row = con.execute("PRAGMA version").fetchone()
    return str(row[0]) if row else f"v{duckdb.__version__}"


def packaged_extension_file(name: str, version: str) -> Path:
    """The `.duckdb_extension` file of `name` for DuckDB `version` from its pip package; raises naming the fix."""
    package = f"duckdb-extension-{name.replace('_', '-')}"
    spec = importlib.util.find_spec(f"duckdb_extension_{name}")
    folders = list(spec.submodule_search_locations or []) if spec is not None else []
    if not folders:
        raise ExtensionUnavailable(
            f"the DuckDB extension `{name}` is not installed: pip install '{package}=={version.lstrip('v')}' where "
            f"published, else pin duckdb to the newest version {package} is published for (it must match DuckDB "
            f"{version} exactly)")
    root = Path(folders[0]) / "extensions"
    file = root / version / f"{name}.duckdb_extension"
    if not file.exists():
        built_for = sorted(folder.name for folder in root.iterdir()) if root.is_dir() else []
        raise ExtensionUnavailable(
            f"the installed {package} holds `{name}` for DuckDB {', '.join(built_for) or 'no version'}, but this is "
            f"DuckDB {version}: install '{package}=={version.lstrip('v')}' or pin duckdb to the package's version")
    return file


def load_packaged_extension(con: duckdb.DuckDBPyConnection, name: str) -> Path:
    """LOAD extension `name` (e.g. 'ducklake', 'postgres_scanner') into `con` from its pip package, with automatic
    installs switched off so nothing is fetched from the network; returns the file loaded."""
    con.execute("SET autoinstall_known_extensions = false")
    file = packaged_extension_file(name, duckdb_version(con))
    con.execute(f"LOAD '{file}'")
    return file
