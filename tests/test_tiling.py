"""Detection in tiles: the windows, the merge, and small people found in real 1080p MultiviewX views."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from detectors.tiling import TiledDetector, tile_windows
from detectors.yolo import YoloDetector
from pipeline import build
from pipeline.config import load
from pipeline.messages import Detections
from pipeline.tracklet_spans import box_ious
from samples.multiviewx import matching_boxes, read_matchings


def recall(found: Detections, truth: np.ndarray) -> float:
    """Share of ground-truth boxes (N, 4) that some detection covers at IoU >= 0.5."""
    return float(np.mean([len(found) > 0 and box_ious(box, found.xyxy).max() >= 0.5 for box in truth]))


def most_overlap(found: Detections) -> float:
    """The largest IoU between two of the detections (0 for fewer than two)."""
    if len(found) < 2:
        return 0.0
    return max(float(box_ious(box, np.delete(found.xyxy, i, 0)).max()) for i, box in enumerate(found.xyxy))


class FixedDetector:
    """Returns the same boxes, in input pixels, for every image it is given; records the image sizes."""

    def __init__(self, xyxy: list[list[float]]) -> None:
        self.xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        self.sizes: list[tuple[int, int]] = []

    def detect(self, frames: list[np.ndarray], frame_indices: list[int] | None = None) -> list[Detections]:
        self.sizes.extend(f.shape[:2] for f in frames)
        n = len(self.xyxy)
        return [
            Detections(self.xyxy, np.linspace(0.9, 0.5, n, dtype=np.float32), np.zeros(n, np.int32))
        ] * len(frames)


def test_windows_cover_the_frame_with_the_overlap() -> None:
    windows = tile_windows(1920, 1080, 2, 0.25)
    assert len(windows) == 4
    assert {w[0] for w in windows} == {0, 1920 - windows[0][2]} and {w[1] for w in windows} == {
        0,
        1080 - windows[0][3],
    }
    assert all(x2 <= 1920 and y2 <= 1080 for _, _, x2, y2 in windows)
    shared = windows[0][2] - windows[1][0]  # columns the two top windows share
    assert shared == pytest.approx(0.25 * windows[0][2], abs=2)
    assert tile_windows(640, 480, 1, 0.25) == [(0, 0, 640, 480)]
    with pytest.raises(ValueError, match="grid"):
        tile_windows(640, 480, 0, 0.25)
    with pytest.raises(ValueError, match="overlap"):
        TiledDetector(FixedDetector([]), grid=2, overlap=1.0)


def test_tile_boxes_move_to_frame_pixels_and_cut_ones_are_dropped() -> None:
    # in every input: a whole person at (10, 10)-(30, 60), and one touching a 200 px input's right edge
    inner = FixedDetector([[10, 10, 30, 60], [170, 10, 200, 60]])
    frame = np.zeros((200, 300, 3), np.uint8)
    (found,) = TiledDetector(inner, grid=2, overlap=0.5).detect([frame])
    assert inner.sizes == [(200, 300)] + [(134, 200)] * 4  # the whole frame, then four tiles in one call
    kept = {tuple(b) for b in found.xyxy.round().astype(int).tolist()}
    # the whole frame keeps both; each tile's boxes move by its offset (the top-left tile's first box is
    # the whole frame's, merged); the left tiles' second box touches their cut and is dropped, the right
    # tiles' right edge is the frame's, so theirs stay
    assert kept == {
        (10, 10, 30, 60), (170, 10, 200, 60),  # whole frame
        (10, 76, 30, 126),  # bottom-left tile
        (110, 10, 130, 60), (270, 10, 300, 60),  # top-right
        (110, 76, 130, 126), (270, 76, 300, 126),  # bottom-right
    }  # fmt: skip


def test_duplicates_of_one_person_merge() -> None:
    inner = FixedDetector([[10, 10, 30, 60]])
    frame = np.zeros((100, 100, 3), np.uint8)
    # 91 px tiles at 0 and 9: the top-left tile's box is the whole frame's, the bottom ones overlap it or
    # the top-right one's at IoU 0.69; the top-right one (IoU 0.38 with the first) is a second person
    (found,) = TiledDetector(inner, grid=2, overlap=0.9).detect([frame])
    assert {tuple(b) for b in found.xyxy.round().astype(int).tolist()} == {(10, 10, 30, 60), (19, 10, 39, 60)}


def test_one_grid_is_the_inner_detector() -> None:
    inner = FixedDetector([[1, 1, 5, 9]])
    frames = [np.zeros((50, 50, 3), np.uint8)] * 2
    found = TiledDetector(inner, grid=1).detect(frames)
    assert inner.sizes == [(50, 50)] * 2 and all(len(f) == 1 for f in found)


def test_tiles_find_small_people_in_1080p_views(assets: Path) -> None:
    """Real detector, real views: far-off people missed at 640 px are found in tiles, with no doubles."""
    root = assets / "data" / "MultiviewX"
    whole = YoloDetector(assets / "models" / "yolov8n_int8.onnx", confidence=0.3)
    tiled = TiledDetector(whole, grid=2)
    found_whole, found_tiled, truth_boxes = [], [], []
    for camera in (4, 6):
        truth = matching_boxes(read_matchings(root / "matchings" / f"Camera{camera}.txt"), (1920, 1080))
        for frame in (1, 6):
            image = cv2.imread(str(root / "Image_subsets" / f"C{camera}" / f"{frame - 1:04d}.jpg"))
            rows = truth[truth[:, 0] == frame]
            boxes = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]
            (a,) = whole.detect([image])
            (b,) = tiled.detect([image])
            found_whole.append(recall(a, boxes))
            found_tiled.append(recall(b, boxes))
            truth_boxes.append(len(boxes))
            assert most_overlap(b) <= 0.5  # one box a person
    whole_recall = np.average(found_whole, weights=truth_boxes)
    tiled_recall = np.average(found_tiled, weights=truth_boxes)
    assert tiled_recall >= whole_recall + 0.08, (whole_recall, tiled_recall)


def test_config_builds_a_tiled_detector(assets: Path, tmp_path: Path) -> None:
    config_path = tmp_path / "cameras.yaml"
    config_path.write_text(
        "cameras: [{id: c, source: video.mp4}]\n"
        f"detector: {{weights: {assets / 'models' / 'yolov8n_int8.onnx'}, tiles: 3}}\n"
        f"reid: {{weights: {assets / 'models' / 'osnet_x0_25_msmt17.onnx'}}}\n"
    )
    config = load(config_path)
    detector = build.build_detector(config, config.cameras[0], "cpu")
    assert isinstance(detector, TiledDetector) and detector.grid == 3
    untiled = load(config_path, ["detector.tiles=1"])
    assert isinstance(build.build_detector(untiled, untiled.cameras[0], "cpu"), YoloDetector)
