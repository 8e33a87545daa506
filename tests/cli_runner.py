"""Test helpers: the `reid-pipeline` command run in a child process, as a user runs it, and its outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import yaml

COMMAND = [sys.executable, "-m", "pipeline.cli"]


def run_cli(*args: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the command to its end; stdout and stderr captured as text."""
    return subprocess.run([*COMMAND, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def start_cli(*args: str, cwd: Path, new_session: bool = False) -> subprocess.Popen:
    """Start the command and return at once (to signal it, or to act while it runs).

    `new_session` puts the run in a process group of its own, so a test can signal the whole group.
    """
    return subprocess.Popen(
        [*COMMAND, *args],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )


def wait_for(path: Path, timeout_s: float = 120.0) -> None:
    """Wait until `path` exists."""
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def check_outputs(out: Path, max_frame: int) -> dict:
    """Every output a finished or stopped run leaves must parse and agree with run.json; returns run.json."""
    info = json.loads((out / "run.json").read_text())
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["schema_version"] == 1
    frames = {c["id"]: c["frames"] for c in tracks["cameras"]}
    for camera, count in frames.items():
        assert info["cameras"][camera]["frames_processed"] == count
        for line in (out / "mot" / f"{camera}.txt").read_text().splitlines():
            fields = line.split(",")
            assert len(fields) == 10 and 1 <= int(fields[0]) <= max_frame
        if count:
            video = cv2.VideoCapture(str(out / "videos" / f"{camera}.avi"))
            assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == count
    for line in (out / "events.jsonl").read_text().splitlines():
        json.loads(line)
    assert json.loads((out / "topology.json").read_text())["schema_version"] == 1
    assert not list(out.rglob("*.partial.*"))
    return info


def finished_videos(out: Path) -> list[Path]:
    """The videos a run completed or salvaged; one still named .partial was cut before it could be read."""
    return [v for v in (out / "videos").glob("*.avi") if ".partial" not in v.name]


def write_run_config(root: Path, assets: Path, cameras: str) -> Path:
    """`root/cameras.yaml` over the real detector and re-ID weights; `cameras` is the YAML of its camera list."""
    path = root / "cameras.yaml"
    path.write_text(
        f"cameras:\n{cameras}detector:\n  name: yolo\n  weights: {assets}/models/yolov8n_int8.onnx\n"
        f"reid:\n  weights: {assets}/models/osnet_x0_25_msmt17.onnx\n"
    )
    return path


def run_vpm_tiny(assets: Path, root: Path, **sections: dict) -> tuple[Path, subprocess.CompletedProcess]:
    """Run 12 PETS frames in `root` with a randomly initialised VPM-Net tiny checkpoint as the embedder.

    `sections` are merged into the config's top-level sections. Returns the checkpoint and the run.
    """
    from reid.models import create_model
    from reid.models.weights import save_checkpoint

    checkpoint = save_checkpoint(create_model("vpm_tiny", num_classes=4), root / "vpm_tiny.pt")
    config = {
        "cameras": [{"id": "cam", "source": str(assets / "data/PETS09-S2L1/vtest.avi"), "max_frames": 12}],
        "detector": {"name": "yolo", "weights": str(assets / "models/yolov8n_int8.onnx"), "imgsz": 320},
        "reid": {"embedder": "vpm", "weights": str(checkpoint), "model": "vpm_tiny"},
        "sampler": {"every_k": 2},
        "runner": {"progress": False},
        **sections,
    }
    (root / "cameras.yaml").write_text(yaml.safe_dump(config))
    return checkpoint, run_cli("run", "cameras.yaml", "-o", "out", "--device", "cpu", cwd=root)
