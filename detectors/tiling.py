"""Detection in overlapping tiles as well as the whole frame, for people too small at the model's input size."""

from __future__ import annotations

import numpy as np

from detectors.base import Detector, nms
from pipeline.messages import Detections

EDGE_PX = 2.0  # a tile box this near a cut edge (not the frame's) is a person the cut split: dropped


def tile_windows(width: int, height: int, grid: int, overlap: float) -> list[tuple[int, int, int, int]]:
    """`grid` x `grid` windows (x1, y1, x2, y2) covering a width x height frame, neighbours sharing
    `overlap` of a window's side."""
    if grid < 1 or not 0 <= overlap < 1:
        raise ValueError(f"grid must be >= 1 and overlap in [0, 1), but got {grid} and {overlap}")
    tile_w = int(np.ceil(width / (grid - (grid - 1) * overlap)))
    tile_h = int(np.ceil(height / (grid - (grid - 1) * overlap)))
    xs = np.linspace(0, width - tile_w, grid).round().astype(int) if grid > 1 else [0]
    ys = np.linspace(0, height - tile_h, grid).round().astype(int) if grid > 1 else [0]
    return [(int(x), int(y), int(x) + tile_w, int(y) + tile_h) for y in ys for x in xs]


class TiledDetector:
    """Runs `inner` on each whole frame and on `grid` x `grid` overlapping tiles of it, in one call.

    A person 50 px tall in a 1920 px frame is 17 px at a 640 px model input, below what small detectors
    find; in a tile of half the frame's width it is twice that. Tile boxes touching a cut edge are
    dropped (the whole frame, or the neighbouring tile through the overlap, sees that person whole),
    then boxes of all passes are merged by NMS at `iou`. The cost is 1 + grid² detector inputs a frame.
    """

    def __init__(self, inner: Detector, grid: int = 2, overlap: float = 0.25, iou: float = 0.5) -> None:
        tile_windows(1, 1, grid, overlap)  # checks grid and overlap
        self.inner = inner
        self.grid = grid
        self.overlap = overlap
        self.iou = iou

    def detect(self, frames: list[np.ndarray], frame_indices: list[int] | None = None) -> list[Detections]:
        if self.grid == 1 or not frames:
            return self.inner.detect(frames, frame_indices)
        images: list[np.ndarray] = []
        plan: list[list[tuple[int, int, int, int] | None]] = []  # per frame: None (whole) then windows
        for frame in frames:
            height, width = frame.shape[:2]
            windows = tile_windows(width, height, self.grid, self.overlap)
            plan.append([None, *windows])
            images.append(frame)
            images.extend(frame[y1:y2, x1:x2] for x1, y1, x2, y2 in windows)
        found = iter(self.inner.detect(images))
        return [
            self._merge([next(found) for _ in windows], windows, frame.shape[1], frame.shape[0])
            for frame, windows in zip(frames, plan, strict=True)
        ]

    def _merge(
        self,
        parts: list[Detections],
        windows: list[tuple[int, int, int, int] | None],
        width: int,
        height: int,
    ) -> Detections:
        boxes, scores, classes = [], [], []
        for part, window in zip(parts, windows, strict=True):
            xyxy = part.xyxy
            keep = np.ones(len(xyxy), bool)
            if window is not None:
                x1, y1, x2, y2 = window
                xyxy = xyxy + np.array([x1, y1, x1, y1], np.float32)
                cut = np.array([x1 > 0, y1 > 0, x2 < width, y2 < height])  # sides that are cuts
                near = np.abs(xyxy - np.array([x1, y1, x2, y2], np.float32)) <= EDGE_PX  # (N, 4)
                keep = ~(near & cut).any(axis=1)
            boxes.append(xyxy[keep])
            scores.append(part.confidence[keep])
            classes.append(part.class_id[keep])
        xyxy, confidence, class_id = np.concatenate(boxes), np.concatenate(scores), np.concatenate(classes)
        kept = nms(xyxy, confidence, self.iou) if len(xyxy) else np.zeros(0, np.int64)
        return Detections(xyxy[kept], confidence[kept], class_id[kept])
