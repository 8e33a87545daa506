"""Frame-to-global-id latency of the whole pipeline on a live RTSP stream (p50, p95).

Serves PETS09-S2L1 on loopback (rtsp-server-perl fed by ffmpeg; scripts/install-rtsp-server.sh installs
them), runs `reid-pipeline run` on that rtsp:// camera, and for every identity event in OUT/events.jsonl
takes the delay from the capture time of the frame the event is about (`timestamp`: wall clock when the
live source received the frame) to when the matcher wrote it (`emitted_at`). Identity decisions on open
tracks (`open_track`) measure detect -> track -> crop -> re-ID -> match; decisions made when a track ends
and `left` events also hold the tracker's wait before it gives a lost track up, so they are apart.

    python benchmarks/e2e_latency.py --frames 300
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
from pathlib import Path

from common import PETS_VIDEO, ROOT, begin, benchmark_parser, run_pipeline, write_config
from live_latency import latency_summary

logger = logging.getLogger("e2e_latency")

ID_KINDS = ("appeared", "matched", "revised")
END_STATES = ("stopped", "ended", "failed")
SAME_MOMENT_S = 0.05


def event_latencies(events_path: Path) -> dict[str, list[float]]:
    """Milliseconds from frame capture (`timestamp`) to emission (`emitted_at`) of identity events, by group.

    `open_track`: appeared / matched / revised while the track is still open (the frame-to-global-id
    latency); `track_end`: those decided when the track ended (a `left` of the same track written in the
    same moment), which include the tracker's wait before it gives a lost track up; `left`. Events written
    after the camera stopped (the end-of-run flush) are left out.
    """
    records = [json.loads(line) for line in events_path.read_text().splitlines()]
    stopped = min(
        (
            r["emitted_at"]
            for r in records
            if r.get("kind") == "camera_state" and r.get("state") in END_STATES
        ),
        default=float("inf"),
    )
    events = [r for r in records if "global_id" in r and r["emitted_at"] < stopped]
    left_at = {}
    for r in events:
        if r["kind"] == "left":
            left_at.setdefault((r["camera_id"], r["track_id"]), []).append(r["emitted_at"])
    groups: dict[str, list[float]] = {"open_track": [], "track_end": [], "left": []}
    for r in events:
        delay_ms = (r["emitted_at"] - r["timestamp"]) * 1000
        if r["kind"] == "left":
            groups["left"].append(delay_ms)
        elif r["kind"] in ID_KINDS:
            ends = left_at.get((r["camera_id"], r["track_id"]), [])
            at_end = any(abs(t - r["emitted_at"]) <= SAME_MOMENT_S for t in ends)
            groups["track_end" if at_end else "open_track"].append(delay_ms)
    return groups


def main(argv: list[str] | None = None) -> int:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames the pipeline processes")
    parser.add_argument("--clip-frames", type=int, default=300, help="frames of PETS in the looping clip")
    parser.add_argument("--width", type=int, default=768, help="width of the served stream")
    parser.add_argument("--height", type=int, default=576, help="height of the served stream")
    parser.add_argument("--out", type=Path, help="keep the run's outputs here (default: a temporary folder)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    begin(parser, args)
    sys.path.insert(0, str(ROOT / "tests"))
    from rtsp_server import PerlRtspServer, make_clip, perl_server_missing

    if reason := perl_server_missing():
        parser.error(reason)

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        clip = make_clip(
            args.assets / PETS_VIDEO, folder / "clip.mp4", args.clip_frames, args.width, args.height
        )
        with PerlRtspServer(clip, folder) as server:
            camera = {"id": "live", "source": server.url, "transport": server.transport}
            config = write_config(folder / "live.yaml", args.assets, [camera])
            out_dir = args.out or folder / "out"
            run = run_pipeline(
                config,
                out_dir,
                max_frames=args.frames,
                overrides=args.overrides,
                sample_interval_s=None,
                timeout_s=1800,
            )
        latencies = event_latencies(out_dir / "events.jsonl")
    stats = run.info["cameras"]["live"]
    report = {
        "frames_processed": stats["frames_processed"],
        "frames_dropped": stats["frames_dropped"],
        "fps": round(stats["frames_processed"] / run.run_seconds, 2),
        "camera_ms_per_frame": {
            step: round(1000 * s / max(stats["frames_processed"], 1), 1)
            for step, s in stats["seconds"].items()
        },
        "latency_ms": {kind: latency_summary(values) for kind, values in sorted(latencies.items())},
    }
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
