"""The pipeline against Ultralytics' own tracker on one video, same weights, both on the CPU, in one run.

Ultralytics: `YOLO(weights).track(source=video, tracker="bytetrack.yaml", stream=True)` (detect + track).
Pipeline: `reid-pipeline run` on one camera of the same video (detect + track + re-ID + matching + annotated
video + exports). Each side runs in a fresh process, alternately (U, P, U, P, ...); medians are printed:
fps over the processing (Ultralytics: the tracking loop with model load; pipeline: run.json's wall seconds,
which include starting its processes), over the whole command including start-up, and in the steady state
(Ultralytics after its first frame; pipeline: the camera worker's per-step seconds), the ratios pipeline /
Ultralytics, and where the pipeline's camera worker spent its time.

First, in this process, the detector stage against the raw model on the same frames: the raw model is an
onnxruntime session with the detector's session options, run on the frames letterboxed beforehand; the detector
(`create_detector("yolo")`, one frame per call as a one-camera stage makes them) and the same detector through
ultralytics (`direct_onnx=False`) take the frames themselves. The three take turns on each block of 5 frames, so
load on the machine falls on all of them; printed are fps after the first block, fps with loading (building the
session or detector: `load s` with the first call) and the ratios against the raw model, of the totals and the
median of the blocks' ratios.

    python benchmarks/vs_ultralytics.py --frames 795 --repeats 2
    python benchmarks/vs_ultralytics.py --frames 200 --detector-only
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
from common import (
    DETECTOR_WEIGHTS,
    PETS_VIDEO,
    ROOT,
    begin,
    benchmark_parser,
    median,
    run_pipeline,
    write_config,
)

logger = logging.getLogger("vs_ultralytics")

DETECTOR_ROWS = ("raw model", "detector", "detector via ultralytics")


def detector_stage(weights: Path, video: Path, frames: int, block: int = 5) -> dict[str, dict]:
    """Seconds of the raw model, the detector and the detector through ultralytics on the first `frames` frames.

    The rows take turns on each block of `block` frames, in a rotating order. Per row: `first_seconds` (the first
    block, with building the session or detector), `load_seconds` (building and the first call) and `blocks`,
    the seconds of each later block; `frames` and `first_frames` are the same for every row.
    """
    import onnxruntime as ort

    from detectors import create_detector
    from detectors.yolo_onnx import letterbox
    from pipeline.ort_options import session_options

    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")
    stats: dict[str, dict] = {row: {"load_seconds": 0.0, "blocks": []} for row in DETECTOR_ROWS}
    runners: dict[str, Callable[[np.ndarray], object]] = {}

    def build(row: str) -> Callable[[np.ndarray], object]:
        if row == "raw model":
            session = ort.InferenceSession(
                str(weights), session_options(), providers=["CPUExecutionProvider"]
            )
            name = session.get_inputs()[0].name
            return lambda blob: session.run(None, {name: blob})
        detector = create_detector("yolo", weights=weights, direct_onnx=row == "detector")
        return lambda frame: detector.detect([frame])

    capture = cv2.VideoCapture(str(video))
    done = 0
    for number in range(math.ceil(frames / block)):
        block_frames = []
        while len(block_frames) < min(block, frames - done):
            ok, frame = capture.read()
            if not ok:
                break
            block_frames.append(frame)
        if not block_frames:
            break
        blobs = []  # the raw model's input, made outside its timing
        for frame in block_frames:
            blobs.append(np.empty((1, 3, 640, 640), np.float32))
            letterbox(frame, (640, 640), blobs[-1][0])
        turn = number % len(DETECTOR_ROWS)
        for row in DETECTOR_ROWS[turn:] + DETECTOR_ROWS[:turn]:
            began = time.perf_counter()
            for item in blobs if row == "raw model" else block_frames:
                if row not in runners:
                    runners[row] = build(row)
                    runners[row](item)
                    stats[row]["load_seconds"] = time.perf_counter() - began
                else:
                    runners[row](item)
            seconds = time.perf_counter() - began
            stats[row].update(first_seconds=seconds) if number == 0 else stats[row]["blocks"].append(seconds)
        done += len(block_frames)
        if number == 0:
            first_frames = done
    capture.release()
    for row in stats.values():
        row.update(frames=done, first_frames=first_frames)
    return stats


def print_detector_stage(stats: dict[str, dict]) -> None:
    """The detector-stage table and its ratios against the raw model."""
    any_row = stats[DETECTOR_ROWS[0]]
    frames, later = any_row["frames"], any_row["frames"] - any_row["first_frames"]
    print(f"detector stage, {frames} frames, one frame per call, cpu cores: {os.cpu_count()}")
    print(f"{'row':<26}{'fps':>8}{'ms/frame':>10}{'fps with load':>15}{'load s':>8}")
    fps = {}
    for row, s in stats.items():
        steady = later / sum(s["blocks"]) if s["blocks"] else float("nan")
        fps[row] = (steady, frames / (s["first_seconds"] + sum(s["blocks"])))
        print(f"{row:<26}{steady:>8.2f}{1000 / steady:>10.1f}{fps[row][1]:>15.2f}{s['load_seconds']:>8.2f}")
    raw = stats["raw model"]["blocks"]
    for row in DETECTOR_ROWS[1:]:
        per_block = median([r / d for r, d in zip(raw, stats[row]["blocks"], strict=True)])
        print(
            f"ratio {row}/raw model: {fps[row][0] / fps['raw model'][0]:.2f}x after the first block "
            f"(median of the blocks' ratios {per_block:.2f}x), {fps[row][1] / fps['raw model'][1]:.2f}x with load"
        )


def ultralytics_track(weights: Path, video: Path, frames: int) -> dict[str, float]:
    """Track the first `frames` frames with Ultralytics.

    Seconds of the import, of the loop (model load and first frame included) and of the steady state
    (after the first frame: what the pipeline's per-step camera timings cover).
    """
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")
    began = time.perf_counter()
    from ultralytics import YOLO

    imported = time.perf_counter()
    model = YOLO(str(weights), task="detect")
    count, first = 0, imported
    results = model.track(
        source=str(video), tracker="bytetrack.yaml", stream=True, verbose=False, device="cpu"
    )
    for _ in results:
        count += 1
        if count == 1:
            first = time.perf_counter()
        if count >= frames:
            break
    end = time.perf_counter()
    return {
        "frames": count,
        "import_seconds": imported - began,
        "loop_seconds": end - imported,
        "steady_seconds": end - first,
    }


def run_ultralytics(weights: Path, video: Path, frames: int, env: dict[str, str]) -> dict[str, float]:
    """`ultralytics_track` in a fresh interpreter; adds the whole command's wall seconds."""
    command = [sys.executable, __file__, "--child", "--weights", str(weights), "--video", str(video)]
    command += ["--frames", str(frames)]
    began = time.perf_counter()
    result = subprocess.run(
        command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"ultralytics run failed:\n{result.stderr[-2000:]}")
    return {**json.loads(result.stdout.strip().splitlines()[-1]), "command_seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=795, help="frames of PETS09-S2L1 (795: all)")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each side, alternating")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--env", action="append", default=[], metavar="KEY=VALUE", help="pipeline only")
    parser.add_argument(
        "--detector-only", action="store_true", help="only the detector stage against the raw model"
    )
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--weights", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--video", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        sys.stdout.write(json.dumps(ultralytics_track(args.weights, args.video, args.frames)) + "\n")
        return 0
    begin(parser, args)

    video, weights = args.assets / PETS_VIDEO, args.assets / DETECTOR_WEIGHTS
    print_detector_stage(detector_stage(weights, video, args.frames))
    if args.detector_only:
        return 0
    pipeline_env = dict(item.split("=", 1) for item in args.env)
    ultra, runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        cameras = [{"id": "pets", "source": str(video)}]
        # the same tracker as ultralytics' run, so that the two differ only in how they run it
        config = write_config(Path(tmp) / "one.yaml", args.assets, cameras, tracker={"method": "bytetrack"})
        for repeat in range(1, args.repeats + 1):
            ultra.append(run_ultralytics(weights, video, args.frames, {}))
            logger.info(
                "run %d ultralytics: %d frames, loop %.1f s, after the first frame %.1f s, command %.1f s",
                repeat,
                ultra[-1]["frames"],
                ultra[-1]["loop_seconds"],
                ultra[-1].get("steady_seconds", float("nan")),
                ultra[-1]["command_seconds"],
            )
            out_dir = Path(tmp) / f"out{repeat}"
            runs.append(
                run_pipeline(
                    config,
                    out_dir,
                    max_frames=args.frames,
                    overrides=args.overrides,
                    env=pipeline_env,
                    sample_interval_s=None,
                )
            )
            logger.info(
                "run %d pipeline: %d frames, run.json %.1f s, command %.1f s, camera %s",
                repeat,
                runs[-1].frames,
                runs[-1].run_seconds,
                runs[-1].command_seconds,
                runs[-1].camera_seconds("pets"),
            )

    u_loop = median([u["frames"] / u["loop_seconds"] for u in ultra])
    u_cmd = median([u["frames"] / u["command_seconds"] for u in ultra])
    u_steady = median([(u["frames"] - 1) / u["steady_seconds"] for u in ultra if u["frames"] > 1])
    p_run = median([r.frames / r.run_seconds for r in runs])
    p_cmd = median([r.frames / r.command_seconds for r in runs])
    p_steady = median([r.frames / sum(r.camera_seconds("pets").values()) for r in runs])
    steps = {
        step: median([r.camera_seconds("pets").get(step, 0.0) for r in runs])
        for step in runs[0].camera_seconds("pets")
    }
    reid = runs[-1].info["stages"].get("reid", {})
    matcher = runs[-1].info["stages"].get("matcher", {})
    print(f"cpu cores: {os.cpu_count()}, frames: {args.frames}, repeats: {args.repeats} (medians)")
    if pipeline_env:
        shown = {k: v for k, v in pipeline_env.items() if k != "PYTHONPATH"}
        print(f"pipeline environment: {shown}, overrides: {args.overrides}")
    print(
        f"ultralytics: {u_loop:.2f} fps tracking loop, {u_cmd:.2f} fps whole command, "
        f"{u_steady:.2f} fps after the first frame"
    )
    print(
        f"pipeline:    {p_run:.2f} fps run.json wall, {p_cmd:.2f} fps whole command, "
        f"{p_steady:.2f} fps camera worker steps"
    )
    print(
        f"ratio pipeline/ultralytics: {p_run / u_loop:.2f}x processing, {p_cmd / u_cmd:.2f}x whole command, "
        f"{p_steady / u_steady:.2f}x steady state"
    )
    per_frame = ", ".join(f"{step} {1000 * s / args.frames:.1f}" for step, s in steps.items())
    print(f"pipeline camera ms/frame: {per_frame}; total {1000 * sum(steps.values()) / args.frames:.1f}")
    print(
        f"pipeline re-ID: {reid.get('crops', 0)} crops in {reid.get('embed_seconds', 0.0):.1f} s, "
        f"mean batch {reid.get('mean_batch_size', 0.0):.1f}; matcher {matcher.get('seconds', 0.0):.1f} s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
