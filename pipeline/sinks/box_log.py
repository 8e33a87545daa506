"""The per-frame box log: every camera's track boxes, written to the identity store for the exports."""

from __future__ import annotations

import time

from pipeline.messages import Tracks


class BoxLog:
    """Buffers each frame's track boxes and appends them to `store` (an EmbeddingStore) in batches.

    The exports join these boxes with the tracklets' global ids when the run ends. Boxes reach the store
    at least every `interval_s`, so the store's own time-bound commits make them durable too.
    """

    def __init__(self, store, session: int, batch: int = 2000, interval_s: float = 1.0) -> None:
        if batch < 1 or interval_s <= 0:
            raise ValueError(f"batch must be >= 1 and interval_s > 0, but got {batch} and {interval_s}")
        self.store = store
        self.session = session
        self.batch = batch
        self.interval_s = interval_s
        self._rows: list[tuple] = []
        self._flushed_at = time.monotonic()

    def update(self, tracks: Tracks) -> None:
        """Take one frame's tracks of one camera."""
        for (x1, y1, x2, y2), conf, track_id in zip(
            tracks.xyxy.tolist(), tracks.confidence.tolist(), tracks.track_id.tolist(), strict=True
        ):
            self._rows.append(
                (self.session, tracks.camera_id, track_id, tracks.frame_index, x1, y1, x2, y2, conf)
            )
        if len(self._rows) >= self.batch or time.monotonic() - self._flushed_at >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        """Hand the buffered boxes to the store (durable with its next commit)."""
        if self._rows:
            self.store.add_boxes(self._rows)
            self._rows.clear()
        self._flushed_at = time.monotonic()
