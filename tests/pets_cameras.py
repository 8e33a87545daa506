"""Test helper: a two-camera set cut from PETS09-S2L1 and a run config over it."""

from __future__ import annotations

from pathlib import Path

import yaml

from pipeline.tools.multicam import make_multicam
from pipeline.tools.virtual_cameras import preset_cameras


def write_pets_cameras(assets: Path, root: Path, frames: int, **settings) -> Path:
    """Cut the overlap split's two cameras into `root`, write `root/cameras.yaml`; return the gt manifest."""
    manifest = make_multicam(
        assets / "data/PETS09-S2L1/vtest.avi",
        root / "cameras",
        preset_cameras("overlap", frames),
        max_frames=frames,
    )
    cameras = yaml.safe_load(manifest.read_text())["cameras"]
    config = {
        "cameras": [{"id": c["id"], "source": str(manifest.parent / c["video"])} for c in cameras],
        "detector": {"name": "yolo", "weights": "${REID_ASSETS}/models/yolov8n_int8.onnx", "confidence": 0.3},
        "reid": {"embedder": "onnx", "weights": "${REID_ASSETS}/models/osnet_x0_25_msmt17.onnx"},
        "topology": {"overlaps": [[cameras[0]["id"], cameras[1]["id"]]]},
        **settings,
    }
    (root / "cameras.yaml").write_text(yaml.safe_dump(config))
    return manifest
