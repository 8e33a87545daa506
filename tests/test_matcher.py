"""Matcher on hand-built embeddings: joint linking, constraints, revision, persistence and resume."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import pytest

from pipeline.calibration import ScoreCalibration
from pipeline.matcher import APPEARANCE_MAX_LLR, Matcher
from pipeline.messages import Assignment, CameraFinished, Crop, Embedding, IdentityEvent, TrackEnded, Tracks
from pipeline.runtime.matching import MessageOrder
from pipeline.sinks.box_log import BoxLog
from pipeline.sinks.exports import write_exports
from pipeline.store import EmbeddingStore
from pipeline.thumbnails import ThumbnailKeeper
from pipeline.tracklet_spans import PART_STRIDE

DIM = 64
FPS = 10.0


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def people(n: int, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, DIM)))


@dataclass
class Track:
    """A scripted local track: frames [first, last] and the appearance vectors of its embeddings."""

    camera: str
    track_id: int
    first: int
    last: int
    vectors: list[np.ndarray] = field(default_factory=list)
    noise: float = 0.05
    x0: float | None = None  # left edge of its 8x20 box at `first` (default: 10 * track_id)
    vx: float = 0.0  # pixels per frame
    y0: float = 0.0
    vy: float = 0.0
    height: float = 20.0

    def box(self, frame: int) -> np.ndarray:
        x = (10.0 * self.track_id if self.x0 is None else self.x0) + self.vx * (frame - self.first)
        y = self.y0 + self.vy * (frame - self.first)
        return np.array([[x, y, x + 8, y + self.height]], np.float32)


def script(tracks: list[Track], seed: int = 1, image_size: tuple[int, int] | None = None) -> list:
    """The messages a pipeline would send for `tracks`, in time order: one Tracks per camera and frame
    (of `image_size`, if given), embeddings spread over each track."""
    rng = np.random.default_rng(seed)
    timed = []
    for camera in sorted({t.camera for t in tracks}):
        for f in sorted({f for t in tracks if t.camera == camera for f in range(t.first, t.last + 1)}):
            seen = [t for t in tracks if t.camera == camera and t.first <= f <= t.last]
            boxes = np.concatenate([t.box(f) for t in seen])
            ids = np.array([t.track_id for t in seen], np.int64)
            timed.append(
                (
                    f,
                    0,
                    camera,
                    Tracks(camera, f, f / FPS, boxes, np.ones(len(seen), np.float32), ids, image_size),
                )
            )
    for t in tracks:
        emb_frames = np.linspace(t.first, t.last, len(t.vectors) + 2).astype(int)[1:-1] if t.vectors else []
        for f, vector in zip(emb_frames, t.vectors, strict=True):
            noisy = unit(vector + t.noise * rng.standard_normal(DIM) / np.sqrt(DIM))
            timed.append((int(f), 1, t.camera, Embedding(t.camera, t.track_id, int(f), f / FPS, noisy, 1.0)))
        timed.append((t.last + 1, 2, t.camera, TrackEnded(t.camera, t.track_id, t.last, t.last / FPS)))
    return [m for *_, m in sorted(timed, key=lambda x: x[:3])]


def run(matcher: Matcher, messages: list) -> tuple[dict[tuple[str, int], int], list]:
    """Feed everything, finish, return the final global id of each track and all outputs."""
    outputs = []
    for message in messages:
        outputs.extend(matcher.update(message))
    outputs.extend(matcher.finish())
    final = {(o.camera_id, o.track_id): o.global_id for o in outputs if isinstance(o, Assignment)}
    return final, outputs


def test_people_seen_in_one_camera_then_another_keep_their_identity() -> None:
    p = people(3)
    tracks = [Track("a", i + 1, 1, 30, [p[i]] * 4) for i in range(3)]
    tracks += [Track("b", i + 1, 50, 80, [p[i]] * 4) for i in (2, 0, 1)]
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session())
    final, outputs = run(matcher, script(tracks))
    assert all(final[("b", i + 1)] == final[("a", i + 1)] for i in range(3))
    assert len(set(final.values())) == 3 == store.identity_count()
    kinds = [o.kind for o in outputs if isinstance(o, IdentityEvent)]
    assert (kinds.count("appeared"), kinds.count("matched"), kinds.count("left")) == (3, 3, 6)
    assert matcher.open_tracklets == 0


def test_hand_overs_still_link_after_an_hour_of_people_passing_through() -> None:
    # Two people at a time walk through camera a, then camera b; a new pair every 20 s, for 80 minutes.
    # The prior odds against each identity count the people about, not everyone the run has seen: with
    # 480 identities behind it, the last hand-overs link as the first ones did.
    pairs, period = 240, 200  # frames
    p = people(2 * pairs, seed=3)
    tracks = []
    for k in range(pairs):
        start = 1 + k * period
        for j in (0, 1):
            person = p[2 * k + j]
            tracks.append(Track("a", 2 * k + j + 1, start, start + 60, [person] * 6, x0=20.0 * j))
            tracks.append(Track("b", 2 * k + j + 1, start + 80, start + 140, [person] * 6, x0=20.0 * j))
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session()), script(tracks))
    linked = [final[("a", t)] == final[("b", t)] for t in range(1, 2 * pairs + 1)]
    assert all(linked[:20]) and all(linked[-20:])
    assert len(set(final.values())) == 2 * pairs


def test_joint_assignment_links_correctly_where_greedy_would_not() -> None:
    # X and Y look alike; in camera b, t1 (really Y) resembles X more than Y, t2 (really X) only X.
    e = np.eye(DIM, dtype=np.float32)
    x, y = e[0], 0.6 * e[0] + 0.8 * e[1]
    t1 = unit(0.9 * e[0] + 0.3875 * e[1] + 0.2 * e[2])  # cos X 0.90, cos Y 0.85
    t2 = unit(0.75 * e[0] - 0.2 * e[1] + 0.63 * e[3])  # cos X 0.75, cos Y 0.29
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session(), threshold=0.5)
    tracks = [Track("a", 1, 1, 30, [x] * 3, noise=0.0), Track("a", 2, 1, 30, [y] * 3, noise=0.0)]
    tracks += [Track("b", 1, 50, 80, [t1] * 3, noise=0.0), Track("b", 2, 50, 80, [t2] * 3, noise=0.0)]
    final, _ = run(matcher, script(tracks))
    gx, gy = final[("a", 1)], final[("a", 2)]
    # greedy takes X for t1 (its best match), then t2 (same camera, same time) cannot have X
    greedy_first = store.search(t1[None], k=2, exclude=[(matcher.session, "b", 1)])[0]
    assert next(iter(greedy_first)) == gx
    assert (final[("b", 1)], final[("b", 2)]) == (gy, gx)
    assert store.identity_count() == 2


def test_one_identity_holds_one_live_track_per_camera_but_heals_a_broken_track() -> None:
    p = people(2)
    twins = [Track("a", 1, 1, 30, [p[0]] * 4), Track("a", 2, 1, 30, [p[0]] * 4)]  # same look, same time
    broken = [Track("a", 3, 40, 60, [p[1]] * 4), Track("a", 4, 65, 90, [p[1]] * 4)]  # one person, a gap
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session()), script(twins + broken))
    assert final[("a", 1)] != final[("a", 2)]
    assert final[("a", 3)] == final[("a", 4)]


@pytest.mark.parametrize(("x0", "linked"), [(70.0, True), (200.0, False)])
def test_a_broken_track_is_healed_only_where_its_motion_leads(x0: float, linked: bool) -> None:
    # One look, moving right 2 px a frame: frame 30 ends at x=58, and 6 frames later it would be at 70.
    p = people(1)
    tracks = [
        Track("a", 1, 1, 30, [p[0]] * 4, x0=0.0, vx=2.0),
        Track("a", 2, 36, 60, [p[0]] * 4, x0=x0, vx=2.0),
    ]
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session()), script(tracks))
    assert (final[("a", 1)] == final[("a", 2)]) == linked


def learned_calibration(same: tuple[float, float], different: tuple[float, float]) -> dict:
    """What a topology.json holds of a score calibration learned before, for `Matcher(learned=...)`: 3000
    cosines of each class, normal with the (mean, sd) of `same` and `different` people."""
    calibration = ScoreCalibration(max_llr=APPEARANCE_MAX_LLR)
    rng = np.random.default_rng(0)
    calibration.add_positive(np.clip(rng.normal(*same, 3000), -1, 0.999))
    calibration.add_negative(np.clip(rng.normal(*different, 3000), -1, 0.999))
    return {"score_calibration": calibration.to_dict()}


def walk_out_and_in(x0: float, cosine: float) -> list[Track]:
    """Track 1 walks right, 0.5 px a frame, and leaves the 100 px wide frame at frame 30 (its box reaches
    x=100). 1.5 s later, track 2 begins at `x0`, where that motion leads, its looks at `cosine` to track
    1's."""
    e = np.eye(DIM, dtype=np.float32)
    look = unit(cosine * e[0] + np.sqrt(1 - cosine**2) * e[1])
    return [
        Track("a", 1, 1, 30, [e[0]] * 4, x0=77.5, vx=0.5, y0=40.0),
        Track("a", 2, 46, 70, [look] * 4, x0=x0, vx=0.5, y0=40.0),
    ]


