"""The progress display: frames, fps and state per camera, and queue depths, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

from pipeline.messages import CameraStatus


class ProgressDisplay:
    """Keeps the latest status per camera and prints one line at most every `interval_s` seconds."""

    def __init__(self, camera_ids: list[str], interval_s: float = 2.0, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self.interval_s = interval_s
        self.statuses = {c: CameraStatus(c, 0, 0.0, "connecting", 0, 0) for c in camera_ids}
        self._last = 0.0
        self._tty = self.stream.isatty()

    def update(self, status: CameraStatus) -> None:
        self.statuses[status.camera_id] = status

    def render(self, queue_depths: dict[str, int], force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        cameras = " | ".join(
            f"{s.camera_id} {s.frames}f {s.fps:.1f}fps {s.state}"
            + (f" drop {s.dropped}" if s.dropped else "")
            for s in self.statuses.values()
        )
        queues = " ".join(f"{name} {depth}" for name, depth in queue_depths.items())
        line = f"{cameras} || queues {queues}" if queues else cameras
        if self._tty:
            self.stream.write("\r\033[K" + line)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self._tty:
            self.stream.write("\n")
            self.stream.flush()
