"""The detector protocol and registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.messages import Detections
from pipeline.registry import Registry

PERSON_CLASS_ID = 0


def nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> np.ndarray:
    """Greedy NMS as torchvision's: indices of kept boxes (N, 4 xyxy), most confident first.

    A box is dropped when its IoU with a kept, more confident box is above `iou`.
    """
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = boxes.T
    areas = (x2 - x1) * (y2 - y1)
    keep = []
    while order.size:
        best, rest = order[0], order[1:]
        keep.append(best)
        width = np.clip(np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest]), 0, None)
        height = np.clip(np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest]), 0, None)
        inter = width * height
        order = rest[inter / (areas[best] + areas[rest] - inter) <= iou]
    return np.asarray(keep, np.int64)


@runtime_checkable
class Detector(Protocol):
    """Finds people in a batch of BGR frames; returns one Detections per frame.

    `frame_indices`, when given, are the 1-based source frame indices of `frames` (same length); detectors
    that read precomputed detections (`mot`) need them, image detectors ignore them.
    """

    def detect(
        self, frames: list[np.ndarray], frame_indices: list[int] | None = None
    ) -> list[Detections]: ...


DETECTORS: Registry[Detector] = Registry("detector")


def register_detector(name: str) -> Callable:
    """Register a detector factory under `name` (a decorator)."""
    return DETECTORS.register(name)


def list_detectors() -> list[str]:
    """Names of the registered detectors."""
    return DETECTORS.names()


def create_detector(name: str, **kwargs) -> Detector:
    """Build the detector registered under `name` with its keyword arguments."""
    return DETECTORS.create(name, **kwargs)
