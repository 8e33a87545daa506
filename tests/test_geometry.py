"""Learned geometry of overlapping views, driven through its public API on real footage's annotations.

PETS09-S2L1: two cameras cut from the annotated view, a = a crop (a translation), b = the view's right
part seen through a known homography (tilt and 1.2x scale); each camera has its own track ids, tracks
broken into pieces, 1.5 px of foot-point noise and a tenth of the boxes dropped. MultiviewX: six
synthetic views with their calibration, person ids scrambled per camera.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.geometry import OverlapLearner, OverlapModel, Trajectory, fit_overlap

FPS = 7.0  # PETS09-S2L1's frame rate
CROP_A = np.array([30.0, 10.0])  # camera a: the view from here on, foot x < 520
B_FROM = 280.0  # camera b: the view right of x = 280, warped
# camera b's warp: the corners of the view right of B_FROM, tilted and scaled about 1.2x
WARP = cv2.getPerspectiveTransform(
    np.float32([[B_FROM, 0], [768, 0], [768, 576], [B_FROM, 576]]),
    np.float32([[40, 30], [600, 0], [650, 700], [0, 660]]),
).astype(np.float64)


def _apply(h: np.ndarray, points: np.ndarray) -> np.ndarray:
    x = points @ h[:, :2].T + h[:, 2]
    return x[:, :2] / x[:, 2:]


@pytest.fixture(scope="module")
def pets_gt(assets: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frames (N,), ids (N,), boxes (N, 4) x, y, w, h of the PETS09-S2L1 ground truth."""
    gt = np.loadtxt(assets / "data" / "PETS09-S2L1" / "gt" / "gt.txt", delimiter=",")
    return gt[:, 0].astype(int), gt[:, 1].astype(int), gt[:, 2:6]


def _foot(boxes: np.ndarray) -> np.ndarray:
    return np.stack([boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3]], axis=1)


