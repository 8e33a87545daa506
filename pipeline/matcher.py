"""Matcher: links the local tracks of all cameras under global identities, jointly and under constraints."""

from __future__ import annotations

import logging
import math
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.calibration import ScoreCalibration
from pipeline.geometry import OverlapLearner
from pipeline.messages import Assignment, CameraFinished, Embedding, IdentityEvent, TrackEnded, Tracks
from pipeline.refine import cluster_tracklets
from pipeline.store import EmbeddingStore, Key
from pipeline.topology import TOPOLOGY_VERSION
from pipeline.transit import Sighting, TransitModel, learn_transit

logger = logging.getLogger(__name__)

Output = Assignment | IdentityEvent
_FORBIDDEN = 1e6  # cost of a pair the constraints rule out
_CLOSED_MEMORY = 4096  # recently closed tracklets remembered, so that late embeddings are ignored
_REJOIN_TOLERANCE = 0.75  # box heights between where a lost track's motion leads and where a new one starts
_MAX_SPEED_HEIGHTS_S = 1.5  # a walking person covers about one body height per second
_GEOMETRY_LLR = 4.0  # log-likelihood ratio of two tracklets at corresponding places in overlapping views
_GEOMETRY_MIN_COMMON = 3
_REFINE_MAX = 1000  # closed tracklets a refinement re-solves at most (the most recent)
_CONTINUATION_LLR = 2.0  # log-likelihood ratio of a lost track restarting exactly where its motion led
_RESIZE_TOLERANCE = math.log(1.5)  # box height change of a continuation counted as one tolerance
_MAX_CONTINUATION_MISS = 1.0  # moments seen together before geometry speaks
_CALIBRATION_SAMPLES = 32  # embeddings a tracklet keeps for the score calibration
DEFAULT_THRESHOLD = 0.85  # where the calibration starts, before the site has labelled any pairs


def _foot(box: Box) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, box[3]


def _height(box: Box) -> float:
    return box[3] - box[1]


Box = tuple[float, float, float, float]  # x1, y1, x2, y2


def _sighting(span: _Span, identity: int) -> Sighting | None:
    """A tracklet as the transit model sees it; None where its boxes are not known."""
    if span.first_box is None or span.last_box is None:
        return None
    height = (_height(span.first_box) + _height(span.last_box)) / 2
    return Sighting(
        span.camera,
        identity,
        span.first_time,
        span.last_time,
        _foot(span.first_box),
        _foot(span.last_box),
        height,
    )


def _continuation_miss(earlier: _Span, later: _Span) -> float | None:
    """How far `later` starts from where `earlier`'s motion leads, and how much its size differs, as a
    share of what a lost track may drift in the gap (<= 1: a good continuation; beyond
    _MAX_CONTINUATION_MISS: none); None where motion is unknown."""
    if earlier.last_box is None or later.first_box is None:
        return None
    gap = max(later.first_time - earlier.last_time, 0.0)
    height = max(_height(earlier.last_box), _height(later.first_box), 1.0)
    resize = abs(math.log(max(_height(later.first_box), 1.0) / max(_height(earlier.last_box), 1.0)))
    (ex, ey), (lx, ly) = _foot(earlier.last_box), _foot(later.first_box)
    vx, vy = earlier.velocity
    if float(np.hypot(vx, vy)) > _MAX_SPEED_HEIGHTS_S * height:  # a jittery estimate: trust position only
        vx, vy = 0.0, 0.0
    miss = float(np.hypot(ex + vx * gap - lx, ey + vy * gap - ly))
    return max(
        miss / (height * (_REJOIN_TOLERANCE + _MAX_SPEED_HEIGHTS_S / 2 * gap)), resize / _RESIZE_TOLERANCE
    )


@dataclass
class _Span:
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


@dataclass
class _Tracklet(_Span):
    """An open tracklet: its span, its accumulating feature and its current identity."""

    feature_sum: np.ndarray | None = None
    samples: list[tuple[np.ndarray, float]] = field(
        default_factory=list
    )  # (vector, quality), for calibration
    since_decision: int = 0
    closing: bool = False

    def moved_to(self, box: Box, timestamp: float) -> None:
        """Follow the tracklet's box; the velocity is smoothed so one jittery box does not swing it."""
        if self.first_box is None:
            self.first_box = box
        elif self.last_box is not None and timestamp > self.last_time:
            (px, py), (cx, cy) = _foot(self.last_box), _foot(box)
            dt = timestamp - self.last_time
            vx, vy = (cx - px) / dt, (cy - py) / dt
            self.velocity = (0.5 * self.velocity[0] + 0.5 * vx, 0.5 * self.velocity[1] + 0.5 * vy)
        self.last_box = box

    def feature(self) -> np.ndarray:
        assert self.feature_sum is not None
        return (self.feature_sum / max(float(np.linalg.norm(self.feature_sum)), 1e-12)).astype(np.float32)