@pytest.mark.parametrize(
    ("x0", "cosine", "linked"), [(92.0, 0.95, True), (92.0, 0.8, False), (84.0, 0.8, False)]
)
def test_a_track_that_walked_out_of_the_frame_is_continued_only_at_its_border_and_only_by_looks(
    x0: float, cosine: float, linked: bool
) -> None:
    # Crossing the border back in (x0=92), track 2 may be the one who left or someone else walking in:
    # motion vouches for neither, and the looks decide (cosine 0.95 links, 0.8 does not). 8 px inside,
    # clear of the border (x0=84), it is someone who was in the view already.
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(
        Matcher(store, store.begin_session()), script(walk_out_and_in(x0, cosine), image_size=(100, 100))
    )
    assert (final[("a", 1)] == final[("a", 2)]) == linked


@pytest.mark.parametrize("learned", [False, True])
def test_the_odds_against_a_return_apply_once_the_calibration_has_learned_them(learned: bool) -> None:
    # Track 2 crosses the border back in where track 1 walked out, looking like it by a log-likelihood
    # ratio of +1 either way. The fixed threshold that scores looks before anything is learned already
    # holds the odds against a return, as it holds those against any one identity: the pair links. A
    # calibration learned before (a topology.json) says only how alike one person looks, so the odds
    # against a return count on top: the pair does not link.
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(
        store,
        store.begin_session(),
        learned=learned_calibration((0.93, 0.03), (0.83, 0.05)) if learned else None,
    )
    assert matcher.calibration.llr(0.9) == pytest.approx(1.0, abs=0.1)
    final, _ = run(matcher, script(walk_out_and_in(92.0, 0.9), image_size=(100, 100)))
    assert (final[("a", 1)] == final[("a", 2)]) != learned


