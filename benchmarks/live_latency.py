"""Frame-to-availability latency of a live camera: how old a frame is when the pipeline gets it.

With no URL, serves its own stream on loopback (rtsp-server-perl; scripts/install-rtsp-server.sh installs
it) from a publisher that writes its wall-clock time into every frame as a barcode, so two latencies are
measured per frame: `capture` (barcode time -> frame handed out by LiveSource: encode, RTSP relay, RTP,
decode and buffering) and `source` (Frame.timestamp -> handed out: LiveSource's own buffering). With
`--url`, only `source` latency is measured, on any stream.

    python benchmarks/live_latency.py --seconds 10 --fps 25 --work-ms 30
"""

from __future__ import annotations

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline.messages import Frame  # noqa: E402
from pipeline.sources.live import LiveSource  # noqa: E402

logger = logging.getLogger("live_latency")

STAMP_BITS = 32  # milliseconds modulo 2**32 (about 49 days): enough to difference two nearby times
STAMP_BLOCK = 16  # pixels per bit; big blocks survive H.264 at any sane quality
STAMP_COLUMNS = 16


def latency_summary(latencies_ms: Iterable[float]) -> dict[str, float]:
    """count, mean, p50, p95, p99 and max of latencies in milliseconds (NaN when there are none)."""
    values = np.asarray(list(latencies_ms), dtype=np.float64)
    if values.size == 0:
        return {"count": 0, **dict.fromkeys(("mean", "p50", "p95", "p99", "max"), float("nan"))}
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return {
        "count": int(values.size),
        "mean": round(float(values.mean()), 2),
        "p50": round(float(p50), 2),
        "p95": round(float(p95), 2),
        "p99": round(float(p99), 2),
        "max": round(float(values.max()), 2),
    }


def draw_stamp(image: np.ndarray, time_s: float) -> None:
    """Write `time_s` (as milliseconds modulo 2**32) into the top-left corner of a BGR image, in place."""
    value = round(time_s * 1000) % (1 << STAMP_BITS)
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, STAMP_COLUMNS)
        y, x = row * STAMP_BLOCK, col * STAMP_BLOCK
        image[y : y + STAMP_BLOCK, x : x + STAMP_BLOCK] = 255 if (value >> bit) & 1 else 0


def read_stamp(image: np.ndarray, now_s: float) -> float:
    """The time written by `draw_stamp`, unwrapped to the 2**32 ms window that ends at `now_s`."""
    value = 0
    margin = STAMP_BLOCK // 4
    for bit in range(STAMP_BITS):
        row, col = divmod(bit, STAMP_COLUMNS)
        y, x = row * STAMP_BLOCK + margin, col * STAMP_BLOCK + margin
        block = image[y : y + STAMP_BLOCK - 2 * margin, x : x + STAMP_BLOCK - 2 * margin]
        if block.mean() > 127:
            value |= 1 << bit
    now_ms = round(now_s * 1000)
    wrap = 1 << STAMP_BITS
    delta = (now_ms - value) % wrap
    return (now_ms - delta) / 1000.0


def measure_latency(
    frames: Iterable[Frame],
    count: int,
    stamp_of: Callable[[np.ndarray, float], float] | None = None,
    work_s: float = 0.0,
    warmup: int = 5,
) -> dict[str, dict[str, float]]:
    """Consume `count` frames (after `warmup`), spending `work_s` on each as a pipeline stage would.

    Returns latency summaries in milliseconds: `source` (Frame.timestamp -> handed out) always, and
    `capture` (the time `stamp_of` reads from the image -> handed out) when `stamp_of` is given.
    """
    source_ms, capture_ms = [], []
    for seen, frame in enumerate(frames, start=1):
        now = time.time()
        if seen > warmup:
            source_ms.append((now - frame.timestamp) * 1000)
            if stamp_of is not None:
                capture_ms.append((now - stamp_of(frame.image, now)) * 1000)
        if seen >= warmup + count:
            break
        if work_s:
            time.sleep(work_s)
    result = {"source": latency_summary(source_ms)}
    if stamp_of is not None:
        result["capture"] = latency_summary(capture_ms)
    return result


def _publish_stamped(url: str, fps: float, size: tuple[int, int], stop: threading.Event) -> subprocess.Popen:
    """An ffmpeg publisher fed raw frames that each carry their wall-clock time."""
    width, height = size
    command = ["ffmpeg", "-nostdin", "-loglevel", "error", "-f", "rawvideo", "-pix_fmt", "bgr24"]
    command += ["-s", f"{width}x{height}", "-r", f"{fps:g}", "-i", "-", "-c:v", "libx264"]
    command += [
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
        "-g",
        str(max(1, int(fps))),
        "-f",
        "rtsp",
        url,
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE)

    def feed() -> None:
        image = np.full((height, width, 3), 96, np.uint8)
        start, n = time.monotonic(), 0
        while not stop.is_set() and process.poll() is None:
            image[STAMP_BLOCK * 3 :, :, 1] = (n * 4) % 256  # some motion below the stamp
            draw_stamp(image, time.time())
            try:
                process.stdin.write(image.tobytes())
                process.stdin.flush()
            except (BrokenPipeError, ValueError):
                return
            n += 1
            time.sleep(max(0.0, start + n / fps - time.monotonic()))

    threading.Thread(target=feed, name="stamped-publisher", daemon=True).start()
    return process


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="measure this stream (source latency only) instead of a local one")
    parser.add_argument("--transport", default="udp", choices=["tcp", "udp"])
    parser.add_argument("--seconds", type=float, default=10.0, help="how long to measure")
    parser.add_argument("--fps", type=float, default=25.0, help="frame rate of the local stream")
    parser.add_argument("--work-ms", type=float, default=0.0, help="simulated processing time per frame")
    parser.add_argument("--frame-policy", default="latest", choices=["latest", "all"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)

    per_frame_s = max(1.0 / args.fps, args.work_ms / 1000)
    count = max(1, int(args.seconds / per_frame_s))
    kwargs = {"frame_policy": args.frame_policy, "read_timeout_s": 5.0}
    if args.url:
        with LiveSource("bench", args.url, transport=args.transport, **kwargs) as source:
            result = measure_latency(source.frames(), count, work_s=args.work_ms / 1000)
            dropped = source.frames_dropped
    else:
        sys.path.insert(0, str(ROOT / "tests"))
        from rtsp_server import PerlRtspServer, perl_server_missing

        if reason := perl_server_missing():
            parser.error(reason)
        stop = threading.Event()
        with tempfile.TemporaryDirectory() as tmp:
            server = PerlRtspServer(Path(tmp) / "unused.mp4", Path(tmp))
            server.start(publish=False)
            publisher = _publish_stamped(server.publish_url, args.fps, (320, 240), stop)
            try:
                time.sleep(1.0)
                with LiveSource("bench", server.url, transport="udp", **kwargs) as source:
                    frames = source.frames()
                    result = measure_latency(frames, count, stamp_of=read_stamp, work_s=args.work_ms / 1000)
                    dropped = source.frames_dropped
            finally:
                stop.set()
                time.sleep(2.0 / args.fps)  # let the feeder see `stop` before its pipe closes
                publisher.stdin.close()  # end of input: ffmpeg flushes and exits
                try:
                    publisher.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    publisher.kill()
                    publisher.wait(timeout=5)
                server.stop()
    report = {"fps": args.fps, "work_ms": args.work_ms, "frame_policy": args.frame_policy, **result}
    report["frames_dropped"] = dropped
    sys.stdout.write(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