class Matcher:
    """Assigns a global identity to every (camera, local track) from appearance, topology and time.

    Undecided tracklets wait for `min_embeddings` embeddings (or their end), then all tracklets waiting
    at that moment are assigned together (Hungarian) to identities found in the store's gallery, among
    those the constraints allow, or to a new identity where no candidate's evidence is strong enough. An
    open tracklet is re-decided every `revise_every` new embeddings.

    Evidence: with `threshold=None` a cosine similarity becomes a log-likelihood ratio of "same person",
    learned per site and model from the pairs the constraints label for free (see `ScoreCalibration`),
    starting from a prior around DEFAULT_THRESHOLD; a fixed `threshold` overrides it (1.0 links nothing).

    Constraints: an identity holds at most one tracklet at a time in one camera; it is in one camera at a
    time unless the pair is in `overlaps`; `transitions[(a, b)] = (min_s, max_s)` bounds the gap between
    its last sighting in camera a and its first in camera b. Inside one camera, a tracklet joins an
    identity's earlier one only as the continuation of a lost track (within `rejoin_max_gap_s`, where
    its motion leads, at a similar size) or after the person was seen in another camera in between.
    Constraints compare tracklets of this session only: timestamps of earlier sessions are not on the
    same clock.

    DEFAULT_THRESHOLD suits OSNet-like features, where different people in similar clothes often score
    0.7-0.9; the calibration moves away from it as it learns what this model's scores mean here.
    """

    def __init__(
        self,
        store: EmbeddingStore,
        session: int,
        threshold: float | None = None,
        min_embeddings: int = 3,
        revise_every: int = 4,
        overlaps: Iterable[tuple[str, str]] = (),
        transitions: Mapping[tuple[str, str], tuple[float, float]] | None = None,
        top_k: int = 20,
        commit_interval_s: float = 1.0,
        rejoin_max_gap_s: float = 3.0,
        refine_at_end: bool = True,
        refine_interval_s: float | None = None,
        learned: Mapping | None = None,
        model: str = "",
    ) -> None:
        if min_embeddings < 1 or revise_every < 1 or top_k < 1:
            raise ValueError("min_embeddings, revise_every and top_k must be >= 1")
        self.store = store
        self.session = session
        self.threshold = threshold
        # No threshold: similarities are calibrated on the pairs the constraints label, per site and model.
        self.calibration = (
            None
            if threshold is not None
            else ScoreCalibration(prior_threshold=DEFAULT_THRESHOLD, model=model)
        )
        self.geometry = OverlapLearner()  # which views overlap, and how foot points map between them
        self.transit: TransitModel | None = None  # disjoint views: entry/exit zones and transit times
        if learned:
            self._start_from(learned, model)
        self.min_embeddings = min_embeddings
        self.revise_every = revise_every
        self.overlaps = {frozenset(pair) for pair in overlaps}
        self.transitions = dict(transitions or {})
        for pair, (low, high) in self.transitions.items():
            if not 0 <= low <= high:
                raise ValueError(f"transit window {pair}: expected 0 <= min_s <= max_s, got ({low}, {high})")
        self.top_k = top_k
        self.commit_interval_s = commit_interval_s
        self.rejoin_max_gap_s = rejoin_max_gap_s
        self.refine_at_end = refine_at_end
        self.refine_interval_s = refine_interval_s
        self._refined_at: float | None = None  # data time of the last periodic refinement
        self._committed_at = time.monotonic()
        self.reset()

    def _start_from(self, learned: Mapping, model: str) -> None:
        """Start from what an earlier run learned (a topology.json): its overlaps, and its score
        calibration where it was learned with the same re-ID model."""
        if learned.get("overlaps"):
            self.geometry = OverlapLearner.from_dict(learned["overlaps"])
        if learned.get("transit"):
            self.transit = TransitModel.from_dict(learned["transit"])
        calibration = learned.get("score_calibration")
        if self.calibration is not None and calibration:
            if calibration.get("model") == model:
                self.calibration = ScoreCalibration.from_dict(calibration)
            else:
                logger.info(
                    "learned score calibration is for model %r, this run's is %r: learning it anew",
                    calibration.get("model"),
                    model,
                )

    def reset(self) -> None:
        """Forget the open tracklets; the store is untouched."""
        self._open: dict[tuple[str, int], _Tracklet] = {}
        self._due: set[tuple[str, int]] = set()  # tracklets waiting for a (re)decision
        self._closed: OrderedDict[tuple[str, int], _Span] = OrderedDict()  # their spans, for constraints
        self._early: OrderedDict[tuple[str, int], list[Embedding]] = OrderedDict()  # before their track
        self._camera_times: dict[str, list[float]] = {}  # camera -> [first, last] frame time seen

    @property
    def open_tracklets(self) -> int:
        """How many tracklets the matcher holds in memory (closed ones live only in the store)."""
        return len(self._open)

    # -- messages ----------------------------------------------------------------------------------

    def update(self, message: object) -> list[Output]:
        """Take one message (Tracks, Embedding, TrackEnded, CameraFinished); return what was decided."""
        if isinstance(message, Tracks):
            self._on_tracks(message)
        elif isinstance(message, Embedding):
            self._on_embedding(message)
            return []  # decided with the next frame, jointly with whatever else became ready
        elif isinstance(message, TrackEnded):
            tracklet = self._open.get((message.camera_id, int(message.track_id)))
            if tracklet is not None:
                tracklet.closing = True
        elif isinstance(message, CameraFinished):
            for (camera, _), tracklet in self._open.items():
                tracklet.closing = tracklet.closing or camera == message.camera_id
        else:
            raise TypeError(f"Matcher cannot take a {type(message).__name__} message")
        out = self._decide_and_close()
        if self._refine_due():
            out.extend(self._refine_with_transit())
        self.commit_if_due()
        return out

    def topology(self) -> dict:
        """What the matcher learned of the site: overlapping views with their mappings, the score model."""
        return {
            "schema_version": TOPOLOGY_VERSION,
            "overlaps": self.geometry.to_dict(),
            "transit": None if self.transit is None else self.transit.to_dict(),
            "score_calibration": None if self.calibration is None else self.calibration.to_dict(),
        }

    def commit_if_due(self) -> bool:
        """Make the store durable when `commit_interval_s` has passed since the last commit.

        Bounds what a hard kill can lose to that interval's work; the runner also calls this while
        no messages arrive.
        """
        if time.monotonic() - self._committed_at < self.commit_interval_s:
            return False
        self._flush()
        return True

    def finish(self) -> list[Output]:
        """Close every open tracklet, decide what is left, re-solve with all evidence, make it durable."""
        for tracklet in self._open.values():
            tracklet.closing = True
        out = self._decide_and_close()
        if self.refine_at_end:
            out.extend(self._refine_with_transit())
        self._flush()
        return out

    def _refine_due(self) -> bool:
        """Whether `refine_interval_s` of data time (the newest frame of any camera) have passed."""
        if self.refine_interval_s is None or not self._camera_times:
            return False
        now = max(last for _, last in self._camera_times.values())
        if self._refined_at is None:
            self._refined_at = now
        if now - self._refined_at < self.refine_interval_s:
            return False
        self._refined_at = now
        return True

    def _refine_with_transit(self) -> list[Output]:
        out = self.refine()
        if self._learn_transit():  # the hand-overs of the refined identities: once more with them
            out.extend(self.refine())
        return out

    def refine(self) -> list[Output]:
        """Re-solve the identities of this session's closed tracklets with all their evidence.

        Online decisions were made on what was known then. Here the closed tracklets (the most recent
        _REFINE_MAX) are clustered at once (`cluster_tracklets`): appearance as the decisions score it, tracklets walking at
        corresponding places in overlapping views as one person, and the same constraints. Each cluster
        keeps the identity most of its frames already had; what moves is reported as `revised`.
        """
        records = {(r.camera, r.track_id): r for r in self.store.tracklets(session=self.session)}
        keys = [k for k in self._closed if k in records and records[k].global_id is not None]
        keys = keys[-_REFINE_MAX:]  # the most recent: older ones keep their decisions
        spans = [self._closed[k] for k in keys]
        if len(spans) < 2:
            return []
        scores, forbidden = self._pair_evidence(spans)

        def allowed(members: list[int]) -> bool:
            group = [spans[m] for m in members]
            return all(self._allowed(s, [o for o in group if o is not s]) for s in group)

        current = [records[k].global_id for k in keys]
        labels = cluster_tracklets(scores, forbidden, initial=current, allowed=allowed)
        new_ids = self._label_identities(labels, current, spans)
        out: list[Output] = []
        for key, span, old, new in zip(keys, spans, current, new_ids, strict=True):
            if new == old:
                continue
            record = records[key]
            self.store.upsert_tracklet(
                self.session, span.camera, span.track_id, global_id=new, first_frame=record.first_frame,
                last_frame=record.last_frame, first_time=record.first_time, last_time=record.last_time,
                closed=record.closed,
            )  # fmt: skip
            span.global_id = new
            if span.appearance is not None:
                self.store.add_prototype(new, span.appearance, (self.session, *key))
            if not self._members(old, (self.session, *key)):
                self.store.retire_identity(old)
            out.append(Assignment(span.camera, span.track_id, new, 0.0, revised=True))
            out.append(
                IdentityEvent("revised", new, span.camera, span.track_id, span.last_frame, span.last_time)
            )
        logger.info("refinement: %d of %d tracklets changed identity", len(out) // 2, len(spans))
        return out

    def _pair_evidence(self, spans: list[_Span]) -> tuple[np.ndarray, np.ndarray]:
        """(n, n) link scores (nan: no evidence) and forbidden pairs, as `_decide` weighs them."""
        n = len(spans)
        scores = np.full((n, n), np.nan)
        forbidden = np.zeros((n, n), bool)
        have = [i for i, s in enumerate(spans) if s.appearance is not None]
        if have:
            features = np.stack([spans[i].appearance for i in have])  # (m, D)
            sims = np.clip(features @ features.T, -1.0, 1.0)
            if self.calibration is None:
                linked = sims - self.threshold
            else:
                linked = self.calibration.llr(sims) - self._prior_odds_against()
            scores[np.ix_(have, have)] = linked
        for i in range(n):
            for j in range(i + 1, n):
                a, b = spans[i], spans[j]
                if a.camera == b.camera:
                    forbidden[i, j] = a.first_frame <= b.last_frame and b.first_frame <= a.last_frame
                    gap = max(a.first_time - b.last_time, b.first_time - a.last_time)
                    if gap > self.rejoin_max_gap_s:
                        # left the view and came back: what links the two is the sighting elsewhere in
                        # between, not their likeness in one view (alike people in one view score alike)
                        scores[i, j] = scores[j, i] = np.nan
                        continue
                    motion = None if forbidden[i, j] else self._continuation_llr(a, b)
                    if motion is not None and not np.isnan(scores[i, j]):
                        scores[i, j] = scores[j, i] = scores[i, j] + motion
                elif a.last_time <= b.first_time or b.last_time <= a.first_time:
                    transit = self._transit_llr(a, b)
                    if transit and not np.isnan(scores[i, j]):
                        scores[i, j] = scores[j, i] = scores[i, j] + transit
                else:
                    if not self._may_be_together(a, b):
                        forbidden[i, j] = True
                    elif self.calibration is not None and self._seen_together(a, [b]):
                        both = np.nan_to_num(scores[i, j], nan=-np.inf)
                        scores[i, j] = scores[j, i] = max(both, _GEOMETRY_LLR)
        forbidden |= forbidden.T
        np.fill_diagonal(scores, np.nan)
        return scores, forbidden

    def _continuation_llr(self, a: _Span, b: _Span) -> float | None:
        """Evidence that the later of two tracklets of one camera continues the earlier one's motion.

        A lost track restarted where the person was heading, soon after, is a likely continuation: the
        prior odds against any one identity do not apply to it, and the closer the fit, the more it adds.
        None where the pair is not a plausible continuation, or scores are a fixed threshold.
        """
        if self.calibration is None:
            return None
        earlier, later = (a, b) if a.last_time <= b.first_time else (b, a)
        if later.first_time - earlier.last_time > self.rejoin_max_gap_s:
            return None
        miss = _continuation_miss(earlier, later)
        if miss is None or miss > _MAX_CONTINUATION_MISS:
            return None
        return self._prior_odds_against() + _CONTINUATION_LLR * (1.0 - miss)

    def _continuation_evidence(self, tracklet: _Span, others: list[_Span]) -> float:
        """`_continuation_llr` of `tracklet` after the identity's latest earlier tracklet in its camera."""
        before = [s for s in others if s.camera == tracklet.camera and s.last_time <= tracklet.first_time]
        if not before:
            return 0.0
        llr = self._continuation_llr(max(before, key=lambda s: s.last_time), tracklet)
        return 0.0 if llr is None else llr

    def _transit_llr(self, a: _Span, b: _Span) -> float:
        """`TransitModel.llr` of two tracklets of two cameras, one after the other (0: nothing learned)."""
        if self.transit is None or self.calibration is None or self.geometry.model(a.camera, b.camera):
            return 0.0  # overlapping views: geometry speaks for their hand-overs
        leaving, entering = (a, b) if a.last_time <= b.first_time else (b, a)
        first, second = _sighting(leaving, -1), _sighting(entering, -1)
        return 0.0 if first is None or second is None else self.transit.llr(first, second)

    def _transit_evidence(self, tracklet: _Span, others: list[_Span]) -> float:
        """`_transit_llr` of `tracklet` after the identity's latest sighting in another camera before it."""
        before = [s for s in others if s.camera != tracklet.camera and s.last_time <= tracklet.first_time]
        return self._transit_llr(max(before, key=lambda s: s.last_time), tracklet) if before else 0.0

    def _learn_transit(self) -> bool:
        """Learn entry/exit zones and transit times from this session's identities; True if any path."""
        if self.calibration is None:
            return False
        records = self.store.tracklets(session=self.session)
        overlapping = {frozenset(pair) for pair in self.geometry.models()}
        sightings = [
            sighting
            for r in records
            if r.global_id is not None
            and (span := self._closed.get((r.camera, r.track_id))) is not None
            and (sighting := _sighting(span, r.global_id)) is not None
        ]
        spans = {camera: (first, last) for camera, (first, last) in self._camera_times.items()}
        learned = learn_transit(sightings, spans, rejoin_gap_s=self.rejoin_max_gap_s, skip=overlapping)
        if learned.paths:
            self.transit = learned
        return bool(learned.paths)

    def _label_identities(self, labels: np.ndarray, current: list[int], spans: list[_Span]) -> list[int]:
        """A global id per cluster: the one most of its frames had, biggest clusters first; else a new one."""
        frames = np.array([s.last_frame - s.first_frame + 1 for s in spans], np.float64)
        order = sorted(set(labels.tolist()), key=lambda c: -frames[labels == c].sum())
        taken: set[int] = set()
        chosen: dict[int, int] = {}
        for cluster in order:
            votes: dict[int, float] = {}
            for i in np.flatnonzero(labels == cluster):
                votes[current[i]] = votes.get(current[i], 0.0) + frames[i]
            free = [gid for gid in sorted(votes, key=lambda g: -votes[g]) if gid not in taken]
            gid = free[0] if free else self.store.new_identity(time.time())
            taken.add(gid)
            chosen[cluster] = gid
        return [chosen[int(c)] for c in labels]

    def _on_tracks(self, tracks: Tracks) -> None:
        times = self._camera_times.setdefault(tracks.camera_id, [tracks.timestamp, tracks.timestamp])
        times[0], times[1] = min(times[0], tracks.timestamp), max(times[1], tracks.timestamp)
        self.geometry.add_boxes(tracks.camera_id, tracks.timestamp, tracks.track_id, tracks.xyxy)
        for xyxy, track_id in zip(tracks.xyxy, tracks.track_id, strict=True):
            key = (tracks.camera_id, int(track_id))
            tracklet = self._open.get(key)
            if tracklet is None:
                if key in self._closed:
                    logger.warning("camera %s: track %d reappeared after it ended", *key)
                tracklet = _Tracklet(
                    tracks.camera_id, tracks.frame_index, tracks.frame_index, tracks.timestamp,
                    tracks.timestamp, track_id=key[1],
                )  # fmt: skip
                self._open[key] = tracklet
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            tracklet.moved_to((x1, y1, x2, y2), tracks.timestamp)
            tracklet.last_frame = max(tracklet.last_frame, tracks.frame_index)
            tracklet.last_time = max(tracklet.last_time, tracks.timestamp)
            for early in self._early.pop(key, []):
                self._on_embedding(early)

    def _on_embedding(self, emb: Embedding) -> None:
        key = (emb.camera_id, int(emb.track_id))
        tracklet = self._open.get(key)
        if tracklet is None:
            self._keep_unplaced(key, emb)
            return
        weighted = emb.vector.astype(np.float64) * max(float(emb.quality), 1e-6)
        tracklet.feature_sum = weighted if tracklet.feature_sum is None else tracklet.feature_sum + weighted
        tracklet.embeddings += 1
        tracklet.since_decision += 1
        if len(tracklet.samples) < _CALIBRATION_SAMPLES:
            tracklet.samples.append((emb.vector, float(emb.quality)))
        if tracklet.global_id is None:
            if tracklet.embeddings >= self.min_embeddings:
                self._due.add(key)
        elif tracklet.since_decision >= self.revise_every:
            self._due.add(key)

    def _keep_unplaced(self, key: tuple[str, int], emb: Embedding) -> None:
        """An embedding whose track is not open: it arrived before the track's boxes (kept until they
        come), or after the track ended (it joins the ended tracklet's feature for the refinement)."""
        span = self._closed.get(key)
        if span is not None:
            vector = emb.vector.astype(np.float64) * max(float(emb.quality), 1e-6)
            if span.appearance is not None:
                vector = vector + span.appearance * max(span.embeddings, 1)
            span.appearance = (vector / max(float(np.linalg.norm(vector)), 1e-12)).astype(np.float32)
            span.embeddings += 1
            if span.global_id is not None:  # the gallery gets it too, so that later sightings can match
                self.store.add_prototype(span.global_id, span.appearance, (self.session, *key))
            return
        self._early.setdefault(key, []).append(emb)
        while sum(len(v) for v in self._early.values()) > _CLOSED_MEMORY:
            dropped, _ = self._early.popitem(last=False)
            logger.debug("camera %s: embeddings of track %d never met their track, dropped", *dropped)

    # -- decisions ---------------------------------------------------------------------------------

    def _decide_and_close(self) -> list[Output]:
        closing = [key for key, t in self._open.items() if t.closing]
        for key in closing:
            tracklet = self._open[key]
            if tracklet.embeddings and (tracklet.global_id is None or tracklet.since_decision):
                self._due.add(key)
        out = self._decide([self._open[key] for key in sorted(self._due) if key in self._open])
        self._due.clear()
        for key in closing:
            tracklet = self._open.pop(key)
            out.extend(self._close(tracklet))
            self._closed[key] = _Span(
                tracklet.camera, tracklet.first_frame, tracklet.last_frame, tracklet.first_time,
                tracklet.last_time, tracklet.first_box, tracklet.last_box, tracklet.velocity,
                tracklet.track_id, None if tracklet.feature_sum is None else tracklet.feature(),
                tracklet.embeddings, tracklet.global_id,
            )  # fmt: skip
            while len(self._closed) > _CLOSED_MEMORY:
                self._closed.popitem(last=False)
        return out

    def _decide(self, rows: list[_Tracklet]) -> list[Output]:
        """Assign `rows` jointly: Hungarian over 1 - similarity, with one 'new identity' column per row."""
        if not rows:
            return []
        features = np.stack([t.feature() for t in rows])  # (R, D)
        keys = [self._key(t) for t in rows]
        found = self.store.search(features, self.top_k, exclude=keys)
        against = self._prior_odds_against()
        scores = [self._link_scores(hits, against) for hits in found]  # per row: gid -> score, > 0 links
        candidates = sorted({gid for row in scores for gid, score in row.items() if score >= 0})
        if self.calibration is not None:  # geometry may carry a candidate that appearance alone would not
            candidates = sorted({*candidates, *(gid for row in scores for gid in row)})
        spans = self._identity_spans(candidates)
        column = {gid: j for j, gid in enumerate(candidates)}
        n_rows, n_ids = len(rows), len(candidates)
        cost = np.full((n_rows, n_ids + n_rows), _FORBIDDEN)
        cost[np.arange(n_rows), n_ids + np.arange(n_rows)] = 0.0  # a new identity
        for i, (tracklet, row) in enumerate(zip(rows, scores, strict=True)):
            for gid, score in row.items():
                others = [s for s in spans.get(gid, []) if s is not tracklet]
                score += self._continuation_evidence(tracklet, others) + self._transit_evidence(
                    tracklet, others
                )
                if score >= 0 and self._allowed(tracklet, others):
                    cost[i, column[gid]] = -score
        if self.calibration is not None:  # a fixed threshold leaves decisions to appearance alone
            for gid, j in column.items():
                for i, tracklet in enumerate(rows):
                    others = [s for s in spans[gid] if s is not tracklet]
                    # tracklets at corresponding places in overlapping views: the same person, whatever
                    # appearance says (different people in similar clothes score alike)
                    if self._seen_together(tracklet, others) and self._allowed(tracklet, others):
                        cost[i, j] = min(cost[i, j], -_GEOMETRY_LLR)
        row_index, col_index = linear_sum_assignment(cost)
        out: list[Output] = []
        for i, j in zip(row_index, col_index, strict=True):
            if j < n_ids and cost[i, j] < _FORBIDDEN:
                out.extend(self._assign(rows[i], candidates[j], found[i][candidates[j]]))
            else:
                out.extend(self._assign(rows[i], None, 0.0))
        return out

    def _prior_odds_against(self) -> float:
        """Calibrated: the prior log-odds against any one known identity (one of N people is this one),
        applied as far as the calibration has learned from this site. Not used with a fixed threshold."""
        if self.calibration is None:
            return 0.0
        return self.calibration.weight * float(np.log(max(self.store.identity_count(), 2)))

    def _link_scores(self, hits: dict[int, float], prior_odds_against: float) -> dict[int, float]:
        """How much each candidate's similarity favours linking over a new identity (> 0: link).

        With a fixed threshold, the margin above it; calibrated, the log-likelihood ratio of "same person"
        less `prior_odds_against`.
        """
        if not hits:
            return {}
        gids, sims = list(hits), np.array(list(hits.values()))
        if self.calibration is None:
            return dict(zip(gids, (sims - self.threshold).tolist(), strict=True))
        return dict(zip(gids, (self.calibration.llr(sims) - prior_odds_against).tolist(), strict=True))

    def _assign(self, tracklet: _Tracklet, global_id: int | None, score: float) -> list[Output]:
        """Apply one decision (`None`: no known identity fits) and say what changed."""
        previous = tracklet.global_id
        key = self._key(tracklet)
        tracklet.since_decision = 0
        born = False
        if global_id is None:
            if previous is not None and not self._members(previous, key):
                global_id = previous  # alone in its identity: a new one would only rename it
            else:
                global_id, born = self.store.new_identity(time.time()), True
        if previous is None:
            kind = "appeared" if born else "matched"
        else:
            kind = "revised" if global_id != previous else ""
        tracklet.global_id = global_id
        self._store_tracklet(tracklet, closed=False)
        if tracklet.feature_sum is not None:
            self.store.add_prototype(global_id, tracklet.feature(), key)
        if not kind:
            return []
        if kind == "revised" and not self._members(previous, key):
            logger.debug("identity %d left empty by a revision: retired", previous)
            self.store.retire_identity(previous)
        assignment = Assignment(
            tracklet.camera, tracklet.track_id, global_id, score, revised=previous is not None
        )
        return [assignment, self._event(kind, tracklet, score)]

    def _close(self, tracklet: _Tracklet) -> list[Output]:
        out: list[Output] = []
        if tracklet.global_id is None:  # never embedded: it still needs an identity for the exports
            out.extend(self._assign(tracklet, None, 0.0))
        elif tracklet.feature_sum is not None:
            self.store.add_prototype(tracklet.global_id, tracklet.feature(), self._key(tracklet))
        if self.calibration is not None and tracklet.samples:
            vectors, qualities = zip(*tracklet.samples, strict=True)
            self.calibration.observe_tracklet(
                (tracklet.camera, tracklet.track_id), tracklet.camera, tracklet.first_time,
                tracklet.last_time, np.stack(vectors), np.array(qualities),
            )  # fmt: skip
            tracklet.samples.clear()
            self._label_by_geometry(tracklet)
        self._store_tracklet(tracklet, closed=True)
        out.append(self._event("left", tracklet, 0.0))
        return out

    def _label_by_geometry(self, tracklet: _Tracklet) -> None:
        """Teach the calibration the pairs the learned overlaps label: an ending tracklet and each one seen
        at once in an overlapping view, the same person where they walk at corresponding places and
        different people where they do not. These are cross-camera pairs, as hard as the matches the
        scores decide, where the halves of one track are easier."""
        if tracklet.feature_sum is None:
            return
        feature = tracklet.feature()
        same, different = [], []
        for other in [*self._open.values(), *self._closed.values()]:
            if other.camera == tracklet.camera or other is tracklet:
                continue
            vector = (
                other.feature()
                if isinstance(other, _Tracklet) and other.feature_sum is not None
                else (other.appearance if not isinstance(other, _Tracklet) else None)
            )
            if vector is None or not (
                other.first_time < tracklet.last_time and tracklet.first_time < other.last_time
            ):
                continue
            distance, model = self._geometric_distance(tracklet, other)
            if distance is None or model is None or model.confidence < 0.5:
                continue
            if distance <= model.tolerance / 2:
                same.append(float(feature @ vector))
            elif distance > model.tolerance:
                different.append(float(feature @ vector))
        if same:
            self.calibration.add_positive(same)
        if different:
            self.calibration.add_negative(different)

    # -- constraints -------------------------------------------------------------------------------

    def _allowed(self, tracklet: _Span, others: list[_Span]) -> bool:
        """Whether `tracklet` may join an identity whose other tracklets (this session) are `others`."""
        before = [s for s in others if s.last_time <= tracklet.first_time]
        after = [s for s in others if s.first_time >= tracklet.last_time]
        for other in others:
            if other.camera == tracklet.camera:
                if other.first_frame <= tracklet.last_frame and tracklet.first_frame <= other.last_frame:
                    return False  # two live tracks of one person in one camera
                if not self._rejoin_ok(tracklet, other, others):
                    return False
                continue
            simultaneous = other.first_time < tracklet.last_time and tracklet.first_time < other.last_time
            if simultaneous and not self._may_be_together(tracklet, other):
                return False  # in two cameras at once, where their views cannot both see one person
        if before:
            last = max(before, key=lambda s: s.last_time)
            if not self._transit_ok(last.camera, tracklet.camera, tracklet.first_time - last.last_time):
                return False
        if after:
            following = min(after, key=lambda s: s.first_time)
            if not self._transit_ok(
                tracklet.camera, following.camera, following.first_time - tracklet.last_time
            ):
                return False
        return True

    def _geometric_distance(self, tracklet: _Span, other: _Span) -> tuple[float | None, object | None]:
        """How far apart two tracklets of overlapping views are, in box heights, by the learned mapping."""
        model = self.geometry.model(tracklet.camera, other.camera)
        if model is None or tracklet.track_id < 0 or other.track_id < 0:
            return None, model
        first = self.geometry.trajectory(tracklet.camera, tracklet.track_id)
        second = self.geometry.trajectory(other.camera, other.track_id)
        if first is None or second is None:
            return None, model
        return model.distance(first, second, min_common=_GEOMETRY_MIN_COMMON), model

    def _may_be_together(self, tracklet: _Span, other: _Span) -> bool:
        """Whether one person may be seen at once in the two tracklets' cameras, where they are."""
        distance, model = self._geometric_distance(tracklet, other)
        if model is None:  # no learned overlap: only a declared one allows it
            return frozenset((other.camera, tracklet.camera)) in self.overlaps
        return distance is None or distance <= model.tolerance or model.confidence < 0.5

    def _seen_together(self, tracklet: _Span, others: list[_Span]) -> bool:
        """Whether the identity's tracklets in an overlapping view walk where this tracklet does."""
        found = False
        for other in others:
            if other.camera == tracklet.camera:
                continue
            distance, model = self._geometric_distance(tracklet, other)
            if distance is not None and model is not None:
                if distance > model.tolerance / 2:
                    return False
                found = True
        return found

    def _rejoin_ok(self, tracklet: _Span, other: _Span, others: list[_Span]) -> bool:
        """Whether two tracklets of one camera, one after the other, may be one person.

        A short break (at most `rejoin_max_gap_s`) is a track the tracker lost: the later one must start
        where the earlier one's motion leads, at a similar size. After a longer break the person must
        have been seen in another camera in between (left the view and came back); a person does not
        vanish in the middle of a view for long and reappear as someone the tracker never followed.
        """
        earlier, later = (other, tracklet) if other.last_time <= tracklet.first_time else (tracklet, other)
        gap = later.first_time - earlier.last_time
        if gap > self.rejoin_max_gap_s:
            return any(
                s.camera != tracklet.camera
                and s.last_time > earlier.last_time
                and s.first_time < later.first_time
                for s in others
            )
        miss = _continuation_miss(earlier, later)
        return miss is None or miss <= _MAX_CONTINUATION_MISS

    def _transit_ok(self, source: str, target: str, gap: float) -> bool:
        window = self.transitions.get((source, target)) if source != target else None
        return window is None or window[0] <= gap <= window[1]

    def _identity_spans(self, global_ids: list[int]) -> dict[int, list[_Span]]:
        """This session's tracklets of each identity: open ones from memory, closed ones from the store."""
        spans: dict[int, list[_Span]] = {gid: [] for gid in global_ids}
        for tracklet in self._open.values():
            if tracklet.global_id in spans:
                spans[tracklet.global_id].append(tracklet)
        for record in self.store.tracklets(session=self.session, global_ids=global_ids):
            key = (record.camera, record.track_id)
            if key not in self._open:
                span = self._closed.get(key) or _Span(
                    record.camera, record.first_frame, record.last_frame, record.first_time,
                    record.last_time,
                )  # fmt: skip
                spans[record.global_id].append(span)
        return spans

    # -- store -------------------------------------------------------------------------------------

    def _members(self, global_id: int, exclude: Key) -> int:
        """How many tracklets (any session) other than `exclude` belong to `global_id`."""
        return sum(r.key != exclude for r in self.store.tracklets(global_ids=[global_id]))

    def _store_tracklet(self, tracklet: _Tracklet, closed: bool) -> None:
        self.store.upsert_tracklet(
            self.session, tracklet.camera, tracklet.track_id, global_id=tracklet.global_id,
            first_frame=tracklet.first_frame, last_frame=tracklet.last_frame,
            first_time=tracklet.first_time, last_time=tracklet.last_time, closed=closed,
        )  # fmt: skip

    def _flush(self) -> None:
        for tracklet in self._open.values():
            if tracklet.global_id is not None:
                self._store_tracklet(tracklet, closed=False)
        self.store.commit()
        self._committed_at = time.monotonic()

    def _key(self, tracklet: _Tracklet) -> Key:
        return (self.session, tracklet.camera, tracklet.track_id)

    def _event(self, kind: str, tracklet: _Tracklet, score: float) -> IdentityEvent:
        assert tracklet.global_id is not None
        return IdentityEvent(
            kind, tracklet.global_id, tracklet.camera, tracklet.track_id, tracklet.last_frame,
            tracklet.last_time, score,
        )  # fmt: skip