@pytest.mark.parametrize(("y_b", "swapped_linked"), [(0.0, True), (200.0, False)])
def test_after_two_tracks_meet_appearance_decides_who_continues_whom(
    y_b: float, swapped_linked: bool
) -> None:
    # A walks right, B walks left; where they meet (y_b = 0) the tracker may swap them, so the later
    # tracks are linked by their looks even though each starts where the other's motion leads.
    a, b = people(2)
    tracks = [
        Track("a", 1, 1, 30, [a] * 4, x0=0.0, vx=2.0),  # ends at x=58, heading right
        Track("a", 2, 1, 30, [b] * 4, x0=120.0, vx=-2.0, y0=y_b),  # ends at x=62, heading left
        Track("a", 3, 45, 60, [b] * 4, x0=88.0, vx=2.0),  # 1.5 s later, where track 1 was heading
        Track("a", 4, 45, 60, [a] * 4, x0=32.0, vx=-2.0, y0=y_b),  # where track 2 was heading
    ]
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session()), script(tracks))
    assert (final[("a", 1)] == final[("a", 4)]) == swapped_linked
    assert (final[("a", 2)] == final[("a", 3)]) == swapped_linked
    assert final[("a", 1)] != final[("a", 3)]


@pytest.mark.parametrize(
    ("last", "height", "linked"), [(30, 20.0, True), (30, 32.0, True), (50, 20.0, False)]
)
def test_a_track_born_on_another_that_ends_soon_after_takes_it_over(
    last: int, height: float, linked: bool
) -> None:
    # track 2's first box is track 1's (a second box on one person; taller where track 1's box was cut
    # short, as by an occluder, so that it is no continuation of its size); track 1 ends 2 frames later,
    # or runs on beside it for 2 s, when the two are two people
    p = people(1)
    tracks = [
        Track("a", 1, 1, last, [p[0]] * 4, x0=0.0, vx=1.0),
        Track("a", 2, 28, 80, [p[0]] * 4, x0=27.0, vx=1.0 if linked else 0.0, height=height),
    ]
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session()), script(tracks))
    assert (final[("a", 1)] == final[("a", 2)]) == linked


def test_a_track_broken_twice_is_one_person_however_long_it_lasts() -> None:
    # three pieces of one walk, each break short; the first and last are 5 s apart with no other camera
    p = people(1)
    tracks = [
        Track("a", 1, 1, 30, [p[0]] * 4, x0=0.0, vx=1.0),
        Track("a", 2, 33, 60, [p[0]] * 4, x0=32.0, vx=1.0),
        Track("a", 3, 63, 90, [p[0]] * 4, x0=62.0, vx=1.0),
    ]
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session(), rejoin_max_gap_s=3.0), script(tracks))
    assert final[("a", 1)] == final[("a", 2)] == final[("a", 3)]


@pytest.mark.parametrize(("elsewhere", "linked"), [(False, False), (True, True)])
def test_after_a_long_break_in_one_camera_the_person_must_have_been_seen_elsewhere(elsewhere, linked) -> None:
    p = people(1)
    tracks = [Track("a", 1, 1, 30, [p[0]] * 4), Track("a", 2, 130, 160, [p[0]] * 4)]  # 10 s apart
    if elsewhere:
        tracks.append(Track("b", 1, 50, 100, [p[0]] * 4))
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session(), rejoin_max_gap_s=3.0), script(tracks))
    assert (final[("a", 1)] == final[("a", 2)]) == linked


def box_in_b(x: float, y: float, h: float) -> tuple[float, float]:
    """Where camera b (a's floor scaled by 0.8 and shifted) puts the top left of the 8-wide box that camera
    a has at (x, y) with height h: the same foot point."""
    return 0.8 * (x + 4) + 50 - 4, 0.8 * (y + h) + 30 - 0.8 * h


def walks_in_two_views(starts: list[tuple], looks: list[np.ndarray], last: int = 100) -> list[Track]:
    """People walking about camera a's floor from frame 1 to `last`, each from (x, y) at (vx, vy) pixels
    per frame with a box of height h (`starts`: (x, y, vx, vy, h) each), and seen by camera b, which sees
    a's floor scaled by 0.8 and shifted (`box_in_b`): person i (from 1) is track i in a and track 10 + i
    in b."""
    tracks = []
    for i, ((x, y, vx, vy, h), look) in enumerate(zip(starts, looks, strict=True), start=1):
        tracks.append(Track("a", i, 1, last, [look] * 12, x0=x, y0=y, vx=vx, vy=vy, height=h))
        bx, by = box_in_b(x, y, h)
        b = Track("b", 10 + i, 1, last, [look] * 12, x0=bx, y0=by, vx=0.8 * vx, vy=0.8 * vy, height=0.8 * h)
        tracks.append(b)
    return tracks


WALKS = [  # (x, y, vx, vy, h) of four people in camera a
    (0.0, 0.0, 3.0, 2.0, 20.0),
    (300.0, 0.0, -2.5, 2.5, 20.0),
    (0.0, 200.0, 2.0, -1.5, 20.0),
    (300.0, 260.0, -3.0, -1.5, 20.0),
]


