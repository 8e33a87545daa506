"""A corrupt, truncated video file: undecodable frames are skipped and counted, the camera ends cleanly."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import yaml
from cli_runner import run_cli

FRAMES = 30


def write_corrupt_video(source: Path, path: Path) -> None:
    """MJPG AVI of the first frames of `source`, with random bytes over a stretch and the end cut off."""
    capture = cv2.VideoCapture(str(source))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 7, (768, 576))
    for _ in range(FRAMES):
        writer.write(capture.read()[1])
    writer.release()
    data = bytearray(path.read_bytes())
    n = len(data)
    data[n // 3 : n // 2] = (
        np.random.default_rng(0).integers(0, 256, n // 2 - n // 3, dtype=np.uint8).tobytes()
    )
    path.write_bytes(bytes(data[: int(n * 0.85)]))


def test_corrupt_video_is_skipped_and_counted(assets: Path, tmp_path: Path):
    write_corrupt_video(assets / "data/PETS09-S2L1/vtest.avi", tmp_path / "corrupt.avi")
    config = {
        "cameras": [{"id": "cam", "source": "corrupt.avi"}],
        "detector": {"name": "yolo", "weights": str(assets / "models/yolov8n_int8.onnx"), "imgsz": 320},
        "reid": {"weights": str(assets / "models/osnet_x0_25_msmt17.onnx")},
        "runner": {"progress": False},
    }
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("run", "cameras.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    stats = json.loads((tmp_path / "out/run.json").read_text())["cameras"]["cam"]
    assert stats["reason"] == "end"
    assert stats["frames_failed"] > 0
    assert 0 < stats["frames_processed"] < FRAMES
    video = cv2.VideoCapture(str(tmp_path / "out/videos/cam.avi"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == stats["frames_processed"]
