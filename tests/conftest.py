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


PETS_RUN_FRAMES = 200


@pytest.fixture(scope="session")
def pets_finished_run(assets: Path, tmp_path_factory) -> tuple[Path, Path]:
    """A finished run over the first 200 frames of the PETS09-S2L1 two-camera overlap split.

    Returns the run's output folder and the set's ground-truth manifest. Shared by the tests of search,
    forget and the viewer: tests that change a run copy the folder first.
    """
    from cli_runner import run_cli
    from pets_cameras import write_pets_cameras

    root = tmp_path_factory.mktemp("pets_run")
    manifest = write_pets_cameras(assets, root, PETS_RUN_FRAMES)
    result = run_cli("run", "cameras.yaml", "-o", "out", "--no-progress", cwd=root, timeout=900)
    assert result.returncode == 0, result.stderr[-2000:]
    return root / "out", manifest
