"""Shared fixtures: the offline assets folder, read from REID_ASSETS."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_AUTOINSTALL", "false")
os.environ.setdefault("YOLO_OFFLINE", "true")


@pytest.fixture(scope="session")
def assets() -> Path:
    """The folder of real weights and footage; tests that need it skip when REID_ASSETS is unset."""
    root = os.environ.get("REID_ASSETS")
    if not root:
        pytest.skip("set REID_ASSETS to the folder holding models/ and data/ (see README, 'Assets')")
    path = Path(root)
    if not (path / "models").is_dir() or not (path / "data").is_dir():
        pytest.skip(f"REID_ASSETS={root} has no models/ and data/ folders")
    return path.resolve()
