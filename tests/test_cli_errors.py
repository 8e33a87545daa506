"""Bad input through the CLI: one clear line naming the camera or config path, non-zero exit, no traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_cli, write_run_config


@pytest.fixture
def workspace(tmp_path: Path, assets: Path) -> Path:
    """A folder with a valid one-camera config over a real video, to break in one way per test."""
    (tmp_path / "video.avi").symlink_to(assets / "data/PETS09-S2L1/vtest.avi")
    write_run_config(
        tmp_path,
        assets,
        "  - id: cam_a\n    source: video.avi\n",
    )
    return tmp_path


def edit(workspace: Path, old: str, new: str) -> None:
    path = workspace / "cameras.yaml"
    path.write_text(path.read_text().replace(old, new))


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("source: video.avi", "source: missing.avi", "camera cam_a"),
        ("cameras:", "cameras: [\n", "malformed YAML"),
        ("detector:", "detektor:", "detektor: unknown key; did you mean 'detector'?"),
        (
            "source: video.avi",
            "source: video.avi\n    fps: [7]",
            "cameras[0].fps: expected float or null, got list",
        ),
        (
            "detector:",
            "  - id: cam_a\n    source: video.avi\ndetector:",
            "cameras[1].id: duplicate camera id 'cam_a'",
        ),
        ("yolov8n_int8.onnx", "no_such_weights.onnx", "detector.weights: weights file"),
        ("osnet_x0_25_msmt17.onnx", "missing_reid.onnx", "reid.weights: weights file"),
    ],
    ids=[
        "missing-video",
        "malformed-yaml",
        "unknown-key",
        "wrong-type",
        "duplicate-id",
        "no-detector",
        "no-reid",
    ],
)
def test_bad_input_gives_one_line(workspace, old, new, expected):
    edit(workspace, old, new)
    result = run_cli("run", "cameras.yaml", "-o", "out", "--max-frames", "2", cwd=workspace)
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


def test_unreadable_video_names_the_camera(workspace):
    (workspace / "not_a_video.mp4").write_bytes(b"this is not a video" * 100)
    edit(workspace, "source: video.avi", "source: not_a_video.mp4")
    result = run_cli("run", "cameras.yaml", "-o", "out", cwd=workspace)
    assert result.returncode != 0
    assert len(result.stderr.strip().splitlines()) == 1
    assert "cam_a" in result.stderr and "not_a_video.mp4" in result.stderr


def test_unwritable_output_folder(workspace):
    (workspace / "a_file").write_text("")
    result = run_cli("run", "cameras.yaml", "-o", "a_file/out", cwd=workspace)
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        line
        for line in result.stderr.strip().splitlines()
        if "output folder a_file/out is not writable" in line
    ]


def test_a_store_that_is_not_a_database(workspace):
    (workspace / "store.sqlite").write_text("not a database\n" * 100)
    result = run_cli(
        "-q", "run", "cameras.yaml", "-o", "out", "--set", "store.path=store.sqlite", cwd=workspace
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "store.sqlite is not a usable SQLite database" in result.stderr.strip().splitlines()[-1]
    assert json.loads((workspace / "out/run.json").read_text())["status"] == "failed"
