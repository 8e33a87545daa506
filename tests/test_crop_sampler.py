"""CropSampler: which crops are worth embedding, on built frames and on PETS ground-truth tracks."""

from __future__ import annotations

import numpy as np
import pytest
from pets_crops import gt_boxes, read_frames, read_gt

from pipeline.crop_sampler import CropSampler, intersection_over_area
from pipeline.messages import Frame, Tracks

H, W = 480, 640


def _frame(index: int, camera: str = "cam") -> Frame:
    image = np.random.default_rng(index).integers(0, 256, (H, W, 3), np.uint8)
    return Frame(camera, index, index / 10.0, image)


def _tracks(frame: Frame, boxes, confidence=None, ids=None) -> Tracks:
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    n = len(xyxy)
    conf = np.full(n, 0.9, np.float32) if confidence is None else np.asarray(confidence, np.float32)
    track_id = np.arange(1, n + 1, dtype=np.int64) if ids is None else np.asarray(ids, np.int64)
    return Tracks(frame.camera_id, frame.index, frame.timestamp, xyxy, conf, track_id)


GOOD = (100, 100, 150, 240)  # 140 px tall, well inside the frame


def _sampled_frames(sampler: CropSampler, boxes_per_frame, confidence=None) -> list[int]:
    out = []
    for index, boxes in enumerate(boxes_per_frame, start=1):
        frame = _frame(index)
        out += [c.frame_index for c in sampler.update(frame, _tracks(frame, boxes, confidence))]
    return out


def test_first_good_crop_at_once_then_every_k_frames():
    every_k = 5
    frames = _sampled_frames(CropSampler(every_k=every_k), [GOOD] * 20)
    assert frames[0] == 1
    assert np.all(np.diff(frames) == every_k)
    assert len(frames) == 1 + (20 - 1) // every_k


def test_track_is_embedded_on_its_first_worthy_frame():
    short = (100, 100, 150, 130)
    frames = _sampled_frames(CropSampler(min_height=64, every_k=5), [short] * 3 + [GOOD] * 3)
    assert frames == [4]


def test_a_due_track_waits_for_a_worthy_crop():
    low = 0.1
    sampler = CropSampler(every_k=3, min_confidence=0.4)
    confs = [0.9, 0.9, 0.9, low, low, 0.9, 0.9]
    got = []
    for index, conf in enumerate(confs, start=1):
        frame = _frame(index)
        got += [c.frame_index for c in sampler.update(frame, _tracks(frame, [GOOD], [conf]))]
    assert got == [1, 6]


@pytest.mark.parametrize(
    ("box", "confidence"),
    [
        ((100, 100, 150, 150), 0.9),  # 50 px tall
        (GOOD, 0.2),  # not confident
        ((1, 100, 50, 240), 0.9),  # cut by the left edge
        ((100, 1, 150, 140), 0.9),  # cut by the top edge
        ((W - 50, 100, W - 1, 240), 0.9),  # cut by the right edge
        ((100, H - 140, 150, H - 1), 0.9),  # cut by the bottom edge
    ],
)
def test_crops_not_worth_it_are_skipped(box, confidence):
    assert _sampled_frames(CropSampler(), [box] * 8, [confidence]) == []


def test_occluded_box_is_skipped_but_its_occluder_is_not():
    occluder = (300, 100, 380, 300)  # 80x200
    hidden = (350, 140, 410, 260)  # half of it behind the occluder
    frame = _frame(1)
    crops = CropSampler(max_overlap=0.3).update(frame, _tracks(frame, [occluder, hidden]))
    assert [c.track_id for c in crops] == [1]
    ioa = intersection_over_area(np.array([occluder, hidden], np.float32))
    assert ioa[1] > 0.3 and ioa[0] < 0.3


def test_cap_per_track():
    frames = _sampled_frames(CropSampler(every_k=1, max_per_track=4), [GOOD] * 10)
    assert frames == [1, 2, 3, 4]


def test_without_a_cap_a_track_gets_crops_all_along_it():
    frames = _sampled_frames(CropSampler(every_k=5), [GOOD] * 200)
    assert frames == list(range(1, 201, 5))


