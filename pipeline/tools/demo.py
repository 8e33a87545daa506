"""`reid-pipeline demo`: cut two cameras from real footage and run the full pipeline on them.

With REID_ASSETS set, everything comes from that folder (no network). Without it, the footage is fetched
into a cache folder and checked against its SHA-256, and the weights are fetched by the libraries that
own them (ultralytics for YOLOv8n, open_clip for CLIP ViT-B/16 behind the `vpm` embedder).
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import urllib.error
import urllib.request
from pathlib import Path

import yaml

from pipeline import config as config_module
from pipeline import runner
from pipeline.errors import PipelineError
from pipeline.tools.multicam import make_multicam, source_length
from pipeline.tools.virtual_cameras import preset_cameras

log = logging.getLogger(__name__)

FOOTAGE_URL = "https://github.com/opencv/opencv/raw/4.x/samples/data/vtest.avi"
FOOTAGE_SHA256 = "45cddc9490be69345cbdab64ca583be65987e864ca408038e648db99e10516cf"
DEFAULT_CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "reid-pipeline"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="reid-pipeline demo", description=__doc__.splitlines()[0])
    parser.add_argument("-o", "--output", type=Path, default=Path("out/demo"), help="output folder")
    parser.add_argument("--frames", type=int, default=300, help="source frames to use (PETS has 795)")
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="where fetched footage is kept")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    assets = os.environ.get("REID_ASSETS")
    if assets:
        footage = Path(assets) / "data/PETS09-S2L1/vtest.avi"
        detector = {
            "name": "yolo",
            "weights": str(Path(assets) / "models/yolov8n_int8.onnx"),
            "confidence": 0.3,
        }
        reid = {"embedder": "onnx", "weights": str(Path(assets) / "models/osnet_x0_25_msmt17.onnx")}
    else:
        footage = fetch(FOOTAGE_URL, FOOTAGE_SHA256, args.cache / "vtest.avi")
        os.environ["YOLO_OFFLINE"] = "false"  # let ultralytics fetch yolov8n.pt (inherited by the workers)
        detector = {"name": "yolo", "weights": "yolov8n.pt", "confidence": 0.3}
        reid = {"embedder": "vpm", "model": "vpm_vit_b16", "pretrained": "openai"}

    cameras_dir = args.output / "cameras"
    frames = min(args.frames, source_length(footage))
    manifest = make_multicam(footage, cameras_dir, preset_cameras("overlap", frames), max_frames=frames)
    cameras = yaml.safe_load(manifest.read_text())["cameras"]
    raw = {
        "cameras": [
            {"id": c["id"], "source": str((manifest.parent / c["video"]).resolve())} for c in cameras
        ],
        "detector": detector,
        "reid": reid,
        "topology": {"overlaps": [[cameras[0]["id"], cameras[1]["id"]]]},
    }
    config_path = args.output / "cameras.yaml"
    config_path.write_text(yaml.safe_dump(raw, sort_keys=False))
    result = runner.run(config_module.from_dict(raw), args.output / "run", log_level=logging.WARNING)
    print(f"demo config:      {config_path}")
    print(f"annotated videos: {result.out_dir / 'videos'}")
    print(f"cross-camera ids: {result.out_dir / 'tracks.json'}")
    if (manifest.parent / cameras[0]["gt"]).exists():
        print(f"evaluate with:    reid-pipeline eval {result.out_dir} {manifest}")
    return 0 if result.status == "complete" else 1


def fetch(url: str, sha256: str, path: Path) -> Path:
    """Download `url` to `path` once, checking its SHA-256; no network ends with one line saying what to do."""
    if path.exists() and _sha256(path) == sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".download")
    log.info("fetching %s", url)
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(partial, "wb") as f:
            while chunk := response.read(1 << 20):
                f.write(chunk)
    except (urllib.error.URLError, OSError) as e:
        raise PipelineError(
            f"cannot fetch the demo footage ({getattr(e, 'reason', e)}); with no network, set REID_ASSETS "
            "to a folder holding models/ and data/PETS09-S2L1 (see README, 'Assets')"
        ) from None
    if _sha256(partial) != sha256:
        partial.unlink()
        raise PipelineError(f"{url}: checksum mismatch; the download was removed, try again")
    partial.replace(path)
    return path


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()