@pytest.mark.parametrize("walks_out_of_a", [False, True])
def test_overlapping_views_are_learned_and_link_look_alikes_by_where_they_walk(walks_out_of_a: bool) -> None:
    """Camera b sees camera a's floor scaled by 0.8 and shifted; no overlap is declared, everyone looks
    alike. `walks_out_of_a`: a fifth, taller person walks slowly down out of a's 300-row frame, which
    cuts their box at its bottom for all but the first frames, while b sees them whole; where a saw
    their feet says where they walked, not where a's frame cut them."""
    starts = [*WALKS, (150.0, 255.0, 1.0, 0.4, 40.0)] if walks_out_of_a else WALKS
    tracks = walks_in_two_views(starts, [people(1)[0]] * len(starts))

    def framed(m: Tracks) -> Tracks:  # boxes cut by the bottom of their camera's frame
        size = (400, 300) if m.camera_id == "a" else (400, 400)
        xyxy = m.xyxy.copy()
        xyxy[:, 3] = np.minimum(xyxy[:, 3], size[1])
        return Tracks(m.camera_id, m.frame_index, m.timestamp, xyxy, m.confidence, m.track_id, size)

    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session())
    final, _ = run(matcher, [framed(m) if isinstance(m, Tracks) else m for m in script(tracks)])
    assert matcher.geometry.model("a", "b") is not None
    n = len(starts)
    assert [final[("a", i)] == final[("b", 10 + i)] for i in range(1, n + 1)] == [True] * n
    assert len({final[("a", i)] for i in range(1, n + 1)}) == n


@pytest.mark.parametrize(("elsewhere", "linked"), [(False, False), (True, True)])
def test_someone_gone_from_two_overlapping_views_for_long_comes_back_only_if_seen_elsewhere(
    elsewhere: bool, linked: bool
) -> None:
    """Four people walk about two overlapping views; the first is seen by b one second longer than by a.
    Seven seconds after b lost them, someone who looks like them enters a. Gone from both views for that
    long, the first person left the ground they cover: the newcomer is them only where a camera
    elsewhere saw them in between."""
    p = people(len(WALKS))
    tracks = walks_in_two_views(WALKS, list(p))
    tracks[1].last = 110  # b's track of the first person (tracks[0] is a's)
    tracks.append(Track("a", 30, 180, 210, [p[0]] * 4, x0=300.0, y0=200.0))
    if elsewhere:
        tracks.append(Track("c", 1, 120, 160, [p[0]] * 4))
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session())
    final, _ = run(matcher, script(tracks))
    assert matcher.geometry.model("a", "b") is not None
    assert final[("a", 1)] == final[("b", 11)]
    assert (final[("a", 30)] == final[("a", 1)]) == linked


@pytest.mark.parametrize(
    ("overlaps", "last", "crops", "linked"),
    [((), 400, 4, False), ((("a", "b"),), 400, 4, True), ((), 60, 4, True), ((), 60, 2, False)],
)
def test_an_identity_is_in_two_cameras_at_once_only_where_they_may_overlap(
    overlaps, last, crops, linked
) -> None:
    # Views not declared to overlap that ran together for 40 s with no overlap learned are disjoint; in a
    # clip too short (6 s) to learn whether they overlap, looks decide when the run is re-solved, where
    # they are measured on enough crops.
    p = people(1)
    tracks = [Track("a", 1, 1, last - 10, [p[0]] * crops), Track("b", 1, 10, last, [p[0]] * crops)]
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session(), overlaps=overlaps), script(tracks))
    assert (final[("a", 1)] == final[("b", 1)]) == linked


@pytest.mark.parametrize(("gap_s", "linked"), [(5.0, False), (15.0, True), (40.0, False)])
def test_transit_window_bounds_the_gap_between_cameras(gap_s: float, linked: bool) -> None:
    p = people(1)
    start = 30 + int(gap_s * FPS)
    tracks = [Track("a", 1, 1, 30, [p[0]] * 4), Track("b", 1, start, start + 30, [p[0]] * 4)]
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session(), transitions={("a", "b"): (10.0, 20.0)})
    final, _ = run(matcher, script(tracks))
    assert (final[("a", 1)] == final[("b", 1)]) == linked


@pytest.mark.parametrize(
    ("gap_s", "cosine", "transitions", "linked"),
    [
        (5.0, 0.9, None, True),
        (40.0, 0.9, None, False),
        (40.0, 0.9, {("a", "b"): (30.0, 60.0)}, True),
        (1800.0, 0.98, None, True),
    ],
)
def test_the_longer_someone_goes_unseen_the_more_their_looks_must_say(
    gap_s: float, cosine: float, transitions: dict | None, linked: bool
) -> None:
    # Looks at cosine 0.9 link a hand-over 5 s later; 40 s later the person may be anyone who came
    # along, unless the site declared that people take that long between the two cameras. How long
    # someone was away stops counting after a minute or so: looks that leave little doubt still link a
    # person back after half an hour.
    e = np.eye(DIM, dtype=np.float32)
    start = 30 + int(gap_s * FPS)
    tracks = [
        Track("a", 1, 1, 30, [e[0]] * 4),
        Track("b", 1, start, start + 30, [unit(cosine * e[0] + np.sqrt(1 - cosine**2) * e[1])] * 4),
    ]
    store = EmbeddingStore(None, dim=DIM)
    final, _ = run(Matcher(store, store.begin_session(), transitions=transitions), script(tracks))
    assert (final[("a", 1)] == final[("b", 1)]) == linked


