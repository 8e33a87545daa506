"""Chooses which track crops of one camera are worth the re-ID model's time."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from pipeline.messages import Crop, Frame, Tracks
from pipeline.thumbnails import ThumbnailKeeper

logger = logging.getLogger(__name__)


@dataclass
class _TrackState:
    last_frame: int  # frame index of the last crop sampled for the track
    count: int  # crops sampled so far


def intersection_over_area(xyxy: np.ndarray) -> np.ndarray:
    """For boxes (N, 4), the largest share of each box's area covered by any other box: (N,) in [0, 1]."""
    n = len(xyxy)
    if n < 2:
        return np.zeros(n, np.float32)
    x1, y1, x2, y2 = (xyxy[:, i] for i in range(4))
    iw = np.clip(np.minimum(x2[:, None], x2[None, :]) - np.maximum(x1[:, None], x1[None, :]), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2[None, :]) - np.maximum(y1[:, None], y1[None, :]), 0, None)
    inter = iw * ih  # (N, N)
    np.fill_diagonal(inter, 0)
    area = np.maximum((x2 - x1) * (y2 - y1), 1e-6)
    return (inter.max(axis=1) / area).astype(np.float32)


class CropSampler:
    """Picks crops to embed for one camera: on a track's first good crop, then at most every k frames.

    A crop is worth embedding when its box is at least `min_height` pixels tall, its confidence is at least
    `min_confidence`, it stays `edge_margin` pixels inside the frame and no other box covers more than
    `max_overlap` of it (intersection over its own area). Each track gets at most `max_per_track` crops
    (None: crops all along it, so that the matcher sees the track's later looks too, where its tracker
    may have gone on with someone else).
    Call `forget(track_id)` when a track ends; state is also capped at `max_tracks` (least recently seen
    tracks are dropped first) so a lost TrackEnded cannot grow it without bound. With `thumbnails`, every
    sampled crop is also offered to it, which keeps each track's best crops by the same quality score.
    """

    def __init__(
        self,
        min_height: int = 64,
        min_confidence: float = 0.4,
        every_k: int = 5,
        max_per_track: int | None = None,
        edge_margin: int = 4,
        max_overlap: float = 0.3,
        max_tracks: int = 4096,
        thumbnails: ThumbnailKeeper | None = None,
    ) -> None:
        if every_k < 1 or (max_per_track is not None and max_per_track < 1) or max_tracks < 1:
            raise ValueError(
                f"every_k, max_per_track and max_tracks must be >= 1, but got {every_k}, {max_per_track}, "
                f"{max_tracks}"
            )
        self.min_height = min_height
        self.min_confidence = min_confidence
        self.every_k = every_k
        self.max_per_track = max_per_track
        self.edge_margin = edge_margin
        self.max_overlap = max_overlap
        self.max_tracks = max_tracks
        self.thumbnails = thumbnails
        # Height at which the size term of the quality saturates: re-ID inputs are 256 px tall, but
        # crops twice the minimum height already carry most of the appearance.
        self.full_quality_height = max(2.0 * min_height, 1.0)
        self._tracks: OrderedDict[int, _TrackState] = OrderedDict()

    def __len__(self) -> int:
        """The number of tracks whose sampling state is held."""
        return len(self._tracks)

    def update(self, frame: Frame, tracks: Tracks) -> list[Crop]:
        """The crops of `tracks` worth embedding in this frame, as copies of the frame's pixels."""
        if tracks.camera_id != frame.camera_id or tracks.frame_index != frame.index:
            raise ValueError(
                f"tracks of camera {tracks.camera_id!r} frame {tracks.frame_index} do not belong to "
                f"frame {frame.index} of camera {frame.camera_id!r}"
            )
        if len(tracks) == 0:
            return []
        height, width = frame.image.shape[:2]
        xyxy = tracks.xyxy
        overlap = intersection_over_area(xyxy)
        box_h = xyxy[:, 3] - xyxy[:, 1]
        margin = self.edge_margin
        inside = (
            (xyxy[:, 0] >= margin)
            & (xyxy[:, 1] >= margin)
            & (xyxy[:, 2] <= width - margin)
            & (xyxy[:, 3] <= height - margin)
        )
        worth = (
            inside
            & (box_h >= self.min_height)
            & (tracks.confidence >= self.min_confidence)
            & (overlap <= self.max_overlap)
        )
        crops = []
        for i, track_id in enumerate(tracks.track_id.tolist()):
            state = self._tracks.get(track_id)
            if state is not None:
                self._tracks.move_to_end(track_id)
            if not worth[i] or not self._due(state, frame.index):
                continue
            image = self._cut(frame.image, xyxy[i])
            if image is None:
                continue
            quality = self._quality(float(box_h[i]), float(tracks.confidence[i]), float(overlap[i]))
            crop = Crop(frame.camera_id, track_id, frame.index, frame.timestamp, image, quality)
            crops.append(crop)
            if self.thumbnails is not None:
                self.thumbnails.add(crop)
            if state is None:
                self._tracks[track_id] = _TrackState(frame.index, 1)
            else:
                state.last_frame, state.count = frame.index, state.count + 1
        while len(self._tracks) > self.max_tracks:
            dropped, _ = self._tracks.popitem(last=False)
            logger.debug("camera %s: dropped sampling state of stale track %d", frame.camera_id, dropped)
        return crops

    def forget(self, track_id: int) -> None:
        """Drop the state of a track that has ended."""
        self._tracks.pop(int(track_id), None)

    def reset(self) -> None:
        """Drop all state, as at the start of a new stream."""
        self._tracks.clear()

    def _due(self, state: _TrackState | None, frame_index: int) -> bool:
        if state is None:
            return True
        if self.max_per_track is not None and state.count >= self.max_per_track:
            return False
        return frame_index - state.last_frame >= self.every_k

    def _quality(self, box_height: float, confidence: float, overlap: float) -> float:
        """A score in (0, 1]: taller, more confident and less covered crops score higher."""
        size = min(1.0, box_height / self.full_quality_height)
        score = size * min(max(confidence, 0.0), 1.0) * (1.0 - min(max(overlap, 0.0), 1.0))
        return float(min(max(score, 1e-3), 1.0))

    @staticmethod
    def _cut(image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        height, width = image.shape[:2]
        x1, y1 = max(int(np.floor(box[0])), 0), max(int(np.floor(box[1])), 0)
        x2, y2 = min(int(np.ceil(box[2])), width), min(int(np.ceil(box[3])), height)
        if x2 <= x1 or y2 <= y1:
            return None
        return image[y1:y2, x1:x2].copy()
