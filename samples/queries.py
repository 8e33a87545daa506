"""One query crop per ground-truth person, cut from a camera's own video of a multicam set (search tests)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import yaml

from pipeline.crop_sampler import intersection_over_area
from pipeline.motchallenge import read_mot_txt

MIN_HEIGHT = 80  # pixels: a query photo shows the person clearly
MAX_OVERLAP = 0.1  # share of the box covered by another person's box
EDGE = 4


@dataclass(frozen=True)
class Query:
    gt_id: int
    camera: str
    frame: int
    image: np.ndarray  # BGR crop


def person_queries(manifest: Path) -> list[Query]:
    """For each gt person, the crop of their tallest clear box (inside the image, barely overlapped).

    The person's first camera in manifest order where such a box exists is used.
    """
    manifest = Path(manifest)
    cameras = yaml.safe_load(manifest.read_text())["cameras"]
    chosen: dict[int, tuple[str, int, np.ndarray, Path]] = {}
    for camera in cameras:
        gt = read_mot_txt(manifest.parent / camera["gt"])
        width, height = camera["image_size"]
        best: dict[int, tuple[float, int, np.ndarray]] = {}
        for frame in np.unique(gt[:, 0]).astype(int):
            rows = gt[gt[:, 0] == frame]
            xyxy = np.concatenate([rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]], axis=1).astype(np.float32)
            overlap = intersection_over_area(xyxy)
            for row, box, cover in zip(rows, xyxy, overlap):
                h = box[3] - box[1]
                inside = (
                    box[0] >= EDGE and box[1] >= EDGE and box[2] <= width - EDGE and box[3] <= height - EDGE
                )
                if not inside or cover > MAX_OVERLAP or h < MIN_HEIGHT:
                    continue
                gt_id = int(row[1])
                if gt_id not in chosen and (gt_id not in best or h > best[gt_id][0]):
                    best[gt_id] = (float(h), int(frame), box)
        for gt_id, (_, frame, box) in best.items():
            chosen[gt_id] = (camera["id"], frame, box, manifest.parent / camera["video"])
    queries = []
    for gt_id, (camera, frame, box, video) in sorted(chosen.items()):
        capture = cv2.VideoCapture(str(video))
        capture.set(cv2.CAP_PROP_POS_FRAMES, frame - 1)
        ok, image = capture.read()
        capture.release()
        assert ok, f"cannot read frame {frame} of {video}"
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        queries.append(Query(gt_id, camera, frame, image[y1:y2, x1:x2].copy()))
    return queries
