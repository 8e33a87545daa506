"""Tracklets as the matcher reasons about them: where and when each was seen, and how it moved."""

from __future__ import annotations

import bisect
import itertools
import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from pipeline.transit import Sighting

Box = tuple[float, float, float, float]  # x1, y1, x2, y2
REJOIN_TOLERANCE = 0.75  # box heights between where a lost track's motion leads and where a new one starts
MAX_SPEED_HEIGHTS_S = 1.5  # a walking person covers about one body height per second
RESIZE_TOLERANCE = math.log(1.5)  # box height change of a continuation counted as one tolerance
# Two tracks whose feet come this close (in box heights) may swap people without the tracker noticing;
# such a meeting this near a tracklet's start or end leaves who continues whom to the appearance.
ENCOUNTER_DISTANCE = 0.5
ENCOUNTER_WINDOW_S = 1.5
# A track born with its box on an older track's (this IoU or more) is a second box on one person when
# the older one ends within DUPLICATE_S: a hand-over between two tracks of one person, not two people.
DUPLICATE_IOU = 0.5
DUPLICATE_S = 1.0
BORDER_PX = 2.0  # a box this close to the edge of its frame is cut by the border of the view
# What an open tracklet remembers to be cut where its track switched people: its boxes of the last
# PATH_MEMORY frames (a cut goes no further back: a minute at 30 fps) and its last HISTORY_MEMORY
# embeddings.
PATH_MEMORY = 2048
HISTORY_MEMORY = 256
PART_STRIDE = 1 << 40  # a track cut into parts: part i (from 0) is the tracklet `track_id + i * PART_STRIDE`
END_HEIGHT_S = 1.0  # how far back from its end a tracklet's typical height is taken


def source_track(track_id: int) -> int:
    """The tracker's id of the track a tracklet is part of (see PART_STRIDE)."""
    return track_id % PART_STRIDE


def part_at(parts: list[tuple[int, int]], frame: int) -> int:
    """The tracklet id of the part of a cut track that holds `frame`, of its parts (first frame, tracklet
    id) in order: the last to begin at or before it (the first, for a frame before them all)."""
    return parts[max(bisect.bisect_right(parts, (frame, math.inf)) - 1, 0)][1]


def foot(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, box[3]


def box_height(box: Box) -> float:
    return box[3] - box[1]


def borders_touched(box: Box, size: tuple[int, int]) -> tuple[bool, bool, bool, bool]:
    """Which borders (left, top, right, bottom) of a frame of `size` (width, height) a box touches."""
    width, height = size
    return box[0] <= BORDER_PX, box[1] <= BORDER_PX, box[2] >= width - BORDER_PX, box[3] >= height - BORDER_PX


def sighting_of(span: Span, identity: int) -> Sighting | None:
    """A tracklet as the transit model sees it; None where its boxes are not known."""
    if span.first_box is None or span.last_box is None:
        return None
    height = (box_height(span.first_box) + box_height(span.last_box)) / 2
    return Sighting(
        span.camera,
        identity,
        span.first_time,
        span.last_time,
        foot(span.first_box),
        foot(span.last_box),
        height,
    )


def continuation_miss(earlier: Span, later: Span) -> float | None:
    """How far `later` starts from where `earlier`'s motion leads, and how much its size differs (from
    `earlier`'s last box or its height near its end, the closer), as a share of what a lost track may
    drift in the gap (<= 1: a good continuation; beyond _MAX_CONTINUATION_MISS: none); None where motion
    is unknown."""
    if earlier.last_box is None or later.first_box is None:
        return None
    gap = max(later.first_time - earlier.last_time, 0.0)
    height = max(box_height(earlier.last_box), box_height(later.first_box), 1.0)
    ends = [box_height(earlier.last_box)] + ([earlier.end_height] if earlier.end_height else [])
    resize = min(abs(math.log(max(box_height(later.first_box), 1.0) / max(end, 1.0))) for end in ends)
    (ex, ey), (lx, ly) = foot(earlier.last_box), foot(later.first_box)
    vx, vy = earlier.velocity
    if float(np.hypot(vx, vy)) > MAX_SPEED_HEIGHTS_S * height:  # a jittery estimate: trust position only
        vx, vy = 0.0, 0.0
    miss = float(np.hypot(ex + vx * gap - lx, ey + vy * gap - ly))
    return max(
        miss / (height * (REJOIN_TOLERANCE + MAX_SPEED_HEIGHTS_S / 2 * gap)), resize / RESIZE_TOLERANCE
    )


def close_pairs(xyxy: np.ndarray) -> list[tuple[int, int]]:
    """Index pairs (i < j) of the boxes (N, 4) of one frame whose feet are within ENCOUNTER_DISTANCE."""
    if len(xyxy) < 2:
        return []
    feet = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)
    heights = np.maximum(xyxy[:, 3] - xyxy[:, 1], 1.0)
    distance = np.linalg.norm(feet[:, None] - feet[None], axis=2)
    close = distance <= ENCOUNTER_DISTANCE * (heights[:, None] + heights[None]) / 2
    return [(int(i), int(j)) for i, j in zip(*np.nonzero(np.triu(close, k=1)), strict=True)]