def _cropped(origin: np.ndarray):
    def local(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _foot(boxes) - origin, boxes[:, 3].copy()

    return local


def _warped(boxes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foot points through WARP, and the heights of the warped boxes' bounding boxes."""
    corners = [
        _apply(WARP, np.stack([boxes[:, 0] + dx * boxes[:, 2], boxes[:, 1] + dy * boxes[:, 3]], axis=1))
        for dx in (0, 1)
        for dy in (0, 1)
    ]
    ys = np.stack([c[:, 1] for c in corners])  # (4, N)
    return _apply(WARP, _foot(boxes)), ys.max(axis=0) - ys.min(axis=0)


def _camera(name, gt, keep, local, rng, id_base, time_shift=0.0):
    """The tracklets of one synthetic camera: gt boxes where keep (N,) bool, in its own pixels, broken
    into pieces of 20-80 frames under shuffled local ids, with noise and dropped boxes; and the gt
    person of each local id."""
    frames, ids, boxes = gt
    foot, height = local(boxes)
    keep = keep & (rng.random(len(frames)) > 0.1)
    pieces = []
    for person in np.unique(ids[keep]):
        rows = np.flatnonzero(keep & (ids == person))
        rows = rows[np.argsort(frames[rows])]
        start = 0
        while start < len(rows):
            piece = rows[start : start + int(rng.integers(20, 80))]
            start += len(piece)
            if len(piece) >= 2:
                pieces.append((person, piece))
    local_ids = id_base + rng.permutation(len(pieces))
    trajectories, person_of = [], {}
    for track_id, (person, piece) in zip(local_ids.tolist(), pieces):
        points = foot[piece] + rng.normal(0, 1.5, (len(piece), 2))
        heights = height[piece] * (1 + rng.normal(0, 0.03, len(piece)))
        times = frames[piece] / FPS + time_shift
        trajectories.append(Trajectory.from_arrays(name, track_id, times, points, heights))
        person_of[track_id] = int(person)
    return trajectories, person_of


def _overlapping_pair(gt, seed: int, time_shift: float = 0.0):
    rng = np.random.default_rng(seed)
    foot = _foot(gt[2])
    a = _camera("a", gt, foot[:, 0] < 520, _cropped(CROP_A), rng, 100)
    b = _camera("b", gt, foot[:, 0] >= B_FROM, _warped, rng, 700, time_shift)
    return a, b


def _truth_error(model: OverlapModel, gt, bump: np.ndarray | None = None) -> np.ndarray:
    """Distance (N,) in b's pixels between the model's and the true mapping at every annotated foot point
    both cameras see; `bump` is a shift of camera a's image."""
    foot = _foot(gt[2])
    both = foot[(foot[:, 0] >= B_FROM) & (foot[:, 0] < 520)]
    in_a = both - CROP_A + (0 if bump is None else bump)
    return np.linalg.norm(model.project(in_a) - _apply(WARP, both), axis=1)


# -- trajectories ---------------------------------------------------------------------------------------


def test_trajectory_checks_shapes_and_order() -> None:
    with pytest.raises(ValueError, match=r"points must have shape \(3, 2\), but got shape \(3, 3\)"):
        Trajectory("a", 1, np.arange(3.0), np.zeros((3, 3)), np.ones(3))
    with pytest.raises(ValueError, match="strictly increasing"):
        Trajectory("a", 1, np.array([0.0, 1.0, 1.0]), np.zeros((3, 2)), np.ones(3))
    with pytest.raises(ValueError, match="heights must be > 0"):
        Trajectory("a", 1, np.arange(2.0), np.zeros((2, 2)), np.array([1.0, 0.0]))
    t = Trajectory.from_arrays("a", 1, [2, 0, 1, 1], [[2, 2], [0, 0], [9, 9], [1, 1]], [1, 1, 1, 1])
    assert t.times.tolist() == [0, 1, 2] and t.points[1].tolist() == [1, 1]  # the last sample at a time wins


def test_trajectory_interpolates_within_gaps() -> None:
    t = Trajectory.from_boxes("a", 1, [0.0, 1.0, 3.0], [[0, 0, 2, 10], [2, 0, 4, 20], [6, 0, 8, 20]])
    points, heights, valid = t.at(np.array([-0.5, 0.0, 0.5, 1.0, 2.0, 3.0]), max_gap_s=1.5)
    assert valid.tolist() == [False, True, True, True, False, True]  # 1 -> 3 is a gap over 1.5 s
    assert points[2].tolist() == [2.0, 15.0] and heights[2] == 15.0


# -- PETS09-S2L1: a crop and a warped view ----------------------------------------------------------------


def test_pets_learned_mapping_lands_within_a_pixel_of_the_true_one(pets_gt) -> None:
    (a, person_a), (b, person_b) = _overlapping_pair(pets_gt, seed=0)
    model = fit_overlap(a, b)
    assert model is not None
    error = _truth_error(model, pets_gt)
    # measured: median 0.15 px, p95 0.41 px, max 0.60 px over the 1834 annotated foot points in the overlap
    # (seeds 1, 2: max 1.0 and 1.9 px)
    assert np.median(error) < 0.5 and np.percentile(error, 95) < 1.5 and error.max() < 3.0, error
    assert len(model.inlier_pairs) >= 30 and model.coverage > 0.9 and model.confidence > 0.8
    assert all(person_a[ta] == person_b[tb] for ta, tb in model.inlier_pairs)
    assert model.median_error_px < 4.0  # 1.5 px of noise in each camera, seen in b's pixels
    assert model.median_error_rel < 0.05

    # distance: one person in both views is close, two people are far apart
    same, different = [], []
    for ta, tb in itertools.product(a, b):
        d = model.distance(tb, ta, min_common=3)  # either order
        if d is not None:
            (same if person_a[ta.track_id] == person_b[tb.track_id] else different).append(d)
    # measured: same at most 0.05 box heights; different at least 0.23 (people side by side), p5 0.6
    assert len(same) > 50 and len(different) > 200
    assert max(same) < 0.1 < min(different)
    assert np.percentile(different, 5) > 2 * model.tolerance


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_mapping_that_explains_many_pairs_needs_less_coverage(pets_gt, seed: int) -> None:
    """Camera b's detector misses half the people: in the first 60 s it keeps half its tracklets, so
    where a's people land in b, b shows no one most of the time. Chance may explain 3 pairs, not 15: the
    mapping holds with less of each view explained than 3 pairs would need (min_coverage 0.5)."""
    (a, _), (b, _) = _overlapping_pair(pets_gt, seed=0)
    rng = np.random.default_rng(seed)
    early = [t for t in (t.between(0, 60) for t in a) if len(t)]
    thinned = [t for t in (t.between(0, 60) for t in b) if len(t) and rng.random() < 0.5]
    model = fit_overlap(early, thinned)
    assert model is not None
    # measured (seeds 0, 1, 2): 15, 15 and 18 pairs; coverage 0.36, 0.39, 0.37; 0.19, 0.10, 0.13 px median
    # from the true mapping
    assert len(model.inlier_pairs) >= 12 and model.coverage < 0.5
    assert np.median(_truth_error(model, pets_gt)) < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_pets_views_that_do_not_overlap_come_out_as_not_overlapping(pets_gt, seed: int) -> None:
    rng = np.random.default_rng(seed)
    foot = _foot(pets_gt[2])
    left, _ = _camera("a", pets_gt, foot[:, 0] < 340, _cropped(CROP_A), rng, 100)
    right, _ = _camera("c", pets_gt, foot[:, 0] >= 440, _cropped(np.array([440.0, 0.0])), rng, 300)
    assert fit_overlap(left, right) is None  # disjoint crops, the same time
    assert fit_overlap(left, right, along_a_line=True) is None

    (a, _), (b, _) = _overlapping_pair(pets_gt, seed, time_shift=30.0)
    assert fit_overlap(a, b) is None  # overlapping crops, but b's clock is 30 s off: no one matches

    early = [t.between(0, 50) for t in a]
    late = [t.between(60, 1e9) for t in b]
    assert fit_overlap(early, late) is None  # overlapping crops at disjoint times
    assert (
        fit_overlap(a, b, along_a_line=True) is None and fit_overlap(early, late, along_a_line=True) is None
    )


def test_learner_learns_online_and_relearns_after_a_camera_moves(pets_gt) -> None:
    """Boxes frame by frame; at frame 450 camera a is knocked by (60, 35) px."""
    (a, _), (b, _) = _overlapping_pair(pets_gt, seed=0)
    bump_frame, bump = 450, np.array([60.0, 35.0])
    per_frame: dict[tuple[str, int], list] = {}
    for t in a + b:
        for time, point, height in zip(t.times, t.points, t.heights):
            frame = round(time * FPS)
            if t.camera == "a" and frame >= bump_frame:
                point = point + bump
            x, y = point
            per_frame.setdefault((t.camera, frame), []).append((t.track_id, [x - 15, y - height, x + 15, y]))
    learner = OverlapLearner()
    learned_at = dropped_at = relearned_at = None
    for frame in range(1, pets_gt[0].max() + 1):
        for camera in ("a", "b"):
            rows = per_frame.get((camera, frame), [])
            changed = learner.add_boxes(camera, frame / FPS, [r[0] for r in rows], [r[1] for r in rows])
            model = learner.model("a", "b")
            if changed and model is not None and learned_at is None:
                learned_at = frame
            if changed and model is None and frame >= bump_frame and dropped_at is None:
                dropped_at = frame
            if changed and model is not None and dropped_at is not None and relearned_at is None:
                relearned_at = frame
        if frame == bump_frame - 1:
            before = learner.model("a", "b")
    # measured: learned at frame 29 (4 s, 1.1 px from the truth), 0.12 px before the knock; dropped at
    # frame 493 (6 s after it), learned again at frame 535 (1.7 px), 0.40 px from the new truth at the end
    assert learned_at is not None and learned_at < 100
    assert before is not None and np.median(_truth_error(before, pets_gt)) < 1.0
    assert dropped_at is not None and dropped_at - bump_frame < 15 * FPS
    assert relearned_at is not None and relearned_at - bump_frame < 30 * FPS
    final = learner.model("a", "b")
    assert final is not None and np.median(_truth_error(final, pets_gt, bump)) < 1.0
    assert learner.model("b", "a").camera_a == "b"
    pair = final.inlier_pairs[-1]
    d = final.distance(learner.trajectory("a", pair[0]), learner.trajectory("b", pair[1]))
    assert d is not None and d < final.tolerance / 2 and learner.trajectory("a", -1) is None
    assert np.allclose(learner.model("b", "a").project(final.project([[200.0, 300.0]])), [[200.0, 300.0]])


def test_learner_finds_no_overlap_between_disjoint_views_fed_in_pieces(pets_gt) -> None:
    rng = np.random.default_rng(3)
    foot = _foot(pets_gt[2])
    left, _ = _camera("a", pets_gt, foot[:, 0] < 340, _cropped(CROP_A), rng, 100)
    right, _ = _camera("c", pets_gt, foot[:, 0] >= 440, _cropped(np.array([440.0, 0.0])), rng, 300)
    learner = OverlapLearner()
    end = max(t.end for t in left + right)
    for start in np.arange(0.0, end + 2.0, 2.0):  # 2 s of every tracklet at a time
        assert learner.update([t.between(start, start + 1.999) for t in left + right]) == []
    assert learner.models() == {}
    assert learner.to_dict()["no_overlap"][0]["cameras"] == ["a", "c"]


def test_learner_fits_once_more_on_all_the_data_at_the_end(pets_gt) -> None:
    """Online, a pair is fitted again only once its evidence has grown `refit_growth`-fold (here so much
    that only the first attempt, on half a second of tracks, runs); `finish` fits it to all the data."""
    (a, _), (b, _) = _overlapping_pair(pets_gt, seed=0)
    learner = OverlapLearner(refit_growth=1e9)
    end = max(t.end for t in a + b)
    for start, stop in [(0.0, 0.5), *((s, s + 2.0) for s in np.arange(0.5, end + 2.0, 2.0))]:
        learner.update([t.between(start, stop - 1e-3) for t in a + b])
    assert learner.models() == {} and learner.to_dict()["no_overlap"][0]["cameras"] == ["a", "b"]
    assert learner.finish() == [("a", "b")]
    assert np.median(_truth_error(learner.model("a", "b"), pets_gt)) < 1.0
    assert learner.finish() == []  # nothing new since


def _two_crops(gt, seed: int, seconds: float):
    """The first `seconds` of two plain crops of the PETS view, a left of foot x = 520 and b right of
    x = 280 (the true mapping is a shift), with the gt person of each local id."""
    rng = np.random.default_rng(seed)
    foot = _foot(gt[2])
    a, person_a = _camera("a", gt, foot[:, 0] < 520, _cropped(CROP_A), rng, 100)
    b, person_b = _camera("b", gt, foot[:, 0] >= B_FROM, _cropped(np.array([B_FROM, 0.0])), rng, 700)
    a, b = [t.between(0.0, seconds) for t in a], [t.between(0.0, seconds) for t in b]
    return (a, person_a), (b, person_b)


@pytest.mark.parametrize(("seed", "seconds"), [(0, 20.0), (1, 20.0), (2, 25.0)])
def test_views_whose_people_walked_along_one_line_map_by_a_similarity(
    pets_gt, seed: int, seconds: float
) -> None:
    # In PETS09-S2L1's first 20-25 s the people in the strip two crops share walk along one line: their
    # foot points spread too little across it to determine a homography, but a similarity fits
    (a, person_a), (b, person_b) = _two_crops(pets_gt, seed, seconds)
    assert fit_overlap(a, b) is None
    model = fit_overlap(a, b, along_a_line=True)
    assert model is not None
    foot = _foot(pets_gt[2])
    both = foot[(foot[:, 0] >= B_FROM) & (foot[:, 0] < 520)]  # all the strip, not only where they walked
    error = np.linalg.norm(model.project(both - CROP_A) - (both - np.array([B_FROM, 0.0])), axis=1)
    # measured: median 0.1-0.6 px, max 0.4-1.9 px over the 1834 annotated foot points of the whole strip
    assert np.median(error) < 1.0 and error.max() < 3.0, error
    assert len(model.inlier_pairs) >= 10 and model.confidence > 0.8
    assert all(person_a[ta] == person_b[tb] for ta, tb in model.inlier_pairs)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_tud_campus_views_map_by_a_similarity_fitted_along_a_short_line(assets: Path, seed: int) -> None:
    # TUD-Campus's 71 annotated frames, cut as two crops sharing the strip 256 <= x < 384: its people walk
    # 35-40 px along one line, a fifth of their height, too little for a homography across it
    gt = np.loadtxt(assets / "data" / "TUD-Campus" / "gt" / "gt.txt", delimiter=",")
    tud = gt[:, 0].astype(int), gt[:, 1].astype(int), gt[:, 2:6]
    foot = _foot(tud[2])
    rng = np.random.default_rng(seed)
    a, person_a = _camera("a", tud, foot[:, 0] < 384, _cropped(np.zeros(2)), rng, 100)
    b, person_b = _camera("b", tud, foot[:, 0] >= 256, _cropped(np.array([256.0, 0.0])), rng, 700)
    assert fit_overlap(a, b) is None
    model = fit_overlap(a, b, along_a_line=True)
    assert model is not None
    both = foot[(foot[:, 0] >= 256) & (foot[:, 0] < 384)]
    error = np.linalg.norm(model.project(both) - (both - np.array([256.0, 0.0])), axis=1)
    # measured: median 0.5-0.7 px, max 0.8-1.0 px
    assert np.median(error) < 1.5 and error.max() < 3.0, error
    assert all(person_a[ta] == person_b[tb] for ta, tb in model.inlier_pairs)


def test_learner_maps_views_seen_along_one_line_at_the_end_only(pets_gt) -> None:
    """Live decisions never see a similarity guessed across a line. Online (only the first attempt runs,
    as in the test above), no mapping is found; at the end of the run, on the first 20 s of tracks, no
    homography fits and the similarity is what there is."""
    (a, _), (b, _) = _two_crops(pets_gt, seed=0, seconds=20.0)
    learner = OverlapLearner(refit_growth=1e9)
    for start, stop in [(0.0, 0.5), *((s, s + 2.0) for s in np.arange(0.5, 20.0, 2.0))]:
        learner.update([t.between(start, stop - 1e-3) for t in a + b])
    assert learner.models() == {}
    assert learner.finish() == [("a", "b")]
    assert learner.model("a", "b").median_error_rel < 0.05


def _stacked_views(pets_gt, image_size: tuple[int, int] | None) -> OverlapLearner:
    """A learner fed, frame by frame, two crops of the PETS view: its top (rows 0-322) and its bottom
    (rows 254-576), which share a strip of 68 rows. Boxes are cut by their crop, as a camera's frame
    cuts them, and kept where 30% of them is left; each crop has its own track ids."""
    frames, ids, boxes = pets_gt
    xyxy = np.c_[boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]
    learner = OverlapLearner()
    for frame in range(1, frames.max() + 1):
        here = frames == frame
        for camera, top, offset in (("top", 0.0, 0), ("bottom", 254.0, 1000)):
            cut = xyxy[here].copy()
            cut[:, [1, 3]] = np.clip(cut[:, [1, 3]], top, top + 322.0) - top
            kept = cut[:, 3] - cut[:, 1] >= 0.3 * boxes[here, 3]
            learner.add_boxes(camera, frame / FPS, ids[here][kept] + offset, cut[kept], image_size)
    learner.finish()
    return learner


def test_a_box_cut_by_the_bottom_of_its_view_does_not_teach_the_mapping(pets_gt) -> None:
    """In the shared strip, the top crop cuts its people's feet off. Told its frame size, the learner
    keeps those boxes out of the mapping, which lands on the true shift (0.0 px, against 9 px
    from the boxes' bottoms), and keeps them as the tracklets' bottoms."""
    strip = np.array([[x, y] for x in range(100, 700, 50) for y in (270.0, 290.0, 310.0)])
    errors = {}
    for image_size in ((768, 322), None):
        model = _stacked_views(pets_gt, image_size).model("top", "bottom")
        assert model is not None
        errors[image_size] = np.median(np.linalg.norm(model.project(strip) - (strip - [0, 254]), axis=1))
    assert errors[(768, 322)] < 0.5 < 5.0 < errors[None]

    learner = _stacked_views(pets_gt, (768, 322))
    for person in (1, 2, 3):
        feet, bottoms = learner.trajectory("top", person), learner.trajectory("top", person, bottoms=True)
        assert feet is not None and bottoms is not None
        assert set(feet.times) < set(bottoms.times) and feet.points[:, 1].max() < 320.0
        assert bottoms.points[:, 1].max() == 322.0


def test_models_round_trip_through_json(pets_gt) -> None:
    (a, _), (b, _) = _overlapping_pair(pets_gt, seed=0)
    learner = OverlapLearner()
    learner.update(a + b)
    model = learner.model("a", "b")
    assert model is not None
    data = json.loads(json.dumps(learner.to_dict()))
    restored = OverlapLearner.from_dict(data).model("a", "b")
    assert restored is not None
    assert np.allclose(restored.homography, model.homography) and restored.inlier_pairs == model.inlier_pairs
    assert np.allclose(restored.project([[250.0, 400.0]]), model.project([[250.0, 400.0]]))
    assert OverlapModel.from_dict(model.inverse().to_dict()).camera_a == "b"

    with pytest.raises(ValueError, match="version must be 1"):
        OverlapLearner.from_dict({**data, "version": 99})
    with pytest.raises(ValueError, match=r"unknown fields \['colour'\]"):
        OverlapModel.from_dict({**data["overlaps"][0], "colour": "red"})
    with pytest.raises(ValueError, match=r"homography must have shape \(3, 3\)"):
        OverlapModel.from_dict({**data["overlaps"][0], "homography": [[1, 0], [0, 1]]})


# -- MultiviewX: six calibrated synthetic views -----------------------------------------------------------


def _mvx_camera(root: Path, n: int, rng: np.random.Generator, foot: str):
    """Camera n's tracklets under scrambled ids, foot points either the data's ground point ("ground") or
    the bottom-centre of the box ("box"); the person of each scrambled id; and (frame, person) ->
    (ground point, box foot point, box height)."""
    rows = np.loadtxt(root / "matchings" / f"Camera{n}.txt")
    frames, people, points = rows[:, 0].astype(int), rows[:, 1].astype(int), rows[:, 2:].reshape(-1, 9, 2)
    boxes = np.clip(np.concatenate([points[:, :8].min(1), points[:, :8].max(1)], 1), 0, [1919, 1079] * 2)
    box_foot = np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, boxes[:, 3]], axis=1)
    heights = boxes[:, 3] - boxes[:, 1]
    chosen = points[:, 8] if foot == "ground" else box_foot
    persons = np.unique(people).tolist()
    scrambled = dict(zip(persons, rng.permutation(len(persons)).tolist()))
    trajectories = [
        Trajectory.from_arrays(
            f"C{n}", scrambled[p], frames[people == p] - 1.0, chosen[people == p], heights[people == p]
        )
        for p in persons
    ]
    person_of = {i: p for p, i in scrambled.items()}
    seen = {(f, p): (g, bf, h) for f, p, g, bf, h in zip(frames, people, points[:, 8], box_foot, heights)}
    return trajectories, person_of, seen


