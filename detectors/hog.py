"""OpenCV's HOG + linear SVM people detector: needs no weights, slow and weak, a baseline."""

from __future__ import annotations

import cv2
import numpy as np

from detectors.base import PERSON_CLASS_ID, nms
from pipeline.messages import Detections

# The default people detector was trained on 64x128 INRIA windows holding a person about 32x96 px:
# shrinking each window by these margins gives a box around the person, as the other detectors give.
_WINDOW_MARGIN_X = 16 / 64
_WINDOW_MARGIN_Y = 16 / 128


class HogDetector:
    """Dalal-Triggs HOG people detector; confidence is the SVM margin squashed into 0..1 by tanh(m / 2).

    People under about 96 px tall are missed at `upscale=1`; `upscale=2.0` finds them at four times the
    cost. Overlapping windows are merged by NMS at `nms_iou`.
    """

    def __init__(
        self,
        upscale: float = 2.0,
        hit_threshold: float = 0.0,
        win_stride: int = 8,
        scale: float = 1.05,
        nms_iou: float = 0.4,
        tight_boxes: bool = True,
    ) -> None:
        if upscale <= 0:
            raise ValueError(f"upscale must be > 0, but got {upscale}")
        if win_stride < 1:
            raise ValueError(f"win_stride must be >= 1, but got {win_stride}")
        self.upscale = upscale
        self.hit_threshold = hit_threshold
        self.win_stride = win_stride
        self.scale = scale
        self.nms_iou = nms_iou
        self.tight_boxes = tight_boxes
        self._hog = cv2.HOGDescriptor()
        self._hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())

    def detect(self, frames: list[np.ndarray], frame_indices: list[int] | None = None) -> list[Detections]:
        """Detect people in each BGR frame; `frame_indices` is accepted for the protocol and ignored."""
        return [self._detect_one(frame) for frame in frames]

    def _detect_one(self, frame: np.ndarray) -> Detections:
        image = frame
        if self.upscale != 1.0:
            image = cv2.resize(frame, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        rects, margins = self._hog.detectMultiScale(
            image,
            hitThreshold=self.hit_threshold,
            winStride=(self.win_stride, self.win_stride),
            padding=(8, 8),
            scale=self.scale,
            groupThreshold=0,  # keep every window with its own score; NMS below merges them
        )
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, np.float32).reshape(-1, 4) / self.upscale  # (N, 4) x, y, w, h
        margins = np.asarray(margins, np.float32).reshape(-1)
        keep = nms(np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], axis=1), margins, self.nms_iou)
        rects, margins = rects[keep], margins[keep]
        mx, my = (_WINDOW_MARGIN_X, _WINDOW_MARGIN_Y) if self.tight_boxes else (0.0, 0.0)
        x, y, w, h = rects.T
        xyxy = np.stack([x + mx * w, y + my * h, x + (1 - mx) * w, y + (1 - my) * h], axis=1)
        height, width = frame.shape[:2]
        xyxy = np.clip(xyxy, 0, [width, height, width, height])
        confidence = np.tanh(np.clip(margins, 0, None) / 2.0)
        order = np.argsort(-confidence, kind="stable")
        return Detections.from_arrays(xyxy[order], confidence[order], np.full(len(order), PERSON_CLASS_ID))