@pytest.mark.parametrize("style_overlap", [1.0, 0.5])
def test_hand_overs_link_between_views_where_everyone_looks_less_alike(style_overlap: float) -> None:
    # Each camera adds its own look to everyone (light, angle, colour): within a view two people score
    # 0.5 and one person 1.0, across views 0.25 and 0.75 with half of the look shared (0.5 and 1.0 with
    # all of it). The calibration, learned within the views, reads 0.75 as two people; the people seen
    # at once in both views show how much less alike everyone is across them, and the hand-overs link.
    style = unit(np.random.default_rng(7).standard_normal((2, DIM)))
    looks = {"a": style[0], "b": unit(style_overlap * style[0] + np.sqrt(1 - style_overlap**2) * style[1])}
    p = people(42, seed=5)

    def seen(camera: str, person: np.ndarray) -> list[np.ndarray]:
        return [unit(looks[camera] + person)] * 6

    tracks = []
    for r in range(5):  # crowds in both views at once, different people in each
        for j in range(4):
            for k, camera in enumerate("ab"):
                person = p[8 * r + 4 * k + j]
                tracks.append(
                    Track(camera, 4 * r + j + 1, 1 + 100 * r, 61 + 100 * r, seen(camera, person), x0=30.0 * j)
                )
    for j in (0, 1):  # then two people walk from a to b
        tracks.append(Track("a", 21 + j, 501, 560, seen("a", p[40 + j]), x0=30.0 * j))
        tracks.append(Track("b", 21 + j, 581, 640, seen("b", p[40 + j]), x0=30.0 * j))
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session())
    final, _ = run(matcher, script(tracks))
    assert [final[("a", 21 + j)] == final[("b", 21 + j)] for j in (0, 1)] == [True, True]
    assert final[("a", 21)] != final[("a", 22)]
    assert len(set(final.values())) == 42
    (measured,) = matcher.topology()["view_offsets"]
    assert measured["cameras"] == ["a", "b"] and measured["pairs"] >= 20
    assert measured["offset"] == pytest.approx((1 - style_overlap) / 2, abs=0.05)


def test_open_tracklet_is_revised_and_its_empty_identity_retired() -> None:
    p = people(2)
    # b1 starts on a misleading look (p1, nobody known), then shows p0 for long enough to move over
    tracks = [Track("a", 1, 1, 30, [p[0]] * 4), Track("b", 1, 40, 120, [p[1]] * 3 + [p[0]] * 12)]
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session(), threshold=0.5, min_embeddings=3, revise_every=4)
    final, outputs = run(matcher, script(tracks))
    first = next(o for o in outputs if isinstance(o, Assignment) and o.camera_id == "b")
    revision = next(o for o in outputs if isinstance(o, Assignment) and o.revised)
    assert first.global_id != final[("a", 1)] and not first.revised
    assert (revision.camera_id, revision.global_id) == ("b", final[("a", 1)])
    assert final[("b", 1)] == final[("a", 1)]
    assert any(isinstance(o, IdentityEvent) and o.kind == "revised" for o in outputs)
    assert store.identity_count() == 1  # the identity b1 was born with is retired


def test_tracks_without_embeddings_still_get_an_identity() -> None:
    store = EmbeddingStore(None, dim=DIM)
    final, outputs = run(Matcher(store, store.begin_session()), script([Track("a", 5, 1, 10)]))
    assert final == {("a", 5): 1}
    assert [o.kind for o in outputs if isinstance(o, IdentityEvent)] == ["appeared", "left"]


def test_camera_finished_closes_only_that_cameras_tracklets() -> None:
    p = people(2)
    messages = script([Track("a", 1, 1, 20, [p[0]] * 3), Track("b", 1, 1, 20, [p[1]] * 3)])
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session())
    for message in messages:
        if not isinstance(message, TrackEnded):
            matcher.update(message)
    outputs = matcher.update(CameraFinished("a", frames=20))
    assert [(o.kind, o.camera_id) for o in outputs if isinstance(o, IdentityEvent)] == [("left", "a")]
    assert matcher.open_tracklets == 1
    assert [t.camera for t in store.tracklets(session=matcher.session) if t.closed] == ["a"]


def test_resumed_run_links_to_the_stored_gallery_and_keeps_counting(tmp_path) -> None:
    p = people(4)
    path = tmp_path / "gallery.sqlite"
    with EmbeddingStore(path, dim=DIM) as store:
        first, _ = run(
            Matcher(store, store.begin_session()),
            script([Track("a", i, 1, 30, [p[i]] * 4) for i in range(3)]),
        )
    with EmbeddingStore(path, dim=DIM) as store:
        session = store.begin_session()
        tracks = [Track("a", i, 1, 30, [p[i]] * 4) for i in (2, 1, 3)]  # local ids restart; same clock
        second, _ = run(Matcher(store, session), script(tracks))
        assert second[("a", 2)] == first[("a", 2)] and second[("a", 1)] == first[("a", 1)]
        assert second[("a", 3)] == max(first.values()) + 1
        assert session == 2 and store.identity_count() == 4