def _ground_homography(root: Path, n: int) -> np.ndarray:
    """Camera n's ground plane (z = 0, metres) -> image: K [r1 r2 t]."""
    fs = cv2.FileStorage(
        str(root / "calibrations" / "intrinsic" / f"intr_Camera{n}.xml"), cv2.FILE_STORAGE_READ
    )
    k = fs.getNode("camera_matrix").mat()
    fs = cv2.FileStorage(
        str(root / "calibrations" / "extrinsic" / f"extr_Camera{n}.xml"), cv2.FILE_STORAGE_READ
    )
    rotation, _ = cv2.Rodrigues(fs.getNode("rvec").mat())
    return k @ np.column_stack([rotation[:, 0], rotation[:, 1], fs.getNode("tvec").mat().ravel()])


@pytest.mark.parametrize("cameras", [(1, 4), (2, 4), (3, 5)])
def test_multiviewx_learned_mapping_matches_the_calibration(assets: Path, cameras: tuple[int, int]) -> None:
    """From ground foot points the mapping is the calibration's ground-plane homography; from box
    bottom-centres (what a detector gives) it maps the boxes, which sit off the ground plane."""
    root = assets / "data" / "MultiviewX"
    a, b = cameras
    truth = _ground_homography(root, b) @ np.linalg.inv(_ground_homography(root, a))
    rng = np.random.default_rng(a * 10 + b)
    for foot in ("ground", "box"):
        ta, person_a, seen_a = _mvx_camera(root, a, rng, foot)
        tb, person_b, seen_b = _mvx_camera(root, b, rng, foot)
        model = fit_overlap(ta, tb)
        assert model is not None, foot
        both = sorted(set(seen_a) & set(seen_b))  # (frame, person) seen by both cameras
        frames_together = np.bincount([p - min(p for _, p in both) for _, p in both])
        assert all(person_a[i] == person_b[j] for i, j in model.inlier_pairs)
        assert len(model.inlier_pairs) == np.count_nonzero(frames_together >= 5)  # everyone seen together
        ground_a = np.array([seen_a[k][0] for k in both])
        calibration_error = np.linalg.norm(model.project(ground_a) - _apply(truth, ground_a), axis=1)
        if foot == "ground":
            # measured: under 0.01 px on every pair (the data are exact projections)
            assert np.max(calibration_error) < 0.5, calibration_error
        else:
            box_a = np.array([seen_a[k][1] for k in both])
            box_b = np.array([seen_b[k][1] for k in both])
            height_b = np.array([seen_b[k][2] for k in both])
            box_error = np.linalg.norm(model.project(box_a) - box_b, axis=1)
            # measured: boxes mapped onto boxes with a median 0.4-0.5 px; 4.6-16 px median (0.05-0.10 box
            # heights) from the ground homography, because a box's bottom-centre is off the ground by a
            # view-dependent amount (the box of a person is wider than the person's feet)
            assert np.median(box_error) < 2.0, box_error
            assert np.median(calibration_error / height_b) < 0.2, calibration_error


def test_multiviewx_shifted_clock_and_appearance_prior(assets: Path) -> None:
    root = assets / "data" / "MultiviewX"
    rng = np.random.default_rng(0)
    ta, _, _ = _mvx_camera(root, 2, rng, "ground")
    tb, _, _ = _mvx_camera(root, 4, rng, "ground")
    shifted = [Trajectory(t.camera, t.track_id, t.times + 3, t.points, t.heights) for t in tb]
    assert fit_overlap(ta, shifted) is None  # seen 3 frames apart: the same ground, but nobody matches

    # appearance steers the sampling, on any scale, and a misleading one does not break the fit
    plain = fit_overlap(ta, tb)
    noise = {(x.key, y.key): float(rng.random()) for x in ta for y in tb}
    for similarity in (noise, lambda x, y: 0.8):
        model = fit_overlap(ta, tb, similarity=similarity)
        assert model is not None and set(model.inlier_pairs) == set(plain.inlier_pairs)
