"""Test helpers: frames, ground-truth boxes and person crops of PETS09-S2L1 from the assets folder."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def pets_dir(assets: Path) -> Path:
    return assets / "data" / "PETS09-S2L1"


def read_gt(assets: Path) -> np.ndarray:
    """Ground truth rows (frame, id, x, y, w, h) as float64 (N, 6); frames are 1-based."""
    gt = np.loadtxt(pets_dir(assets) / "gt" / "gt.txt", delimiter=",", ndmin=2)
    return gt[:, :6]


def read_frames(assets: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """The BGR frames at the given 1-based indices, decoding the video from the start."""
    wanted = set(indices)
    frames: dict[int, np.ndarray] = {}
    capture = cv2.VideoCapture(str(pets_dir(assets) / "vtest.avi"))
    try:
        index = 0
        while len(frames) < len(wanted) and capture.grab():
            index += 1
            if index in wanted:
                ok, image = capture.retrieve()
                assert ok, f"cannot decode PETS frame {index}"
                frames[index] = image
    finally:
        capture.release()
    assert len(frames) == len(wanted), f"PETS has no frames {sorted(wanted - set(frames))}"
    return frames


def gt_boxes(gt: np.ndarray, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) float32 xyxy and ids (N,) int64 of the ground truth at one frame."""
    rows = gt[gt[:, 0] == frame_index]
    xyxy = np.column_stack([rows[:, 2], rows[:, 3], rows[:, 2] + rows[:, 4], rows[:, 3] + rows[:, 5]])
    return xyxy.astype(np.float32).reshape(-1, 4), rows[:, 1].astype(np.int64)


def identity_crops(
    assets: Path, frame_indices: list[int], min_height: float = 50.0
) -> list[tuple[int, int, np.ndarray]]:
    """(id, frame, BGR crop) for every ground-truth box at those frames that is tall and inside the image."""
    gt = read_gt(assets)
    frames = read_frames(assets, frame_indices)
    out = []
    for index in frame_indices:
        image = frames[index]
        height, width = image.shape[:2]
        xyxy, ids = gt_boxes(gt, index)
        for (x1, y1, x2, y2), person in zip(xyxy, ids.tolist(), strict=True):
            if y2 - y1 < min_height or x1 < 0 or y1 < 0 or x2 > width or y2 > height:
                continue
            out.append((person, index, image[int(y1) : int(y2), int(x1) : int(x2)].copy()))
    return out