# -- real data: PETS09-S2L1 split into two overlapping cameras, ground-truth tracks as tracklets --------


def pets_two_cameras(assets, split: str = "overlap", every: int = 15, max_gap: int = 5) -> tuple:
    """Per-frame messages for a two-camera split of PETS09-S2L1, embedded with OSNet x0.25.

    Ground-truth tracks, cut where a person leaves a view for more than `max_gap` frames, are the
    tracklets; every `every`-th box of a tracklet that is mostly in view is embedded. Frames keep the
    source's numbering so both cameras share one clock. Returns (messages per frame, true person of
    each (camera, local track), boxes per local track).
    """
    import cv2

    from pipeline.embedders.onnx import OnnxEmbedder
    from pipeline.motchallenge import read_mot_txt
    from pipeline.tools.virtual_cameras import crop_ground_truth, preset_cameras, resolve_camera

    root = assets / "data" / "PETS09-S2L1"
    capture = cv2.VideoCapture(str(root / "vtest.avi"))
    width, height = int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))
    gt = read_mot_txt(root / "gt" / "gt.txt")
    num_frames = int(gt[:, 0].max())
    cameras = [resolve_camera(s, width, height, num_frames) for s in preset_cameras(split, num_frames)]
    frames: list[list] = [[] for _ in range(num_frames + 2)]
    truth: dict[tuple[str, int], int] = {}
    sizes: dict[tuple[str, int], int] = {}
    wanted: dict[int, list] = {}  # source frame -> crops to cut: (camera, track, x0, y0, x1, y1, quality)
    for camera in cameras:
        rows = crop_ground_truth(gt, camera)
        rows[:, 0] += camera.frame_offset
        boxes_by_frame: dict[int, list] = {}
        for person in np.unique(rows[:, 1]).astype(int):
            mine = rows[rows[:, 1] == person]
            for run_rows in np.split(mine, np.flatnonzero(np.diff(mine[:, 0]) > max_gap) + 1):
                track_id = len(truth) + 1
                truth[(camera.id, track_id)], sizes[(camera.id, track_id)] = person, len(run_rows)
                for n, (f, _, x, y, w, h, *_rest, visible) in enumerate(run_rows):
                    boxes_by_frame.setdefault(int(f), []).append((x, y, x + w, y + h, track_id))
                    if n % every == 0 and visible > 0.6 and h >= 32:
                        x0, y0 = int(x) + camera.x0, int(y) + camera.y0
                        crop = (camera.id, track_id, x0, y0, x0 + int(w), y0 + int(h), float(visible))
                        wanted.setdefault(int(f), []).append(crop)
                last = int(run_rows[-1, 0])
                frames[last + 1].append(TrackEnded(camera.id, track_id, last, last / FPS))
        for f, boxes in boxes_by_frame.items():
            array = np.array(boxes, np.float32)
            ids = array[:, 4].astype(np.int64)
            frames[f].append(
                Tracks(camera.id, f, f / FPS, array[:, :4], np.ones(len(array), np.float32), ids)
            )
    crops, meta = [], []
    for f in range(1, num_frames + 1):
        ok, image = capture.read()
        assert ok, f"vtest.avi ended at frame {f}"
        for camera_id, track_id, x0, y0, x1, y1, quality in wanted.get(f, []):
            crops.append(image[y0:y1, x0:x1].copy())
            meta.append((f, camera_id, track_id, quality))
    vectors = OnnxEmbedder(assets / "models" / "osnet_x0_25_msmt17.onnx").embed(crops)
    for (f, camera_id, track_id, quality), vector in zip(meta, vectors, strict=True):
        frames[f].append(Embedding(camera_id, track_id, f, f / FPS, vector, quality))
    order = {TrackEnded: 0, Tracks: 1, Embedding: 2}
    return [sorted(msgs, key=lambda m: order[type(m)]) for msgs in frames], truth, sizes


def linking_scores(final: dict, truth: dict, sizes: dict) -> dict[str, float]:
    """Cross-camera tracklet-pair precision/recall and box-weighted purity of the predicted identities."""
    keys = sorted(truth)
    same_pred = same_true = both = 0
    for i, a in enumerate(keys):
        for b in keys[i + 1 :]:
            if a[0] == b[0]:
                continue
            predicted, actual = final[a] == final[b], truth[a] == truth[b]
            same_pred, same_true, both = (
                same_pred + predicted,
                same_true + actual,
                both + (predicted and actual),
            )
    majority: dict[int, dict[int, int]] = {}
    for key in keys:
        votes = majority.setdefault(final[key], {})
        votes[truth[key]] = votes.get(truth[key], 0) + sizes[key]
    purity = sum(max(v.values()) for v in majority.values()) / sum(sizes.values())
    return {
        "pair_precision": both / max(same_pred, 1),
        "pair_recall": both / max(same_true, 1),
        "purity": purity,
        "identities": len(majority),
    }


def run_pets(frames: list[list], threshold: float | None = None, overlaps=(("left", "right"),)) -> dict:
    """The final global id of each tracklet; `threshold=None` uses the matcher's default."""
    store = EmbeddingStore(None, dim=512)
    options = {} if threshold is None else {"threshold": threshold}
    matcher = Matcher(store, store.begin_session(), overlaps=overlaps, **options)
    outputs = [o for msgs in frames for m in msgs for o in matcher.update(m)] + matcher.finish()
    return {(o.camera_id, o.track_id): o.global_id for o in outputs if isinstance(o, Assignment)}


