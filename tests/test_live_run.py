"""`reid-pipeline run` with a live RTSP camera next to a file camera: restarts, a dead camera, credentials."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml
from cli_runner import start_cli
from rtsp_server import PerlRtspServer, free_port, make_clip, perl_server_missing

FILE_FRAMES = 60
LIVE_FRAMES = 120
FAST_RETRY = {"read_timeout_s": 2.0, "transport": "udp"}


@pytest.fixture(scope="module")
def clip(assets: Path, tmp_path_factory) -> Path:
    if reason := perl_server_missing():
        pytest.skip(reason)
    return make_clip(assets / "data/PETS09-S2L1/vtest.avi", tmp_path_factory.mktemp("live") / "pets.mp4")


def write_config(root: Path, assets: Path, live: dict) -> None:
    config = {
        "cameras": [
            {"id": "live", **live},
            {"id": "file", "source": str(assets / "data/PETS09-S2L1/vtest.avi"), "max_frames": FILE_FRAMES},
        ],
        "detector": {"name": "yolo", "weights": str(assets / "models/yolov8n_int8.onnx"), "imgsz": 320},
        "reid": {"weights": str(assets / "models/osnet_x0_25_msmt17.onnx")},
        "runner": {"progress": False},
    }
    (root / "cameras.yaml").write_text(yaml.safe_dump(config))


def camera_states(out: Path, camera: str) -> list[str]:
    events = [json.loads(line) for line in (out / "events.jsonl").read_text().splitlines()]
    return [e["state"] for e in events if e["kind"] == "camera_state" and e["camera_id"] == camera]


def test_live_camera_comes_back_after_restarts_and_the_file_camera_loses_nothing(clip, assets, tmp_path):
    server = PerlRtspServer(clip, tmp_path)
    server.start()
    try:
        # at most 4 frames a second, the live camera is still running at the second restart (30 s on)
        live = {"source": server.url, "max_frames": LIVE_FRAMES, "fps": 4, **FAST_RETRY}
        write_config(tmp_path, assets, live)
        process = start_cli("run", "cameras.yaml", "-o", "out", cwd=tmp_path)
        time.sleep(12)
        for _ in range(2):
            server.stop()
            time.sleep(3)
            server.start()
            time.sleep(6)
        _, stderr = process.communicate(timeout=300)
    finally:
        server.stop()
    assert process.returncode == 0, stderr[-2000:]
    info = json.loads((tmp_path / "out/run.json").read_text())
    assert info["cameras"]["file"]["frames_processed"] == FILE_FRAMES
    assert info["cameras"]["file"]["frames_dropped"] == 0
    assert info["cameras"]["live"]["frames_processed"] == LIVE_FRAMES
    assert info["cameras"]["live"]["reconnects"] >= 2
    states = camera_states(tmp_path / "out", "live")
    assert states.count("retrying") >= 2 and states[-1] in ("live", "stopped")


def test_dead_camera_fails_alone_and_its_password_stays_secret(assets, tmp_path):
    url = f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/stream"
    write_config(tmp_path, assets, {"source": url, "max_retries": 1, **FAST_RETRY})
    process = start_cli("run", "cameras.yaml", "-o", "out", cwd=tmp_path)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 1, stderr[-2000:]
    camera_lines = [line for line in stderr.splitlines() if "camera live:" in line and "ERROR" in line]
    assert len(camera_lines) == 1 and "rtsp://***@127.0.0.1" in camera_lines[0]
    out = tmp_path / "out"
    info = json.loads((out / "run.json").read_text())
    assert info["cameras"]["file"]["frames_processed"] == FILE_FRAMES
    assert camera_states(out, "live")[-1] == "failed"
    everything = stderr + "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.suffix in (".json", ".jsonl")
    )
    assert "s3cret" not in everything
