"""The live-latency benchmark's reusable pieces: time stamps written into frames and the summary."""

from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from live_latency import draw_stamp, latency_summary, measure_latency, read_stamp

from pipeline.messages import Frame


def test_stamp_survives_lossy_compression_and_unwraps():
    image = np.random.default_rng(0).integers(0, 256, (240, 320, 3), np.uint8)
    written = 1_795_948_333.729
    draw_stamp(image, written)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 40])
    decoded = cv2.imdecode(jpeg, cv2.IMREAD_COLOR)
    assert ok and abs(read_stamp(decoded, written + 0.25) - written) < 0.0011


def test_latency_summary_percentiles():
    summary = latency_summary(range(1, 101))
    assert summary["count"] == 100 and summary["p50"] == 50.5 and summary["p95"] == 95.05
    assert summary["max"] == 100 and latency_summary([])["count"] == 0


def test_measure_latency_skips_warmup_and_reads_stamps():
    image = np.zeros((64, 256, 3), np.uint8)
    frames = [Frame("cam", i, 0.0, image) for i in range(1, 20)]
    result = measure_latency(frames, count=5, stamp_of=lambda img, now: now - 0.5, warmup=3)
    assert result["source"]["count"] == 5 and result["source"]["p50"] > 1e9  # timestamp 0 is very old
    assert 499 < result["capture"]["p50"] < 501