@pytest.fixture(scope="module")
def pets(assets):
    return pets_two_cameras(assets)


def test_pets_overlapping_cameras_are_linked_better_than_by_chance(pets) -> None:
    frames, truth, sizes = pets
    scores = linking_scores(run_pets(frames), truth, sizes)
    keys = sorted(truth)
    cross = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1 :] if a[0] != b[0]]
    base_rate = sum(truth[a] == truth[b] for a, b in cross) / len(cross)  # precision of linking all
    assert scores["pair_precision"] > 5 * base_rate
    assert scores["pair_recall"] > 0.5
    assert scores["purity"] > 0.65


def test_identities_are_re_solved_every_refine_interval_of_video(monkeypatch) -> None:
    p = people(2)
    tracks = [Track("a", 1, 1, 120, [p[0]] * 6), Track("b", 1, 1, 120, [p[1]] * 6)]  # 12 s at 10 fps
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session(), refine_interval_s=5.0, refine_at_end=False)
    moments = []
    monkeypatch.setattr(
        matcher, "refine", lambda: moments.append(max(t for _, t in matcher._camera_times.values())) or []
    )
    run(matcher, script(tracks))
    assert moments == pytest.approx([5.1, 10.1])  # every 5 s of data time from the first frame (0.1 s)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_embeddings_out_of_order_give_the_same_identities(seed: int) -> None:
    """Several re-ID workers, or any unordered channel: an embedding may arrive before its track's boxes
    or after its track ended. The identities come out the same."""
    p = people(3)
    tracks = [Track("a", i + 1, 1 + 5 * i, 40 + 5 * i, [p[i]] * 4) for i in range(3)]
    tracks += [Track("b", i + 1, 60 + 5 * i, 100 + 5 * i, [p[(i + 2) % 3]] * 4) for i in range(3)]
    ordered = script(tracks)
    rng = np.random.default_rng(seed)
    shuffled = [m for m in ordered if not isinstance(m, Embedding)]
    for m in (m for m in ordered if isinstance(m, Embedding)):  # each lands anywhere in its camera's stream
        shuffled.insert(int(rng.integers(0, len(shuffled) + 1)), m)

    def partition(messages: list) -> set[frozenset]:
        store = EmbeddingStore(None, dim=DIM)
        final, _ = run(Matcher(store, store.begin_session()), messages)
        groups: dict[int, set] = {}
        for key, gid in final.items():
            groups.setdefault(gid, set()).add(key)
        return {frozenset(g) for g in groups.values()}

    expected = {frozenset({("a", (i + 2) % 3 + 1), ("b", i + 1)}) for i in range(3)}
    assert partition(ordered) == expected
    assert partition(shuffled) == expected


def test_embeddings_after_their_track_ended_still_reach_the_gallery() -> None:
    p = people(1)
    messages = script([Track("a", 1, 1, 20, [p[0]] * 3)])
    late = [m for m in messages if isinstance(m, Embedding)]
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session())
    for message in [m for m in messages if not isinstance(m, Embedding)] + late:
        matcher.update(message)
    matcher.finish()
    assert store.prototype_count() == 1
    assert next(iter(store.search(p[0][None], k=1)[0].values())) > 0.99


def arrival(messages: list, rng: np.random.Generator) -> list:
    """`messages` as a run may deliver them: each camera's own in order, the cameras interleaved at random,
    each embedding late by a random number of messages."""
    own = {c: [m for m in messages if m.camera_id == c and not isinstance(m, Embedding)] for c in "ab"}
    out: list = []
    while any(own.values()):
        camera = rng.choice([c for c in own if own[c]])
        out.append(own[camera].pop(0))
    for m in (m for m in messages if isinstance(m, Embedding)):
        after = next(i for i, o in enumerate(out) if isinstance(o, Tracks) and o.frame_index >= m.frame_index)
        out.insert(int(rng.integers(after, len(out) + 1)), m)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_a_run_is_re_solved_in_one_order_whatever_order_its_messages_arrived_in(seed: int) -> None:
    p = people(6, seed=4)
    tracks = [Track("a", i + 1, 1 + 8 * i, 50 + 8 * i, [p[i]] * 5) for i in range(6)]
    tracks += [Track("b", i + 1, 70 + 8 * i, 120 + 8 * i, [p[(i + 3) % 6]] * 5) for i in range(6)]
    messages = script(tracks)
    orders = []
    for arrived in (
        arrival(messages, np.random.default_rng(seed)),
        arrival(messages, np.random.default_rng(9)),
    ):
        kept = MessageOrder()
        assert all(kept.keep(m) for m in arrived)
        orders.append([id(m) for m in kept.messages()])
    assert orders[0] == orders[1]

    # the live matcher takes the identities of the run re-solved in that order
    arrived = arrival(messages, np.random.default_rng(seed))
    kept = MessageOrder()
    for m in arrived:
        kept.keep(m)
    store = EmbeddingStore(None, dim=DIM)
    live = Matcher(store, store.begin_session())
    final, _ = run(live, arrived)
    shadow_store = EmbeddingStore(None, dim=DIM)
    shadow = Matcher(shadow_store, shadow_store.begin_session())
    in_order, _ = run(shadow, kept.messages())
    final.update(
        {(a.camera_id, a.track_id): a.global_id for a in live.adopt(in_order) if isinstance(a, Assignment)}
    )
    groups = lambda ids: {frozenset(k for k in ids if ids[k] == g) for g in ids.values()}  # noqa: E731
    assert groups(final) == groups(in_order)
    assert all(final[("b", i + 1)] == final[("a", (i + 3) % 6 + 1)] for i in range(6))


