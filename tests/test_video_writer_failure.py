"""A video writer that cannot open, or a 1x1 video, ends that camera with one line, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from cli_runner import run_cli, write_run_config

from pipeline.errors import PipelineError
from pipeline.messages import Frame, Tracks
from pipeline.sinks.video import AnnotatedVideoWriter


def _frame(height: int = 48, width: int = 64) -> Frame:
    return Frame("cam", 1, 0.0, np.zeros((height, width, 3), np.uint8))


def _tracks() -> Tracks:
    return Tracks(
        "cam",
        1,
        0.0,
        np.array([[2, 2, 20, 30]], np.float32),
        np.array([0.9], np.float32),
        np.array([1], np.int64),
    )


def test_writes_and_moves_the_video_into_place(tmp_path: Path):
    writer = AnnotatedVideoWriter(tmp_path / "videos/cam.avi", fps=5.0)
    for _ in range(3):
        writer.write(_frame(), _tracks(), {1: 7})
    writer.close()
    writer.close()  # a second close is harmless
    capture = cv2.VideoCapture(str(tmp_path / "videos/cam.avi"))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert list((tmp_path / "videos").iterdir()) == [tmp_path / "videos/cam.avi"]


@pytest.mark.parametrize(
    ("codec", "frame", "message"),
    [
        ("zzzz", _frame(), "cannot open a video writer with codec 'zzzz' for 64x48 frames"),
        ("mp4v", _frame(1, 1), "cannot open a video writer with codec 'mp4v' for 1x1 frames"),
    ],
    ids=["unknown-codec", "1x1"],
)
def test_a_writer_that_cannot_open_fails_once_and_closes_cleanly(tmp_path: Path, codec, frame, message):
    writer = AnnotatedVideoWriter(tmp_path / "videos/cam.avi", fps=5.0, codec=codec)
    with pytest.raises(PipelineError, match=message):
        writer.write(frame, _tracks()[np.zeros(1, bool)], {})
    writer.close()  # no AttributeError: nothing was opened
    assert not list((tmp_path / "videos").iterdir())  # no partial file left behind


def test_an_output_folder_that_cannot_be_made_is_a_pipeline_error(tmp_path: Path):
    (tmp_path / "videos").write_text("a file where the folder should be")
    writer = AnnotatedVideoWriter(tmp_path / "videos/cam.avi", fps=5.0)
    with pytest.raises(PipelineError, match="cannot create its folder"):
        writer.write(_frame(), _tracks(), {})
    writer.close()


@pytest.fixture
def workspace(tmp_path: Path, assets: Path) -> Path:
    """Two cameras: cam_a over PETS, cam_b over a 1x1 video that no mp4v writer can encode."""
    writer = cv2.VideoWriter(str(tmp_path / "tiny.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (1, 1))
    assert writer.isOpened()
    for value in range(0, 250, 50):
        writer.write(np.full((1, 1, 3), value, np.uint8))
    writer.release()
    (tmp_path / "video.avi").symlink_to(assets / "data/PETS09-S2L1/vtest.avi")
    write_run_config(
        tmp_path,
        assets,
        "  - id: cam_a\n    source: video.avi\n  - id: cam_b\n    source: tiny.avi\n",
    )
    return tmp_path


def _failure_lines(stderr: str) -> list[str]:
    return [line for line in stderr.strip().splitlines() if "cannot open a video writer" in line]


def test_a_1x1_video_ends_its_camera_with_one_line(workspace: Path):
    result = run_cli("run", "cameras.yaml", "-o", "out", "--max-frames", "2", "--no-progress", cwd=workspace)
    assert "Traceback" not in result.stderr and "AttributeError" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stderr  # cam_a finished
    lines = _failure_lines(result.stderr)
    assert len(lines) == 1, result.stderr
    assert "camera cam_b" in lines[0] and "1x1" in lines[0]
    info = json.loads((workspace / "out/run.json").read_text())
    assert info["cameras"]["cam_a"]["reason"] == "end"
    assert info["cameras"]["cam_b"]["reason"].startswith("error: camera cam_b:")
    assert (workspace / "out/videos/cam_a.avi").is_file()
    assert not list((workspace / "out").rglob("*.partial.*"))


def test_when_every_camera_fails_the_exit_code_is_2(workspace: Path):
    config = workspace / "cameras.yaml"
    config.write_text(config.read_text().replace("  - id: cam_a\n    source: video.avi\n", ""))
    result = run_cli("run", "cameras.yaml", "-o", "out", "--no-progress", cwd=workspace)
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(_failure_lines(result.stderr)) == 1, result.stderr
