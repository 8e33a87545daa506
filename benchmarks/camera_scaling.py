"""Pipeline throughput and memory with 1, 2, 4, ... cameras, per-camera detectors against a shared one.

Every camera reads the same PETS09-S2L1 video (the same work per camera), so the figures differ only by the
number of cameras and the design: `per-camera` (each camera worker loads its own detector,
`runner.shared_detector=false`) and `shared` (one detector process batches the frames of all cameras and
tracks them per camera; camera workers only decode, sample crops and draw). Prints per design and camera
count: aggregate fps (frames of all cameras / run.json's wall seconds), the mean peak RSS of a camera worker,
the detector process's peak RSS, the peak RSS of the whole process tree (runner, camera workers, detector,
re-ID stage, matcher; summed over processes, sampled from /proc every 0.2 s), that total per camera, and
the peak summed PSS, which counts pages shared between processes once. Also the cost of sending one
full-size frame to the detector process (pickled through a multiprocessing queue).

    python benchmarks/camera_scaling.py --cameras 1 2 4 8 --frames 100
"""

from __future__ import annotations

import logging
import os
import tempfile
import time
from pathlib import Path

from common import MIB, PETS_VIDEO, PipelineRun, begin, benchmark_parser, run_pipeline, write_config

logger = logging.getLogger("camera_scaling")

DESIGNS = {"per-camera": False, "shared": True}


def measure(assets: Path, cameras: int, frames: int, folder: Path, video: bool, shared: bool) -> PipelineRun:
    """One pipeline run over `cameras` copies of the PETS video, `frames` frames each."""
    source = str(assets / PETS_VIDEO)
    design = "shared" if shared else "per-camera"
    config = write_config(
        folder / f"cameras{cameras}-{design}.yaml",
        assets,
        [{"id": f"cam{i}", "source": source, "max_frames": frames} for i in range(cameras)],
        output={"video": video},
        runner={"shared_detector": shared},
    )
    names = [*(f"cam{i}" for i in range(cameras)), *(["detector"] if shared else []), "reid", "matcher"]
    return run_pipeline(config, folder / f"out{cameras}-{design}", stage_names=names, sample_interval_s=0.2)


def _receive(inbox, outbox) -> None:
    while (frame := inbox.get()) is not None:
        outbox.put(frame.index)


def frame_transfer_ms(assets: Path, count: int = 200) -> float:
    """Milliseconds per full-size PETS frame (a pickled Frame) sent through a spawn queue to another process."""
    import multiprocessing as mp

    import cv2

    from pipeline.messages import Frame

    capture = cv2.VideoCapture(str(assets / PETS_VIDEO))
    ok, image = capture.read()
    capture.release()
    if not ok:
        raise RuntimeError(f"cannot read {assets / PETS_VIDEO}")
    context = mp.get_context("spawn")
    inbox, outbox = context.Queue(maxsize=8), context.Queue()
    receiver = context.Process(target=_receive, args=(inbox, outbox), daemon=True)
    receiver.start()
    inbox.put(Frame("cam", 1, 0.0, image))
    outbox.get()  # the receiver is up
    began = time.perf_counter()
    for index in range(2, count + 2):
        inbox.put(Frame("cam", index, 0.0, image))
    for _ in range(count):
        outbox.get()
    seconds = time.perf_counter() - began
    inbox.put(None)
    receiver.join()
    return seconds / count * 1000


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4], help="camera counts to run")
    parser.add_argument("--frames", type=int, default=200, help="frames per camera")
    parser.add_argument("--no-video", action="store_true", help="do not write annotated videos")
    parser.add_argument(
        "--designs", nargs="+", choices=list(DESIGNS), default=list(DESIGNS), help="designs to compare"
    )
    args = parser.parse_args(argv)
    begin(parser, args)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.cameras:
            for design in args.designs:
                run = measure(args.assets, count, args.frames, Path(tmp), not args.no_video, DESIGNS[design])
                logger.info("%s, %d cameras: %d frames in %.1f s", design, count, run.frames, run.run_seconds)
                rows.append((design, count, run))

    print(f"cpu cores: {os.cpu_count()}, frames per camera: {args.frames}, video: {not args.no_video}")
    print(f"one {PETS_VIDEO.name} frame through a process queue: {frame_transfer_ms(args.assets):.2f} ms")
    print(
        "design      cameras  frames  seconds  aggregate fps  camera worker RSS  detector RSS  "
        "total RSS  total RSS/camera  total PSS  re-ID crops"
    )
    for design, count, run in rows:
        fps = run.frames / run.run_seconds
        crops = run.info["stages"].get("reid", {}).get("crops", 0)
        workers = [rss for name, rss in run.peak_rss_per_process.items() if name.startswith("cam")]
        worker = sum(workers) / max(len(workers), 1)
        detector = run.peak_rss_per_process.get("detector", 0)
        print(
            f"{design:10s}  {count:7d}  {run.frames:6d}  {run.run_seconds:7.1f}  {fps:13.2f}  "
            f"{worker / MIB:17.0f}  {detector / MIB:12.0f}  {run.peak_rss_bytes / MIB:9.0f}  "
            f"{run.peak_rss_bytes / count / MIB:16.0f}  {run.peak_pss_bytes / MIB:9.0f}  {crops:11d}"
        )
    print("(RSS and PSS in MiB, peaks)")
    for design, count, run in rows:
        peaks = ", ".join(f"{name} {rss / MIB:.0f}" for name, rss in run.peak_rss_per_process.items())
        print(f"{design}, {count} cameras, peak RSS per process (MiB): {peaks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