def test_crops_are_copies_of_the_box_pixels():
    frame = _frame(1)
    box = (100.4, 100.6, 150.2, 240.9)
    (crop,) = CropSampler().update(frame, _tracks(frame, [box]))
    expected = frame.image[100:241, 100:151].copy()
    np.testing.assert_array_equal(crop.image, expected)
    assert not np.shares_memory(crop.image, frame.image)
    frame.image[:] = 0
    np.testing.assert_array_equal(crop.image, expected)
    assert (crop.camera_id, crop.track_id, crop.frame_index, crop.timestamp) == ("cam", 1, 1, 0.1)


def test_quality_rises_with_size_confidence_and_visibility():
    frame = _frame(1)
    boxes = [
        (20, 20, 60, 90),  # 70 px tall
        (100, 20, 160, 220),  # 200 px tall
        (200, 20, 260, 220),  # 200 px tall, low confidence
        (300, 20, 360, 220),  # 200 px tall, partly covered by the next box
        (345, 120, 420, 260),
    ]
    crops = CropSampler(max_overlap=0.5).update(
        frame, _tracks(frame, boxes, confidence=[0.9, 0.9, 0.5, 0.9, 0.9])
    )
    quality = {c.track_id: c.quality for c in crops}
    assert all(0.0 < q <= 1.0 for q in quality.values())
    assert quality[2] > quality[1]
    assert quality[2] > quality[3]
    assert quality[2] > quality[4]


def test_forget_and_reset_bound_the_state():
    sampler = CropSampler(every_k=5)
    frame = _frame(1)
    sampler.update(frame, _tracks(frame, [GOOD, (300, 100, 350, 240)]))
    assert len(sampler) == 2
    sampler.forget(1)
    assert len(sampler) == 1
    frame = _frame(2)
    crops = sampler.update(frame, _tracks(frame, [GOOD, (300, 100, 350, 240)]))
    assert [c.track_id for c in crops] == [1]  # forgotten, so new again
    sampler.reset()
    assert len(sampler) == 0


def test_state_is_capped_at_max_tracks():
    sampler = CropSampler(max_tracks=3)
    for index in range(1, 11):
        frame = _frame(index)
        sampler.update(frame, _tracks(frame, [GOOD], ids=[index]))
    assert len(sampler) == 3


def test_tracks_of_another_frame_are_rejected():
    frame = _frame(1)
    other = _frame(2)
    with pytest.raises(ValueError, match="do not belong"):
        CropSampler().update(frame, _tracks(other, [GOOD]))


def test_pets_ground_truth_tracks(assets):
    sampler = CropSampler(min_height=60, every_k=5, max_per_track=3)
    gt = read_gt(assets)
    n_frames = 40
    frames = read_frames(assets, list(range(1, n_frames + 1)))
    per_track: dict[int, list[int]] = {}
    first_worthy: dict[int, int] = {}
    for index in range(1, n_frames + 1):
        frame = Frame("pets", index, index / 7.0, frames[index])
        xyxy, ids = gt_boxes(gt, index)
        tracks = Tracks("pets", index, frame.timestamp, xyxy, np.ones(len(ids), np.float32), ids)
        overlap = intersection_over_area(xyxy)
        for box, person, ioa in zip(xyxy, ids.tolist(), overlap, strict=True):
            inside = box[0] >= 4 and box[1] >= 4 and box[2] <= 768 - 4 and box[3] <= 576 - 4
            if inside and box[3] - box[1] >= 60 and ioa <= 0.3:
                first_worthy.setdefault(person, index)
        for crop in sampler.update(frame, tracks):
            per_track.setdefault(crop.track_id, []).append(crop.frame_index)
            assert crop.image.shape[0] >= 60 and 0.0 < crop.quality <= 1.0
    assert len(per_track) >= 3
    assert {t: f[0] for t, f in per_track.items()} == first_worthy
    for sampled in per_track.values():
        assert len(sampled) <= 3
        assert np.all(np.diff(sampled) >= 5)