def box_ious(box: Box, boxes: np.ndarray) -> np.ndarray:
    """IoU of one box with each of `boxes` (N, 4)."""
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    union = (box[2] - box[0]) * (box[3] - box[1]) + areas - inter
    return inter / np.maximum(union, 1e-9)


def duplicate_handover(earlier: Span, later: Span) -> bool:
    """Whether `later` was born on `earlier`'s person and `earlier` ended soon after (DUPLICATE_S)."""
    return (
        later.born_on == earlier.track_id
        and later.camera == earlier.camera
        and earlier.first_time < later.first_time
        and earlier.last_time - later.first_time <= DUPLICATE_S
    )


def live_together(a: Span, b: Span) -> bool:
    """Whether two tracklets of one camera were live at once, so that they are two people; a duplicate
    hand-over (one person's track taken over by a second box on them) is not."""
    if not (a.first_frame <= b.last_frame and b.first_frame <= a.last_frame):
        return False
    return not (duplicate_handover(a, b) or duplicate_handover(b, a))


@dataclass
class Span:
    """Where and when a tracklet was seen; the unit the constraints reason about."""

    camera: str
    first_frame: int
    last_frame: int
    first_time: float
    last_time: float
    first_box: Box | None = None  # None: motion unknown (a tracklet no longer remembered)
    last_box: Box | None = None
    velocity: tuple[float, float] = (0.0, 0.0)  # foot-point motion at the end, pixels per second
    track_id: int = -1  # -1: not known (a tracklet no longer remembered)
    appearance: np.ndarray | None = None  # (D,) unit tracklet feature, kept for the refinement
    embeddings: int = 0  # how many embeddings the feature averages
    global_id: int | None = None  # its identity, once decided
    # other tracks of its camera it came close to: track id -> (first, last) time of those meetings
    encounters: dict[int, tuple[float, float]] = field(default_factory=dict)
    born_on: int | None = None  # the older track of its camera its first box doubled, if any
    # its boxes' median height over its last END_HEIGHT_S: as a tracker loses someone behind something,
    # its last boxes may hold only what is still seen of them
    end_height: float | None = None

    def met(self, track_id: int, timestamp: float) -> None:
        first, _ = self.encounters.get(track_id, (timestamp, timestamp))
        self.encounters[track_id] = (first, timestamp)

    def partners(self, at_end: bool) -> list[int]:
        """The tracks it met within ENCOUNTER_WINDOW_S of its end (or start): people it may have swapped
        with, so that its end (start) may belong to one of them."""
        if at_end:
            return [
                t for t, (_, last) in self.encounters.items() if last >= self.last_time - ENCOUNTER_WINDOW_S
            ]
        return [
            t for t, (first, _) in self.encounters.items() if first <= self.first_time + ENCOUNTER_WINDOW_S
        ]


