"""Precomputed detections from a MOTChallenge text file (`det.txt` public detections or `gt.txt`)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from detectors.base import PERSON_CLASS_ID
from pipeline.errors import PipelineError, WeightsError
from pipeline.messages import Detections
from pipeline.motchallenge import read_mot_txt

logger = logging.getLogger(__name__)


class MotFileDetector:
    """Looks up the boxes of each frame in a MOTChallenge file of `frame,id,x,y,w,h,conf,...` rows.

    `detect` needs the 1-based source frame indices (`frame_indices`), since the images alone do not say
    which frame they are. Rows with confidence below `min_confidence` are dropped; confidences are clipped
    into 0..1, the range trackers expect (ground truth uses 1 for boxes to consider and 0 for the others).
    """

    def __init__(self, path: str | Path, min_confidence: float | None = None) -> None:
        self.path = Path(path).expanduser()
        self.min_confidence = min_confidence
        if not self.path.is_file():
            raise WeightsError(
                f"detections file not found: {self.path}; give the path of a MOTChallenge det.txt or gt.txt"
            )
        self._by_frame = self._load()

    def _load(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        try:
            table = read_mot_txt(self.path)
        except PipelineError as error:
            raise WeightsError(str(error)) from None
        if len(table) and table.shape[1] < 7:
            raise WeightsError(
                f"detections file {self.path} has no confidence column (frame,id,x,y,w,h,conf)"
            )
        if self.min_confidence is not None:
            table = table[table[:, 6] >= self.min_confidence]
        frames = table[:, 0].astype(np.int64)
        xyxy = np.concatenate([table[:, 2:4], table[:, 2:4] + table[:, 4:6]], axis=1).astype(np.float32)
        confidence = np.clip(table[:, 6], 0.0, 1.0).astype(np.float32)
        by_frame = {}
        for frame in np.unique(frames):
            mask = frames == frame
            by_frame[int(frame)] = (xyxy[mask], confidence[mask])
        logger.info("read %d boxes over %d frames from %s", len(table), len(by_frame), self.path)
        return by_frame

    def detect(self, frames: list[np.ndarray], frame_indices: list[int] | None = None) -> list[Detections]:
        """Return the file's boxes for each of `frame_indices` (1-based); `frames` only fixes the count."""
        if frame_indices is None:
            raise ValueError(
                f"the mot detector reading {self.path} needs frame_indices: pass the 1-based source frame "
                "index of each frame to detect()"
            )
        if len(frame_indices) != len(frames):
            raise ValueError(f"got {len(frames)} frames but {len(frame_indices)} frame_indices")
        return [self._lookup(int(index)) for index in frame_indices]

    def _lookup(self, index: int) -> Detections:
        if index not in self._by_frame:
            return Detections.empty()
        xyxy, confidence = self._by_frame[index]
        return Detections.from_arrays(xyxy.copy(), confidence.copy(), np.full(len(xyxy), PERSON_CLASS_ID))
