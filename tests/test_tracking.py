"""InCameraTracker on hand-made detections and on YOLO detections of PETS09-S2L1."""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from scipy.optimize import linear_sum_assignment

from pipeline.messages import Detections, Frame, TrackEnded, Tracks
from pipeline.tracking import TRACKER_DEFAULTS, InCameraTracker

METHODS = ["bytetrack", "botsort"]
BLANK = np.zeros((120, 240, 3), np.uint8)


def frame(index: int, camera_id: str = "cam", fps: float = 10.0) -> Frame:
    return Frame(camera_id, index, (index - 1) / fps, BLANK)


def walker(i: int, x0: float, step: float) -> list[float]:
    """A 20x50 person box whose left edge moves by `step` pixels per frame."""
    x = x0 + step * i
    return [x, 30.0, x + 20.0, 80.0]


def scene(i: int, leaves_after: int = 10) -> Detections:
    """Two people walking towards each other; the first leaves the view after `leaves_after` frames."""
    boxes = [walker(i, 150, -3)]
    if i <= leaves_after:
        boxes.insert(0, walker(i, 10, 3))
    return Detections.from_arrays(boxes, [0.9] * len(boxes))


@pytest.mark.parametrize("method", METHODS)
def test_ids_disappearance_and_finish(method):
    tracker = InCameraTracker("cam", method=method, frame_rate=10)
    lost_frames = int(10 / 30 * TRACKER_DEFAULTS[method]["track_buffer"])
    ended: list[TrackEnded] = []
    history: dict[int, list[int]] = defaultdict(list)  # local id -> frames it was reported
    for i in range(1, 31):
        tracks, gone = tracker.update(scene(i), frame(i))
        assert isinstance(tracks, Tracks)
        assert tracks.xyxy.dtype == np.float32 and tracks.track_id.dtype == np.int64
        assert (tracks.camera_id, tracks.frame_index, tracks.image_size) == ("cam", i, (240, 120))
        ended += gone
        for track_id in tracks.track_id:
            history[int(track_id)].append(i)
    assert sorted(history) == [1, 2]
    assert history[1] == list(range(1, 11))  # the leaver, tracked from the first frame to its last
    assert history[2] == list(range(1, 31))
    # the leaver's track ends once it has been lost for longer than the buffer, not before
    assert [e.track_id for e in ended] == [1]
    assert 10 + lost_frames <= ended[0].frame_index <= 10 + lost_frames + 2
    assert ended[0].timestamp == pytest.approx((ended[0].frame_index - 1) / 10)
    final = tracker.finish(31, 3.0)
    assert [(e.track_id, e.frame_index, e.timestamp) for e in final] == [(2, 31, 3.0)]
    assert tracker.active_track_ids == []


def test_boxes_follow_the_detections():
    tracker = InCameraTracker("cam")
    for i in range(1, 6):
        detections = scene(i)
        tracks, _ = tracker.update(detections, frame(i))
        np.testing.assert_allclose(tracks.xyxy, detections.xyxy, atol=1.5)
        np.testing.assert_allclose(tracks.confidence, detections.confidence, atol=1e-6)


def test_numbering_continues_after_finish_and_restarts_after_reset():
    tracker = InCameraTracker("cam")
    tracker.update(scene(1), frame(1))
    assert [e.track_id for e in tracker.finish(1, 0.0)] == [1, 2]
    tracks, _ = tracker.update(scene(2), frame(2))
    assert tracks.track_id.tolist() == [3, 4]  # unique for the whole run, even across finish()
    tracker.reset()
    tracks, _ = tracker.update(scene(3), frame(3))
    assert tracks.track_id.tolist() == [1, 2]


def test_two_trackers_number_their_own_tracks():
    a, b = InCameraTracker("cam_a"), InCameraTracker("cam_b", method="bytetrack")
    seen_a, seen_b = set(), set()
    for i in range(1, 8):
        tracks_a, _ = a.update(scene(i), frame(i, "cam_a"))
        if i >= 3:  # b starts later, after a has handed out its ids
            tracks_b, _ = b.update(Detections.from_arrays([walker(i, 60, 1)], [0.8]), frame(i, "cam_b"))
            seen_b.update(tracks_b.track_id.tolist())
        seen_a.update(tracks_a.track_id.tolist())
    assert seen_a == {1, 2}
    assert seen_b == {1}


