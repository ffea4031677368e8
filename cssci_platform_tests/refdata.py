"""Locate the shared reference data (`$CSSCI_REFDATA`, else `<repo>/../shared/refdata`); never copied into the repo."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


def refdata_root() -> Path:
    """The reference data folder; skips the calling test with the reason when it is absent (a user's clone)."""
    root = Path(os.environ.get("CSSCI_REFDATA") or REPO_ROOT.parent / "shared" / "refdata")
    if not root.is_dir():
        pytest.skip(f"reference data not found at {root} (set CSSCI_REFDATA or place ../shared/refdata)")
    return root
