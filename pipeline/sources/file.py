"""A camera read from a video file through OpenCV (any container and codec its FFmpeg build reads)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import SourceError
from pipeline.messages import Frame
from pipeline.sources.base import Source
from pipeline.sources.urls import describe_source

logger = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # used when the container does not state a frame rate
MAX_CONSECUTIVE_FAILURES = 5  # undecodable frames in a row after which the file counts as ended
_EPS = 1e-9


class FileSource(Source):
    """Reads a video file frame by frame; frame indices are 1-based positions in the file.

    Indices stay the file's own (so outputs line up with MOTChallenge ground truth) whatever `start_frame`
    and `fps_cap` do, and `timestamp = (index - 1) / fps`. `fps_cap` keeps a frame only when that timeline
    has advanced by at least `1 / fps_cap` since the last kept one (so the rate never exceeds the cap);
    the others are counted in `frames_skipped`. `max_frames` bounds how many frames are read from the
    file (from `start_frame`), so a run covers the same stretch of video with or without a cap. `fps`
    overrides a wrong container frame rate. Undecodable frames are counted in `frames_failed` and skipped;
    several in a row end the file.
    """

    frame_policy = "all"
    # Undecodable frames in a row that end the source (None: never; each image of a sequence stands alone).
    max_consecutive_failures: int | None = MAX_CONSECUTIVE_FAILURES

    def __init__(
        self,
        camera_id: str,
        path: str | Path,
        fps_cap: float | None = None,
        start_frame: int = 1,
        max_frames: int | None = None,
        fps: float | None = None,
        loop: bool = False,
        time_offset_s: float = 0.0,
    ) -> None:
        super().__init__(camera_id)
        if fps_cap is not None and fps_cap <= 0:
            raise ValueError(f"camera {camera_id}: fps_cap must be > 0, but got {fps_cap}")
        if start_frame < 1:
            raise ValueError(f"camera {camera_id}: start_frame must be >= 1, but got {start_frame}")
        if max_frames is not None and max_frames < 0:
            raise ValueError(f"camera {camera_id}: max_frames must be >= 0, but got {max_frames}")
        if fps is not None and fps <= 0:
            raise ValueError(f"camera {camera_id}: fps must be > 0, but got {fps}")
        self.path = Path(path).expanduser()
        self.name = describe_source(str(self.path))  # credential-free: the form logs and errors show
        self.fps_cap = fps_cap
        self.start_frame = start_frame
        self.max_frames = max_frames
        self.loop = loop
        self.time_offset_s = time_offset_s
        self.frames_skipped = 0
        self.frames_read = 0
        self._fps_override = fps
        self._fps = fps or DEFAULT_FPS
        self._frame_count = 0
        self._capture: cv2.VideoCapture | None = None
        self._first: np.ndarray | None = None
        self._state = "connecting"

    @property
    def fps(self) -> float:
        """The file's frame rate (container value unless overridden)."""
        return self._fps

    @property
    def frame_count(self) -> int:
        """Frames the container says it holds (0 when it does not say)."""
        return self._frame_count

    @property
    def state(self) -> str:
        return self._state

    def open(self) -> None:
        """Open the file and decode its first wanted frame; raise SourceError when that is impossible."""
        where = f"camera {self.camera_id}: video file {self.name}"
        if not self.path.exists():
            raise SourceError(f"{where} does not exist; check the camera's source path")
        if not self.path.is_file():
            raise SourceError(f"{where} is not a file; give the path of a video file")
        capture = cv2.VideoCapture(str(self.path))
        if not capture.isOpened():
            capture.release()
            raise SourceError(
                f"{where} cannot be opened as a video; check that OpenCV/FFmpeg reads its format"
            )
        self._capture = capture
        self._frame_count = max(int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        if self._fps_override is None:
            container_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
            if container_fps > 0 and np.isfinite(container_fps):
                self._fps = container_fps
            else:
                logger.warning(
                    "camera %s: %s states no frame rate; assuming %.0f fps",
                    self.camera_id,
                    self.name,
                    DEFAULT_FPS,
                )
        for _ in range(self.start_frame - 1):
            if not capture.grab():
                self.close()
                raise SourceError(f"{where} ends before start_frame {self.start_frame}")
        ok, image = capture.read()
        if not ok or image is None:
            self.close()
            raise SourceError(f"{where} has no decodable frame; is it a video?")
        self._first = image
        self._state = "live"
        logger.debug(
            "camera %s: opened %s (%d frames, %.2f fps)",
            self.camera_id,
            self.name,
            self._frame_count,
            self._fps,
        )

    def frames(self) -> Iterator[Frame]:
        """Yield the kept frames in file order until the end of the file, `max_frames` or `close()`."""
        if self._state == "connecting":
            self.open()
        period = 1.0 / self.fps_cap if self.fps_cap else 0.0
        last_kept = None  # timestamp of the last frame the cap let through
        index = self.start_frame - 1
        failed: list[int] = []  # indices of the current run of undecodable frames
        while self._state == "live" and (
            self.max_frames is None or index - self.start_frame + 1 < self.max_frames
        ):
            index += 1
            image = self._next_image()
            if image is None and self.loop and index > 1 and self._at_end() and self._rewind():
                image = self._next_image()
            if image is None:
                if self._frame_count and index > self._frame_count:
                    break  # past the end the container states: a plain end of file
                failed.append(index)
                if self.max_consecutive_failures and len(failed) >= self.max_consecutive_failures:
                    break
                continue
            self._count_failed(failed)
            failed = []
            self.frames_read += 1
            timestamp = self.time_offset_s + (index - 1) / self._fps
            if period and last_kept is not None and timestamp - last_kept < period - _EPS:
                self.frames_skipped += 1
                continue
            last_kept = timestamp
            yield Frame(self.camera_id, index, timestamp, _as_bgr(image))
        if failed and self._frame_count:  # frames the container promises but cannot deliver
            self._count_failed(failed)
            logger.warning(
                "camera %s: %s is unreadable from frame %d on; ending it",
                self.camera_id,
                self.name,
                failed[0],
            )
        self.close()

    def _count_failed(self, failed: list[int]) -> None:
        if not failed:
            return
        self.frames_failed += len(failed)
        span = f"{failed[0]}" if len(failed) == 1 else f"{failed[0]}-{failed[-1]}"
        logger.warning("camera %s: frame %s of %s failed to decode; skipped", self.camera_id, span, self.name)

    def close(self) -> None:
        """Release the file; safe to call more than once."""
        if self._capture is not None:
            self._capture.release()
            self._capture = None
        self._first = None
        self._state = "ended"

    def _at_end(self) -> bool:
        """Whether a failed read may be the end of the file (a video cannot tell it from a bad frame)."""
        return True

    def _rewind(self) -> bool:
        """Loop: seek back to `start_frame`; frame indices and times keep counting up across laps."""
        self._frame_count = 0  # indices now run past the container's count
        return self._capture is not None and self._capture.set(cv2.CAP_PROP_POS_FRAMES, self.start_frame - 1)

    def _next_image(self) -> np.ndarray | None:
        if self._first is not None:
            image, self._first = self._first, None
            return image
        if self._capture is None or not self._capture.grab():
            return None
        ok, image = self._capture.retrieve()
        return image if ok and image is not None and image.size else None


def _as_bgr(image: np.ndarray) -> np.ndarray:
    """Make sure a decoded image is (H, W, 3) uint8 BGR, as Frame requires."""
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.dtype != np.uint8:
        image = cv2.convertScaleAbs(image)
    return np.ascontiguousarray(image)