def test_low_confidence_and_empty_frames():
    tracker = InCameraTracker("cam")
    tracks, ended = tracker.update(Detections.empty(), frame(1))
    assert len(tracks) == 0 and ended == []
    weak = Detections.from_arrays([walker(2, 10, 3)], [0.05])  # below track_low_thresh: ignored
    tracks, _ = tracker.update(weak, frame(2))
    assert len(tracks) == 0


def test_parameters_are_checked():
    with pytest.raises(ValueError, match="track_buffer") as info:
        InCameraTracker("cam", track_bufer=10)
    assert "track_bufer" in str(info.value)
    with pytest.raises(ValueError, match="gmc_method"):
        InCameraTracker("cam", method="bytetrack", gmc_method="orb")  # a BoT-SORT-only parameter
    with pytest.raises(ValueError, match="bytetrack"):
        InCameraTracker("cam", method="sort")
    tracker = InCameraTracker("cam", method="botsort", match_thresh=0.9)
    assert tracker.params["match_thresh"] == 0.9
    with pytest.raises(ValueError, match="cam_b"):
        tracker.update(Detections.empty(), frame(1, "cam_b"))


@pytest.mark.parametrize("method", METHODS)
def test_defaults_are_ultralytics_values(method):
    import ultralytics

    path = Path(ultralytics.__file__).parent / "cfg" / "trackers" / f"{method}.yaml"
    shipped = yaml.safe_load(path.read_text())
    ours = dict(TRACKER_DEFAULTS[method])
    if method == "botsort":
        assert ours.pop("gmc_method") == "none"  # deliberate: fixed cameras need no motion compensation
        shipped.pop("gmc_method")
    assert ours.pop("new_track_thresh") == 0.5  # deliberate: measured on the accuracy suite
    shipped.pop("new_track_thresh")
    for key in ("tracker_type", "with_reid", "model"):
        shipped.pop(key, None)
    assert ours == shipped


@pytest.fixture(scope="module")
def pets_run(assets: Path):
    """YOLO detections and ground truth for the first 40 PETS09-S2L1 frames."""
    from detectors import create_detector

    detector = create_detector("yolo", weights=assets / "models" / "yolov8n_int8.onnx")
    capture = cv2.VideoCapture(str(assets / "data" / "PETS09-S2L1" / "vtest.avi"))
    frames = [Frame("pets", i, (i - 1) / 7.0, capture.read()[1]) for i in range(1, 41)]
    capture.release()
    detections = detector.detect([f.image for f in frames])
    gt = np.loadtxt(assets / "data" / "PETS09-S2L1" / "gt" / "gt.txt", delimiter=",")
    return frames, detections, gt[gt[:, 0] <= 40]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], axis=1)  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None, :] - inter)


@pytest.mark.parametrize("method", METHODS)
def test_pets_ids_are_stable(pets_run, method):
    frames, detections, gt = pets_run
    tracker = InCameraTracker("pets", method=method, frame_rate=7)
    matched: dict[int, list[int]] = defaultdict(list)  # gt id -> the track id matched to it, frame by frame
    for f, found in zip(frames, detections, strict=True):
        tracks, _ = tracker.update(found, f)
        rows = gt[gt[:, 0] == f.index]
        truth = np.c_[rows[:, 2:4], rows[:, 2:4] + rows[:, 4:6]]
        if len(tracks) == 0 or len(truth) == 0:
            continue
        iou = _iou(truth, tracks.xyxy)
        for g, t in zip(*linear_sum_assignment(-iou), strict=True):  # one-to-one, as CLEAR-MOT matches
            if iou[g, t] >= 0.5:
                matched[int(rows[g, 1])].append(int(tracks.track_id[t]))
    followed = {gid: ids for gid, ids in matched.items() if len(ids) >= 15}
    assert len(followed) >= 4
    # people who stay in view keep one id; a person hidden for several frames may come back under a new one
    single = [gid for gid, ids in followed.items() if len(set(ids)) == 1]
    assert len(single) >= len(followed) - 1, followed
    dominant = [Counter(ids).most_common(1)[0][0] for ids in followed.values()]
    assert len(set(dominant)) == len(dominant)  # no two people share a track
    assert tracker.finish(41, 40 / 7.0)
