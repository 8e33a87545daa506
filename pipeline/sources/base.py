"""The source interface every camera input implements (files now, live streams next)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator

from pipeline.messages import Frame


class Source(ABC):
    """Yields a camera's frames in order; each frame carries camera id, 1-based index and timestamp.

    `frame_policy` is "all" (backpressure, nothing dropped: files) or "latest" (stale frames dropped and
    counted: live streams). `frames_dropped` and `frames_failed` count what never reached the pipeline.
    """

    frame_policy: str = "all"

    def __init__(self, camera_id: str) -> None:
        self.camera_id = camera_id
        self.frames_dropped = 0
        self.frames_failed = 0

    @property
    @abstractmethod
    def fps(self) -> float:
        """The nominal frame rate of the source (frames per second)."""

    @abstractmethod
    def open(self) -> None:
        """Open the source; raise SourceError with the camera id in the message when it cannot be."""

    @abstractmethod
    def frames(self) -> Iterator[Frame]:
        """Yield frames until the source ends or `close()` is called."""

    @abstractmethod
    def close(self) -> None:
        """Release the source; safe to call more than once and from a signal handler's aftermath."""

    @property
    def state(self) -> str:
        """Connection state: connecting, live, retrying, failed, or ended (files) / stopped (streams)."""
        return "live"

    def __enter__(self) -> Source:
        self.open()
        return self

    def __exit__(self, *exc) -> None:
        self.close()
