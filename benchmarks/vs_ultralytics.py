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
ultralytics (`direct_onnx=False`) take the frames themselves. The three take turns on blocks of frames, so load on
the machine falls on all of them; printed are fps after the first call, fps with loading (building the session
or detector and the first call) and the ratios against the raw model.

    python benchmarks/vs_ultralytics.py --frames 795 --repeats 2
    python benchmarks/vs_ultralytics.py --frames 200 --detector-only
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
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


def read_frames(video: Path, start: int, count: int) -> list[np.ndarray]:
    """Up to `count` BGR frames of `video` from frame `start` (0-based)."""
    capture = cv2.VideoCapture(str(video))
    capture.set(cv2.CAP_PROP_POS_FRAMES, start)
    frames = []
    while len(frames) < count:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


def detector_stage(weights: Path, video: Path, frames: int, block: int = 10) -> dict[str, dict[str, float]]:
    """Seconds of the raw model, the detector and the detector through ultralytics on the first `frames` frames.

    Per row: `load_seconds` (building the session or detector, and its first call), `steady_seconds` (the other
    calls) and `frames`. The rows take turns on blocks of `block` frames, in a rotating order.
    """
    import onnxruntime as ort

    from detectors import create_detector
    from detectors.yolo_onnx import letterbox
    from pipeline.ort_options import session_options

    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")
    stats = {row: {"frames": 0, "load_seconds": 0.0, "steady_seconds": 0.0} for row in DETECTOR_ROWS}
    runners: dict[str, object] = {}
    inputs = np.empty((1, 3, 640, 640), np.float32)

    def build(row: str):
        if row == "raw model":
            session = ort.InferenceSession(
                str(weights), session_options(), providers=["CPUExecutionProvider"]
            )
            name = session.get_inputs()[0].name
            return lambda frame: session.run(None, {name: frame})
        detector = create_detector("yolo", weights=weights, direct_onnx=row == "detector")
        return lambda frame: detector.detect([frame])

    done = 0
    while done < frames:
        block_frames = read_frames(video, done, min(block, frames - done))
        if not block_frames:
            break
        blobs = []
        for frame in block_frames:  # the raw model's input, made outside its timing
            letterbox(frame, (640, 640), inputs[0])
            blobs.append(inputs.copy())
        turn = (done // block) % len(DETECTOR_ROWS)
        for row in DETECTOR_ROWS[turn:] + DETECTOR_ROWS[:turn]:
            feed = blobs if row == "raw model" else block_frames
            for item in feed:
                began = time.perf_counter()
                first = row not in runners
                if first:
                    runners[row] = build(row)
                runners[row](item)
                stats[row]["load_seconds" if first else "steady_seconds"] += time.perf_counter() - began
                stats[row]["frames"] += 1
        done += len(block_frames)
    return stats


def print_detector_stage(stats: dict[str, dict[str, float]]) -> None:
    """The detector-stage table and its ratios against the raw model."""
    fps = {}
    for row, s in stats.items():
        steady = (s["frames"] - 1) / s["steady_seconds"] if s["frames"] > 1 else float("nan")
        with_load = s["frames"] / (s["load_seconds"] + s["steady_seconds"])
        fps[row] = (steady, with_load)
    frames = stats["raw model"]["frames"]
    print(f"detector stage, {frames} frames, one frame per call, cpu cores: {os.cpu_count()}")
    print(f"{'row':<26}{'fps':>8}{'ms/frame':>10}{'fps with load':>15}{'load s':>8}")
    for row, (steady, with_load) in fps.items():
        load = stats[row]["load_seconds"]
        print(f"{row:<26}{steady:>8.2f}{1000 / steady:>10.1f}{with_load:>15.2f}{load:>8.2f}")
    raw = fps["raw model"]
    for row in DETECTOR_ROWS[1:]:
        print(
            f"ratio {row}/raw model: {fps[row][0] / raw[0]:.2f}x after the first call, "
            f"{fps[row][1] / raw[1]:.2f}x with load"
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
        config = write_config(Path(tmp) / "one.yaml", args.assets, [{"id": "pets", "source": str(video)}])
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
