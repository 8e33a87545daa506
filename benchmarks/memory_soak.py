"""Memory soak: the pipeline on looping PETS09-S2L1 cameras for a long run; resident memory over time.

Runs `reid-pipeline run` on one or more cameras with `loop: true`, samples the RSS of every process of the
tree (runner, camera workers, re-ID stage, matcher) every `--interval` seconds, stops the run with SIGINT
after `--seconds` and prints the curve, then the growth after warm-up: RSS at the end against RSS once 20%
of the run has passed, in total and per process (goal: under 5%).

    python benchmarks/memory_soak.py --cameras 2 --seconds 600 --interval 20
"""

from __future__ import annotations

import logging
import signal
import subprocess
import tempfile
import time
from pathlib import Path

from common import (
    MIB,
    PETS_VIDEO,
    ROOT,
    MemorySampler,
    begin,
    benchmark_parser,
    pipeline_command,
    write_config,
)

logger = logging.getLogger("memory_soak")

WARMUP_FRACTION = 0.2


def growth_percent(before: float, after: float) -> float:
    """Relative growth from `before` to `after` in percent (NaN when `before` is 0)."""
    return 100.0 * (after - before) / before if before else float("nan")


def count_lines(path: Path) -> int:
    """Lines in a file so far (0 when it does not exist yet)."""
    try:
        with open(path, "rb") as f:
            return sum(1 for _ in f)
    except OSError:
        return 0


def soak(config: Path, out_dir: Path, camera_ids: list[str], seconds: float, interval_s: float) -> list[dict]:
    """Run the pipeline for `seconds`, sampling every `interval_s`; returns the samples (time, RSS by process)."""
    command = pipeline_command(config, out_dir)
    process = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    sampler = MemorySampler(process.pid, stage_names=[*camera_ids, "reid", "matcher"])
    samples: list[dict] = []
    began = time.monotonic()
    try:
        while process.poll() is None:
            elapsed = time.monotonic() - began
            per_process = sampler.sample()
            samples.append(
                {"t": elapsed, "rss": per_process, "events": count_lines(out_dir / "events.jsonl")}
            )
            total = sum(per_process.values()) / MIB
            parts = ", ".join(f"{name} {rss / MIB:.0f}" for name, rss in per_process.items())
            logger.info(
                "t=%4.0f s  total %6.0f MiB  (%s)  events %d", elapsed, total, parts, samples[-1]["events"]
            )
            if elapsed >= seconds:
                break
            time.sleep(max(0.0, began + min(len(samples) * interval_s, seconds) - time.monotonic()))
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGINT)  # drain and write outputs, as Ctrl-C does
        try:
            _, stderr = process.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            _, stderr = process.communicate()
    if process.returncode not in (0, 130):
        raise RuntimeError(f"pipeline exited with {process.returncode}:\n{stderr[-2000:]}")
    return samples


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--cameras", type=int, default=2, help="looping cameras (copies of the PETS video)")
    parser.add_argument("--seconds", type=float, default=600.0, help="how long to run")
    parser.add_argument("--interval", type=float, default=20.0, help="seconds between memory samples")
    parser.add_argument("--start-frame", type=int, default=1, help="each lap starts here (late: short laps)")
    parser.add_argument("--out", type=Path, help="keep the run's outputs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    begin(parser, args)

    camera_ids = [f"cam{i}" for i in range(args.cameras)]
    source = str(args.assets / PETS_VIDEO)
    cameras = [{"id": c, "source": source, "loop": True, "start_frame": args.start_frame} for c in camera_ids]
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = args.out or Path(tmp) / "out"
        config = write_config(Path(tmp) / "soak.yaml", args.assets, cameras)
        samples = soak(config, out_dir, camera_ids, args.seconds, args.interval)
        processed = _frames_processed(out_dir)
    if len(samples) < 2:
        raise SystemExit("too few samples: run longer or sample more often")

    warm = next(s for s in samples if s["t"] >= WARMUP_FRACTION * samples[-1]["t"])
    end = samples[-1]
    print(f"cameras: {args.cameras}, ran {end['t']:.0f} s, frames processed: {processed}")
    print("t (s)  total RSS (MiB)  events")
    for s in samples:
        print(f"{s['t']:5.0f}  {sum(s['rss'].values()) / MIB:15.0f}  {s['events']:6d}")
    before, after = sum(warm["rss"].values()), sum(end["rss"].values())
    print(
        f"growth after warm-up (t={warm['t']:.0f} s -> t={end['t']:.0f} s): "
        f"{before / MIB:.0f} -> {after / MIB:.0f} MiB, {growth_percent(before, after):+.1f}%"
    )
    for name in end["rss"]:
        first, last = warm["rss"].get(name, 0), end["rss"][name]
        print(
            f"  {name:16s} {first / MIB:7.1f} -> {last / MIB:7.1f} MiB  {growth_percent(first, last):+6.1f}%"
        )
    return 0


def _frames_processed(out_dir: Path) -> dict[str, int]:
    import json

    try:
        cameras = json.loads((out_dir / "run.json").read_text())["cameras"]
    except (OSError, ValueError, KeyError):
        return {}
    return {name: stats.get("frames_processed", 0) for name, stats in cameras.items()}


if __name__ == "__main__":
    raise SystemExit(main())
