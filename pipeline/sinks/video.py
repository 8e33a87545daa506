"""Annotated output video per camera: box, global id label and colour stable per identity, short trail."""

from __future__ import annotations

import colorsys
import logging
import os
import queue
import threading
from collections import deque
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import partial_path
from pipeline.errors import PipelineError
from pipeline.messages import Frame, Tracks

log = logging.getLogger(__name__)

UNASSIGNED = (160, 160, 160)
ENCODE_QUEUE = 8  # frames drawn but not yet encoded


def identity_colour(global_id: int) -> tuple[int, int, int]:
    """A BGR colour fixed for a global id (golden-ratio hue steps keep neighbours apart)."""
    hue = (global_id * 0.618033988749895) % 1.0
    r, g, b = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
    return int(b * 255), int(g * 255), int(r * 255)


class AnnotatedVideoWriter:
    """Writes one annotated output frame per processed frame; renamed into place on close."""

    def __init__(self, path: Path, fps: float, codec: str = "mp4v", trail: int = 20) -> None:
        self.path = path
        self.fps = fps
        self.codec = codec
        self.trail = trail
        self.frames_written = 0
        self._writer: cv2.VideoWriter | None = None
        self._trails: dict[int, deque] = {}
        # Encoding runs on a thread of its own (OpenCV releases the GIL), overlapping the next detection.
        self._pending: queue.Queue[np.ndarray | None] = queue.Queue(maxsize=ENCODE_QUEUE)
        self._encoder: threading.Thread | None = None
        self._error: str | None = None  # why encoding failed, if it did

    def write(self, frame: Frame, tracks: Tracks, labels: dict[int, int]) -> None:
        """Draw `tracks` on the frame; `labels` maps local track id -> global id where one is known."""
        image = frame.image.copy()
        live = set()
        for box, track_id in zip(tracks.xyxy.astype(int), tracks.track_id.tolist()):
            live.add(track_id)
            global_id = labels.get(track_id)
            colour = UNASSIGNED if global_id is None else identity_colour(global_id)
            x1, y1, x2, y2 = box.tolist()
            cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
            text = f"ID {global_id}" if global_id is not None else "?"
            text += f" t{track_id}"
            (w, h), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
            cv2.rectangle(image, (x1, max(0, y1 - h - 6)), (x1 + w + 4, max(h + 6, y1)), colour, -1)
            cv2.putText(
                image, text, (x1 + 2, max(h + 2, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1
            )
            points = self._trails.setdefault(track_id, deque(maxlen=self.trail))
            points.append(((x1 + x2) // 2, y2))
            if len(points) > 1:
                cv2.polylines(image, [np.array(points, np.int32)], False, colour, 2)
        for track_id in [t for t in self._trails if t not in live]:
            del self._trails[track_id]
        if self._writer is None:
            self._open(image)
        self._pending.put(image)
        self.frames_written += 1

    def _open(self, image: np.ndarray) -> None:
        height, width = image.shape[:2]
        partial = partial_path(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise PipelineError(
                f"output video {self.path}: cannot create its folder ({e.strerror})"
            ) from None
        fourcc = cv2.VideoWriter_fourcc(*self.codec)
        writer = cv2.VideoWriter(str(partial), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            writer.release()
            partial.unlink(missing_ok=True)
            raise PipelineError(
                f"output video {self.path}: cannot open a video writer with codec {self.codec!r} for "
                f"{width}x{height} frames; choose another output.codec or output.container, "
                "or turn output.video off"
            )
        self._writer = writer
        self._encoder = threading.Thread(target=self._encode, args=(writer,), daemon=True)
        self._encoder.start()

    def _encode(self, writer: cv2.VideoWriter) -> None:
        while (image := self._pending.get()) is not None:
            if self._error is not None:
                continue  # keep draining so that write() never blocks on a dead encoder
            try:
                writer.write(image)
            except cv2.error as e:
                self._error = f"output video {self.path}: encoding failed ({str(e).strip()})"

    def close(self) -> None:
        """Finish the file and move it to its final name; safe to call more than once and after a failure.

        Raises PipelineError when the video could not be finished.
        """
        writer, self._writer = self._writer, None
        if writer is None:
            return
        self._pending.put(None)
        if self._encoder is not None:
            self._encoder.join()
            self._encoder = None
        writer.release()
        if self._error is not None:
            raise PipelineError(self._error)
        try:
            os.replace(partial_path(self.path), self.path)
        except OSError as e:
            raise PipelineError(
                f"output video {self.path}: cannot move it into place ({e.strerror})"
            ) from None
        log.debug("wrote %s (%d frames)", self.path, self.frames_written)