@dataclass
class OpenTracklet(Span):
    """An open tracklet: its span, its accumulating feature and its current identity."""

    feature_sum: np.ndarray | None = None
    samples: list[tuple[np.ndarray, float]] = field(
        default_factory=list
    )  # (vector, quality), for calibration
    since_decision: int = 0
    closing: bool = False
    path: deque[tuple[int, float, Box]] = field(default_factory=lambda: deque(maxlen=PATH_MEMORY))
    history: deque[tuple[int, np.ndarray, float]] = field(  # (frame, vector, quality)
        default_factory=lambda: deque(maxlen=HISTORY_MEMORY)
    )

    def moved_to(self, box: Box, timestamp: float, frame: int | None = None) -> None:
        """Follow the tracklet's box (of `frame`, remembered in its path where given); the velocity is
        smoothed so one jittery box does not swing it."""
        if frame is not None:
            self.path.append((frame, timestamp, box))
        if self.first_box is None:
            self.first_box = box
        elif self.last_box is not None and timestamp > self.last_time:
            (px, py), (cx, cy) = foot(self.last_box), foot(box)
            dt = timestamp - self.last_time
            vx, vy = (cx - px) / dt, (cy - py) / dt
            self.velocity = (0.5 * self.velocity[0] + 0.5 * vx, 0.5 * self.velocity[1] + 0.5 * vy)
        self.last_box = box

    def typical_end_height(self) -> float | None:
        """The median height of its remembered boxes over its last END_HEIGHT_S (None: none remembered)."""
        heights = [box_height(box) for _, t, box in self.path if t >= self.last_time - END_HEIGHT_S]
        return float(np.median(heights)) if heights else None

    def add_embedding(self, frame: int, vector: np.ndarray, quality: float, max_samples: int) -> None:
        """Take one embedding of `frame` into the feature (weighted by its quality) and the history; the
        first `max_samples` are also calibration samples."""
        weighted = vector.astype(np.float64) * max(quality, 1e-6)
        self.feature_sum = weighted if self.feature_sum is None else self.feature_sum + weighted
        self.embeddings += 1
        self.history.append((frame, vector, quality))
        if len(self.samples) < max_samples:
            self.samples.append((vector, quality))

    def feature(self) -> np.ndarray:
        assert self.feature_sum is not None
        return (self.feature_sum / max(float(np.linalg.norm(self.feature_sum)), 1e-12)).astype(np.float32)

    def split(self, starts: list[int], max_samples: int) -> list[OpenTracklet]:
        """The tracklet cut before each frame of `starts` (ascending, after the first frame of its path):
        the first part keeps its track id and identity, part i is `track_id + i * PART_STRIDE`, without
        one. Each part has the boxes, embeddings (calibration samples: the first `max_samples`) and
        meetings of its own frames."""
        bounds = [self.first_frame, *starts, self.last_frame + 1]
        history = sorted(self.history, key=lambda e: e[0])  # embeddings may have arrived out of order
        parts = []
        for i, (begin, end) in enumerate(itertools.pairwise(bounds)):
            part = OpenTracklet(
                self.camera, begin, begin, self.first_time, self.first_time, track_id=self.track_id + i * PART_STRIDE,
                closing=self.closing,
            )  # fmt: skip
            if i == 0:  # its start may be older than the path remembers
                part.first_box, part.global_id, part.born_on = self.first_box, self.global_id, self.born_on
            steps = [(f, t, box) for f, t, box in self.path if begin <= f < end]
            for f, t, box in steps:
                part.moved_to(box, t, f)
                part.last_frame, part.last_time = f, t
            if i > 0:
                part.first_time = steps[0][1]
            for frame, vector, quality in history:
                if begin <= frame < end:
                    part.add_embedding(frame, vector, quality, max_samples)
            part.encounters = {
                track: (max(first, part.first_time), min(last, part.last_time))
                for track, (first, last) in self.encounters.items()
                if first <= part.last_time and last >= part.first_time
            }
            parts.append(part)
        return parts