def test_overlapping_views_link_one_person_whose_looks_differ_across_them() -> None:
    """Four people walk about two overlapping views; the calibration was learned before (a topology.json),
    so a link must beat the prior odds against any one of the four. Camera b sees the first person only
    from frame 50, in another light (cosine 0.6 to a's look, a log-likelihood ratio of -3); a lost them
    at frame 40 and found them again at frame 44, where their motion led. b's track walks where a's
    second track does: that pair picks out one person whatever the odds against any one identity, and
    outweighs the looks of b's track against a's first one."""
    p = people(len(WALKS) + 1, seed=5)
    other_light = unit(0.6 * p[0] + 0.8 * unit(p[-1] - (p[-1] @ p[0]) * p[0]))
    tracks = walks_in_two_views(WALKS, list(p[: len(WALKS)]))
    first_in_a, first_in_b = tracks[0], tracks[1]
    x, y, vx, vy, h = WALKS[0]
    first_in_a.last = 40
    tracks.append(Track("a", 5, 44, 100, [p[0]] * 8, x0=x + 43 * vx, y0=y + 43 * vy, vx=vx, vy=vy, height=h))
    first_in_b.first, first_in_b.vectors = 50, [other_light] * 8
    first_in_b.x0, first_in_b.y0 = box_in_b(x + 49 * vx, y + 49 * vy, h)
    store = EmbeddingStore(None, dim=DIM)
    matcher = Matcher(store, store.begin_session(), learned=learned_calibration((0.95, 0.02), (0.3, 0.15)))
    assert matcher.calibration.llr(0.6) == pytest.approx(-APPEARANCE_MAX_LLR)
    final, _ = run(matcher, script(tracks))
    assert matcher.geometry.model("a", "b") is not None
    assert final[("a", 1)] == final[("a", 5)] == final[("b", 11)]
    assert len({final[("a", i)] for i in range(1, len(WALKS) + 1)}) == len(WALKS)


def test_a_track_that_switched_people_is_cut_where_its_looks_change(tmp_path) -> None:
    # Track 1 follows person 0, then (its tracker lost them in a crowd) person 1: its embeddings, at
    # frames 9, 18, 27, 36 and 44, 53, 62, 71, change between 36 and 44. Person 1 is seen next in camera b.
    p = people(2)
    tracks = [Track("a", 1, 1, 80, [p[0]] * 4 + [p[1]] * 4), Track("b", 1, 100, 130, [p[1]] * 4)]
    messages = script(tracks)
    store = EmbeddingStore(None, dim=DIM)
    session = store.begin_session()
    boxes = BoxLog(store, session)
    for message in messages:
        if isinstance(message, Tracks):
            boxes.update(message)
    boxes.flush()
    keeper = ThumbnailKeeper(tmp_path / "thumbnails" / "a", per_track=8, size=16)
    for frame in (10, 60):
        keeper.add(Crop("a", 1, frame, frame / FPS, np.zeros((20, 8, 3), np.uint8), 1.0))
    matcher = Matcher(store, session)
    final, outputs = run(matcher, messages)
    second = 1 + PART_STRIDE
    assert final[("a", 1)] != final[("a", second)] == final[("b", 1)]
    parts = {t.track_id: (t.first_frame, t.last_frame) for t in store.tracklets(session) if t.camera == "a"}
    assert parts == {1: (1, 39), second: (40, 80)}  # cut midway between the embeddings of frames 36 and 44
    assert any(isinstance(o, IdentityEvent) and o.kind == "left" and o.track_id == second for o in outputs)
    where = {t: matcher.geometry.trajectory("a", t, bottoms=True).times for t in (1, second)}
    assert where[1].max() < 40 / FPS <= where[second].min()  # the overlap learner holds each part apart

    cameras = [{"id": c, "source": f"{c}.mp4", "fps": FPS, "frames": 130} for c in ("a", "b")]
    write_exports(store, session, cameras, tmp_path)
    mot = np.loadtxt(tmp_path / "mot" / "a.txt", delimiter=",")
    assert set(mot[mot[:, 0] < 40, 1]) == {final[("a", 1)]} and set(mot[mot[:, 0] >= 40, 1]) == {
        final[("b", 1)]
    }
    exported = json.loads((tmp_path / "tracks.json").read_text())
    seen = {
        (a["local_track_id"], tuple(a["thumbnails"]))
        for identity in exported["identities"]
        for a in identity["appearances"]
        if a["camera"] == "a"
    }
    assert seen == {(1, ("thumbnails/a/1/000010.jpg",)), (second, ("thumbnails/a/1/000060.jpg",))}


def test_a_track_of_one_person_is_not_cut() -> None:
    p = people(1)
    store = EmbeddingStore(None, dim=DIM)
    session = store.begin_session()
    run(Matcher(store, session), script([Track("a", 1, 1, 80, [p[0]] * 8, noise=0.5)]))
    assert [(t.track_id, t.first_frame, t.last_frame) for t in store.tracklets(session)] == [(1, 1, 80)]
