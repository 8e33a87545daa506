"""Pipeline throughput and memory with 1, 2, 4, ... cameras, in one run.

Every camera reads the same PETS09-S2L1 video (the same work per camera), so the figures differ only by the
number of cameras. Prints per setting: aggregate fps (frames of all cameras / run.json's wall seconds), fps
per camera, and the peak resident memory of the whole process tree (runner, camera workers, re-ID stage,
matcher), summed over processes and sampled from /proc every 0.2 s; also the peak summed PSS, which counts
pages shared between processes (the same libraries loaded by every camera worker) once.

    python benchmarks/camera_scaling.py --cameras 1 2 4 --frames 200
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

from common import MIB, PETS_VIDEO, PipelineRun, begin, benchmark_parser, run_pipeline, write_config

logger = logging.getLogger("camera_scaling")


def measure(assets: Path, cameras: int, frames: int, folder: Path, video: bool) -> PipelineRun:
    """One pipeline run over `cameras` copies of the PETS video, `frames` frames each."""
    source = str(assets / PETS_VIDEO)
    config = write_config(
        folder / f"cameras{cameras}.yaml",
        assets,
        [{"id": f"cam{i}", "source": source, "max_frames": frames} for i in range(cameras)],
        output={"video": video},
    )
    names = [*(f"cam{i}" for i in range(cameras)), "reid", "matcher"]
    return run_pipeline(config, folder / f"out{cameras}", stage_names=names, sample_interval_s=0.2)


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, nargs="+", default=[1, 2, 4], help="camera counts to run")
    parser.add_argument("--frames", type=int, default=200, help="frames per camera")
    parser.add_argument("--no-video", action="store_true", help="do not write annotated videos")
    args = parser.parse_args(argv)
    begin(parser, args)

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for count in args.cameras:
            run = measure(args.assets, count, args.frames, Path(tmp), video=not args.no_video)
            logger.info("%d cameras: %d frames in %.1f s", count, run.frames, run.run_seconds)
            rows.append((count, run))

    print(f"cpu cores: {os.cpu_count()}, frames per camera: {args.frames}, video: {not args.no_video}")
    print("cameras  frames  seconds  aggregate fps  fps/camera  peak RSS (MiB)  re-ID crops  peak PSS (MiB)")
    for count, run in rows:
        fps = run.frames / run.run_seconds
        crops = run.info["stages"].get("reid", {}).get("crops", 0)
        print(
            f"{count:7d}  {run.frames:6d}  {run.run_seconds:7.1f}  {fps:13.2f}  {fps / count:10.2f}  "
            f"{run.peak_rss_bytes / MIB:14.0f}  {crops:11d}  {run.peak_pss_bytes / MIB:14.0f}"
        )
    for count, run in rows:
        peaks = ", ".join(f"{name} {rss / MIB:.0f}" for name, rss in run.peak_rss_per_process.items())
        print(f"{count} cameras, peak RSS per process (MiB): {peaks}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
