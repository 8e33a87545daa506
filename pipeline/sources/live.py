"""Live cameras (rtsp://, http(s):// streams and webcam indices) that reconnect on their own."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from typing import NamedTuple

import cv2
import numpy as np

from pipeline.errors import SourceError
from pipeline.messages import Frame
from pipeline.sources.base import Source
from pipeline.sources.capture import OPTIONS_ENV, backoff_delay, capture_options, open_capture
from pipeline.sources.urls import describe_source

logger = logging.getLogger(__name__)

STATES = ("connecting", "live", "retrying", "failed", "stopped")
QUEUE_SIZE = 8  # frames buffered under frame_policy="all" before the reader waits for the consumer
_WATCHDOG_GRACE_S = 0.5  # beyond FFmpeg's own timeouts, before the watchdog gives up on a blocked call
_POLL_S = 0.05
_MAX_RECORDS = 1000


class StateChange(NamedTuple):
    """One connection state change of a camera, for events.jsonl and the progress display."""

    timestamp: float  # Unix time
    camera_id: str
    state: str
    detail: str


class _Connection(threading.Thread):
    """Owns one cv2.VideoCapture: opens it, reads until it fails or is cancelled, then releases it.

    FFmpeg calls cannot be interrupted from Python, so a connection that blocks is abandoned (cancelled)
    by the supervisor rather than joined; it releases its capture as soon as FFmpeg returns.
    """

    def __init__(self, owner: LiveSource, generation: int) -> None:
        super().__init__(name=f"live-capture-{owner.camera_id}-{generation}", daemon=True)
        self.owner = owner
        self.cancelled = threading.Event()
        self.opened = threading.Event()
        self.ended = threading.Event()
        self.error: str | None = None
        self.fps = 0.0
        self.frames_read = 0
        self.last_progress = time.monotonic()

    def run(self) -> None:
        owner = self.owner
        cap = None
        try:
            cap = open_capture(
                owner.source, owner._options, owner.open_timeout_s, owner.read_timeout_s, owner.open_timeout_s
            )
            if cap is None or not cap.isOpened():
                self.error = "cannot open the stream (refused, unreachable or not a video stream)"
                return
            if self.cancelled.is_set():
                return
            self.fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
            self.last_progress = time.monotonic()
            self.opened.set()
            self._read_loop(cap)
        except Exception as exc:  # a bug or a backend error must end this connection, not the camera
            self.error = f"capture error: {type(exc).__name__}: {exc}"
        finally:
            if cap is not None:
                cap.release()
            self.ended.set()

    def _read_loop(self, cap: cv2.VideoCapture) -> None:
        owner = self.owner
        while not self.cancelled.is_set():
            started = time.monotonic()
            ok = cap.grab()
            now = time.monotonic()
            if self.cancelled.is_set():
                return
            if not ok:
                self.error = "read failed (stream ended or connection lost)"
                return
            if now - started >= owner.read_timeout_s:
                self.error = f"no frame for {owner.read_timeout_s:g} s (stream stalled)"
                return
            self.last_progress = now
            if not owner._rate_allows(now):
                owner.frames_skipped += 1
                continue
            ok, image = cap.retrieve()
            if not ok or image is None:
                owner.frames_failed += 1
                continue
            timestamp = time.time()
            self.frames_read += 1
            if self.frames_read == 1:
                owner._went_live(self)
            owner._put(_as_bgr(image), timestamp, self)


def _as_bgr(image: np.ndarray) -> np.ndarray:
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return np.ascontiguousarray(image, dtype=np.uint8)


class LiveSource(Source):
    """A live camera read by a background thread that reconnects with exponential backoff and jitter.

    Timestamps are Unix wall-clock time at decode; frame indices count delivered frames from 1.
    `frame_policy="latest"` keeps one slot (the consumer always gets the newest frame; overwritten frames
    count in `frames_dropped`), `"all"` a small bounded queue with backpressure. A stream that delivers no
    frame for `read_timeout_s` counts as failed, even when FFmpeg itself stays blocked. With `max_retries`
    set, the camera gives up after that many failed reconnects in a row: state "failed", `error` holds a
    SourceError and `frames()` ends. `fps_cap` skips frames (counted in `frames_skipped`) to stay under it.
    """

    def __init__(
        self,
        camera_id: str,
        source: str | int,
        transport: str = "tcp",
        fps_cap: float | None = None,
        open_timeout_s: float = 10.0,
        read_timeout_s: float = 5.0,
        reconnect: bool = True,
        max_retries: int | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        jitter: float = 0.25,
        frame_policy: str = "latest",
    ) -> None:
        super().__init__(camera_id)
        where = f"camera {camera_id}"
        if transport not in ("tcp", "udp"):
            raise ValueError(f"{where}: transport must be 'tcp' or 'udp', but got {transport!r}")
        if frame_policy not in ("latest", "all"):
            raise ValueError(f"{where}: frame_policy must be 'latest' or 'all', but got {frame_policy!r}")
        if fps_cap is not None and fps_cap <= 0:
            raise ValueError(f"{where}: fps_cap must be > 0, but got {fps_cap}")
        if open_timeout_s <= 0 or read_timeout_s <= 0:
            raise ValueError(f"{where}: open_timeout_s and read_timeout_s must be > 0")
        if max_retries is not None and max_retries < 0:
            raise ValueError(f"{where}: max_retries must be >= 0 or None, but got {max_retries}")
        if backoff_initial_s < 0 or backoff_max_s < backoff_initial_s or not 0 <= jitter < 1:
            raise ValueError(f"{where}: need 0 <= backoff_initial_s <= backoff_max_s and 0 <= jitter < 1")
        self.source = source
        self.transport = transport
        self.fps_cap = fps_cap
        self.open_timeout_s = open_timeout_s
        self.read_timeout_s = read_timeout_s
        self.reconnect = reconnect
        self.max_retries = max_retries
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.jitter = jitter
        self.frame_policy = frame_policy
        self.url = describe_source(source)  # credential-free: the only form that reaches logs and errors
        self.frames_skipped = 0
        self.reconnects = 0
        self.error: SourceError | None = None
        self._options = capture_options(source, transport, os.environ.get(OPTIONS_ENV))
        self._state = "connecting"
        self._records: deque[StateChange] = deque(maxlen=_MAX_RECORDS)
        self._cond = threading.Condition()
        self._buffer: deque[tuple[np.ndarray, float]] = deque()
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._conn: _Connection | None = None
        self._stream_fps = 0.0
        self._ever_live = False
        self._next_due = 0.0
        self._delivered = 0

    @property
    def fps(self) -> float:
        """The stream's reported frame rate under the cap; the cap (or 0.0) until it has been connected."""
        if self._stream_fps > 0:
            return min(self._stream_fps, self.fps_cap) if self.fps_cap else self._stream_fps
        return self.fps_cap or 0.0

    @property
    def state(self) -> str:
        """connecting, live, retrying, failed or stopped."""
        return self._state

    def state_changes(self) -> list[StateChange]:
        """Return and forget the state changes recorded since the last call."""
        records = []
        while self._records:
            records.append(self._records.popleft())
        return records

    def open(self) -> None:
        """Start connecting in the background; never blocks on the network."""
        if self._supervisor is not None and self._supervisor.is_alive():
            return
        self._stop.clear()
        self.error = None
        self._set_state("connecting", self.url)
        self._supervisor = threading.Thread(
            target=self._supervise, name=f"live-{self.camera_id}", daemon=True
        )
        self._supervisor.start()

    def frames(self) -> Iterator[Frame]:
        """Yield frames as they arrive until `close()` is called or the camera has failed for good."""
        if self._supervisor is None:
            self.open()
        while True:
            with self._cond:
                while not self._buffer and not self._finished():
                    self._cond.wait(0.25)
                if not self._buffer:
                    return
                image, timestamp = self._buffer.popleft()
                self._cond.notify_all()
            self._delivered += 1
            yield Frame(self.camera_id, self._delivered, timestamp, image)

    def close(self) -> None:
        """Stop the reader promptly, even while it is connecting; safe to call more than once."""
        self._stop.set()
        if self._conn is not None:
            self._conn.cancelled.set()
        with self._cond:
            self._cond.notify_all()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=1.0)
        if self._state != "failed":
            self._set_state("stopped", "closed")

    # -- reader side -------------------------------------------------------------------------------------

    def _finished(self) -> bool:
        return self._stop.is_set() or self._state == "failed"

    def _set_state(self, state: str, detail: str = "") -> None:
        if state == self._state and state in ("live", "stopped", "failed"):
            return
        self._state = state
        self._records.append(StateChange(time.time(), self.camera_id, state, detail))
        # A failure is reported once, by whoever reads `error` (the runner names the camera).
        level = {"retrying": logging.WARNING, "failed": logging.DEBUG}.get(state, logging.INFO)
        logger.log(level, "camera %s: %s %s", self.camera_id, state, detail)
        with self._cond:
            self._cond.notify_all()

    def _rate_allows(self, now: float) -> bool:
        if not self.fps_cap:
            return True
        period = 1.0 / self.fps_cap
        if now < self._next_due - 0.1 * period:
            return False
        self._next_due = max(self._next_due + period, now)
        return True

    def _went_live(self, conn: _Connection) -> None:
        if conn.cancelled.is_set():
            return
        self._stream_fps = conn.fps
        if self._ever_live:
            self.reconnects += 1
        self._ever_live = True
        self._set_state("live", self.url)

    def _put(self, image: np.ndarray, timestamp: float, conn: _Connection) -> None:
        with self._cond:
            if conn.cancelled.is_set():  # an abandoned connection that came back late
                return
            if self.frame_policy == "latest":
                if self._buffer:
                    self._buffer.clear()
                    self.frames_dropped += 1
            else:
                while len(self._buffer) >= QUEUE_SIZE and not conn.cancelled.is_set():
                    self._cond.wait(0.1)
                    conn.last_progress = time.monotonic()  # waiting on the consumer is not a stall
                if conn.cancelled.is_set():
                    return
            self._buffer.append((image, timestamp))
            self._cond.notify_all()

    def _supervise(self) -> None:
        failures = 0  # consecutive failed attempts since the stream was last live
        generation = 0
        while not self._stop.is_set():
            generation += 1
            conn = _Connection(self, generation)
            self._conn = conn
            conn.start()
            reason = self._watch(conn)
            conn.cancelled.set()
            if self._stop.is_set():
                break
            failures = 1 if conn.frames_read > 0 else failures + 1
            limit = 0 if not self.reconnect else self.max_retries
            if limit is not None and failures > limit:
                attempts = "1 attempt" if failures == 1 else f"{failures} attempts in a row"
                self.error = SourceError(
                    f"camera {self.camera_id}: giving up on {self.url} after {attempts}: {reason}; "
                    "check that the camera is reachable and the URL, credentials and transport are right"
                )
                self._set_state("failed", str(self.error))
                return
            delay = backoff_delay(failures, self.backoff_initial_s, self.backoff_max_s, self.jitter)
            self._set_state("retrying", f"{self.url}: {reason}; reconnecting in {delay:.1f} s")
            self._stop.wait(delay)

    def _watch(self, conn: _Connection) -> str:
        """Wait while `conn` connects and reads; return why it ended."""
        open_deadline = time.monotonic() + self.open_timeout_s + _WATCHDOG_GRACE_S
        while not self._stop.wait(_POLL_S):
            if conn.ended.is_set():
                return conn.error or "stream ended"
            now = time.monotonic()
            if not conn.opened.is_set():
                if now > open_deadline:
                    return f"no connection within {self.open_timeout_s:g} s"
                continue
            if now - conn.last_progress > self.read_timeout_s + _WATCHDOG_GRACE_S:
                return f"no frame for {self.read_timeout_s:g} s (stream stalled)"
        return "stopped"
