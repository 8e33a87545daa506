"""Opening OpenCV captures for live sources: FFmpeg options, timeouts and reconnect backoff."""

from __future__ import annotations

import os
import random
import threading

import cv2

OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
# OpenCV's FFmpeg backend reads OPTIONS_ENV at open time and it is process-wide: every open holds this lock
# so two cameras with different transports never see each other's options.
_ENV_LOCK = threading.Lock()
# FFmpeg probes 5 s of a stream by default before an open returns; a second is plenty for a camera stream
# and makes every reconnect that much faster. A value the user set in OPTIONS_ENV wins.
_DEFAULT_RTSP_OPTIONS = {"analyzeduration": "1000000"}


def capture_options(source: str | int, transport: str, base: str | None = None) -> str | None:
    """The FFmpeg options string (`key;value|key;value`) to open `source` with; None for webcams."""
    if isinstance(source, int):
        return None
    entries: dict[str, str] = {}
    for item in (base or "").split("|"):
        key, sep, value = item.partition(";")
        if key.strip() and sep:
            entries[key.strip()] = value
    if source.lower().startswith(("rtsp://", "rtsps://")):
        entries.pop("rtsp_transport", None)  # the camera's own transport wins over a process-wide one
        entries = {**_DEFAULT_RTSP_OPTIONS, **entries, "rtsp_transport": transport}
    return "|".join(f"{key};{value}" for key, value in entries.items()) or None


def open_capture(
    source: str | int,
    options: str | None,
    open_timeout_s: float,
    read_timeout_s: float,
    lock_timeout_s: float,
) -> cv2.VideoCapture | None:
    """Open a capture (FFmpeg for URLs, the default backend for webcams); None when the lock times out."""
    if isinstance(source, int):
        return cv2.VideoCapture(source)
    params = [
        cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
        max(1, int(open_timeout_s * 1000)),
        cv2.CAP_PROP_READ_TIMEOUT_MSEC,
        max(1, int(read_timeout_s * 1000)),
    ]
    if not _ENV_LOCK.acquire(timeout=lock_timeout_s):
        return None
    previous = os.environ.get(OPTIONS_ENV)
    try:
        if options is None:
            os.environ.pop(OPTIONS_ENV, None)
        else:
            os.environ[OPTIONS_ENV] = options
        return cv2.VideoCapture(source, cv2.CAP_FFMPEG, params)
    finally:
        if previous is None:
            os.environ.pop(OPTIONS_ENV, None)
        else:
            os.environ[OPTIONS_ENV] = previous
        _ENV_LOCK.release()


def backoff_delay(
    failures: int, initial_s: float, max_s: float, jitter: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait before reconnect attempt number `failures` (1-based): exponential, capped, jittered."""
    base = min(max_s, initial_s * 2.0 ** max(0, failures - 1))
    spread = (rng or random).uniform(-jitter, jitter)
    return max(0.0, base * (1.0 + spread))
