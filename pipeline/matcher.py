"""Matcher: links the local tracks of all cameras under global identities, jointly and under constraints."""

from __future__ import annotations

import bisect
import logging
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping

import numpy as np
from scipy.optimize import linear_sum_assignment

from pipeline.calibration import ScoreCalibration
from pipeline.geometry import OverlapLearner
from pipeline.messages import Assignment, CameraFinished, Embedding, IdentityEvent, TrackEnded, Tracks
from pipeline.refine import Output, Refinement
from pipeline.site_evidence import GEOMETRY_LLR, SiteEvidence
from pipeline.store import EmbeddingStore, Key
from pipeline.topology import TOPOLOGY_VERSION
from pipeline.track_switches import switch_points
from pipeline.tracklet_spans import DUPLICATE_IOU, OpenTracklet, Span, box_ious, close_pairs, part_at
from pipeline.transit import TransitModel

logger = logging.getLogger(__name__)

_FORBIDDEN = 1e6  # cost of a pair the constraints rule out
_CLOSED_MEMORY = 4096  # recently closed tracklets remembered, so that late embeddings are ignored
_CALIBRATION_SAMPLES = 32  # embeddings a tracklet keeps for the score calibration
DEFAULT_THRESHOLD = 0.85  # where the calibration starts, before the site has labelled any pairs
# How far back the people a new tracklet may be are counted for the prior odds against each (seconds)
POPULATION_WINDOW_S = 120.0
# The most one appearance comparison may say either way. The calibration's positives are halves of one
# track, more alike than two sightings of a person far apart, so its ratio overstates high similarities;
# kept below GEOMETRY_LLR, a look-alike never outweighs where the overlapping views place a person.
APPEARANCE_MAX_LLR = 3.0


class Matcher(SiteEvidence, Refinement):
    """Assigns a global identity to every (camera, local track) from appearance, topology and time.

    Undecided tracklets wait for `min_embeddings` embeddings (or their end), then all tracklets waiting
    at that moment are assigned together (Hungarian) to identities found in the store's gallery, among
    those the constraints allow, or to a new identity where no candidate's evidence is strong enough. An
    open tracklet is re-decided every `revise_every` new embeddings.

    Evidence: with `threshold=None` a cosine similarity becomes a log-likelihood ratio of "same person",
    learned per site and model from the pairs the constraints label for free (see `ScoreCalibration`),
    starting from a prior around DEFAULT_THRESHOLD; a fixed `threshold` overrides it (1.0 links nothing).

    Constraints: an identity holds at most one tracklet at a time in one camera (but for a track born on
    its person's box that takes over within DUPLICATE_S; the exports then keep one box a frame); it is in
    one camera at a time unless the pair is in `overlaps`; `transitions[(a, b)] = (min_s, max_s)` bounds
    the gap between its last sighting in camera a and its first in camera b. Inside one camera, a
    tracklet joins an identity's earlier one only as the continuation of a lost track (within
    `rejoin_max_gap_s`, where its motion, or that of a track it met just before, leads, at a similar
    size; not where the earlier one walked out of the frame and the later one began inside it, clear of
    the border) or after the person was seen in another camera in between. Likewise, one person goes
    unseen between two views that a learned mapping says overlap for at most `rejoin_max_gap_s`, unless
    seen elsewhere in between.
    Constraints compare tracklets of this session only: timestamps of earlier sessions are not on the
    same clock.

    Calibrated, a track whose looks change for good when it ends (`switch_points`: its tracker went on
    with someone else) is cut there into tracklets of their own (`OpenTracklet.split`).

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
            else ScoreCalibration(prior_threshold=DEFAULT_THRESHOLD, max_llr=APPEARANCE_MAX_LLR, model=model)
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
        self.view_offsets: dict[tuple[str, str], dict] = {}  # what refinements measured (`_view_offsets`)
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
        self._open: dict[tuple[str, int], OpenTracklet] = {}
        self._due: set[tuple[str, int]] = set()  # tracklets waiting for a (re)decision
        self._closed: OrderedDict[tuple[str, int], Span] = OrderedDict()  # their spans, for constraints
        self._early: OrderedDict[tuple[str, int], list[Embedding]] = OrderedDict()  # before their track
        # tracks cut where they switched people: (camera, track id) -> (first frame, tracklet id) per part
        self._cut: OrderedDict[tuple[str, int], list[tuple[int, int]]] = OrderedDict()
        self._camera_times: dict[str, list[float]] = {}  # camera -> [first, last] frame time seen
        self._view_sizes: dict[str, tuple[int, int]] = {}  # camera -> (width, height) of its frames
        self._people_now: tuple[int, float] | None = None  # (second of data time, people about then)

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
        """What the matcher learned of the site: overlapping views with their mappings, the score model
        and how much less alike people look across two views (`view_offsets`)."""
        return {
            "schema_version": TOPOLOGY_VERSION,
            "overlaps": self.geometry.to_dict(),
            "transit": None if self.transit is None else self.transit.to_dict(),
            "score_calibration": None if self.calibration is None else self.calibration.to_dict(),
            "view_offsets": [self.view_offsets[pair] for pair in sorted(self.view_offsets)],
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

    def finish(self, *, refine: bool = True) -> list[Output]:
        """Learn the overlaps once more from all the data, close every open tracklet, decide what is left,
        re-solve with all evidence, make it durable.

        `refine=False` skips the re-solve, for a caller that decides the run again itself.
        """
        self.geometry.finish()
        for tracklet in self._open.values():
            tracklet.closing = True
        out = self._decide_and_close()
        if refine and self.refine_at_end:
            out.extend(self._refine_with_transit())
        self._flush()
        return out

    def _on_tracks(self, tracks: Tracks) -> None:
        times = self._camera_times.setdefault(tracks.camera_id, [tracks.timestamp, tracks.timestamp])
        times[0], times[1] = min(times[0], tracks.timestamp), max(times[1], tracks.timestamp)
        if tracks.image_size is not None:
            self._view_sizes[tracks.camera_id] = tracks.image_size
        self.geometry.add_boxes(
            tracks.camera_id, tracks.timestamp, tracks.track_id, tracks.xyxy, tracks.image_size
        )
        present = []
        for xyxy, track_id in zip(tracks.xyxy, tracks.track_id, strict=True):
            key = (tracks.camera_id, int(track_id))
            tracklet = self._open.get(key)
            if tracklet is None:
                if key in self._closed:
                    logger.warning("camera %s: track %d reappeared after it ended", *key)
                tracklet = OpenTracklet(
                    tracks.camera_id, tracks.frame_index, tracks.frame_index, tracks.timestamp,
                    tracks.timestamp, track_id=key[1], born_on=self._doubled(tracks, xyxy),
                )  # fmt: skip
                self._open[key] = tracklet
            x1, y1, x2, y2 = (float(v) for v in xyxy)
            tracklet.moved_to((x1, y1, x2, y2), tracks.timestamp, tracks.frame_index)
            tracklet.last_frame = max(tracklet.last_frame, tracks.frame_index)
            tracklet.last_time = max(tracklet.last_time, tracks.timestamp)
            present.append(tracklet)
            for early in self._early.pop(key, []):
                self._on_embedding(early)
        for i, j in close_pairs(tracks.xyxy):
            present[i].met(present[j].track_id, tracks.timestamp)
            present[j].met(present[i].track_id, tracks.timestamp)

    def _doubled(self, tracks: Tracks, box: np.ndarray) -> int | None:
        """The older open track whose box a new track's first box doubles (IoU >= DUPLICATE_IOU), if any."""
        older = [
            (iou, int(track_id))
            for iou, track_id in zip(box_ious(box, tracks.xyxy), tracks.track_id, strict=True)
            if iou >= DUPLICATE_IOU and (tracks.camera_id, int(track_id)) in self._open
        ]
        return max(older)[1] if older else None

    def _on_embedding(self, emb: Embedding) -> None:
        key = (emb.camera_id, int(emb.track_id))
        tracklet = self._open.get(key)
        if tracklet is None:
            self._keep_unplaced(key, emb)
            return
        tracklet.add_embedding(emb.frame_index, emb.vector, float(emb.quality), _CALIBRATION_SAMPLES)
        tracklet.since_decision += 1
        if tracklet.global_id is None:
            if tracklet.embeddings >= self.min_embeddings:
                self._due.add(key)
        elif tracklet.since_decision >= self.revise_every:
            self._due.add(key)

    def _keep_unplaced(self, key: tuple[str, int], emb: Embedding) -> None:
        """An embedding whose track is not open: it arrived before the track's boxes (kept until they
        come), or after the track ended (it joins the feature of the ended tracklet, or of the part of
        it its frame is in, for the refinement)."""
        if key in self._cut:
            key = (key[0], part_at(self._cut[key], emb.frame_index))
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
            first, *later = self._parts(self._open.pop(key))
            out.extend(self._close(first))
            if later:  # the people the track switched to: each part decided as a tracklet of its own
                out.extend(self._decide(later))
                for part in later:
                    out.extend(self._close(part))
        return out

    def _parts(self, tracklet: OpenTracklet) -> list[OpenTracklet]:
        """The tracklet, or its parts where its track switched people (`switch_points`, calibrated).

        A part begins at the first box midway between the last embedding of the part before and its
        own first, among the boxes the tracklet remembers; what the overlap learner holds of the track
        is cut likewise.
        """
        if self.calibration is None or not tracklet.history:
            return [tracklet]
        # in time order: embeddings may have arrived out of it
        frames, vectors, qualities = zip(*sorted(tracklet.history, key=lambda e: e[0]), strict=True)
        path = [frame for frame, _, _ in tracklet.path]
        starts = []
        for k in switch_points(np.stack(vectors), np.array(qualities), self.calibration.llr):
            i = bisect.bisect_left(path, (frames[k - 1] + frames[k] + 1) // 2)
            if 0 < i < len(path) and path[i] <= frames[k]:
                starts.append(path[i])
        if not starts:
            return [tracklet]
        parts = tracklet.split(starts, _CALIBRATION_SAMPLES)
        for part in reversed(parts[1:]):
            self.geometry.split_track(tracklet.camera, tracklet.track_id, part.first_time, part.track_id)
        self._cut[tracklet.camera, tracklet.track_id] = [(p.first_frame, p.track_id) for p in parts]
        while len(self._cut) > _CLOSED_MEMORY:
            self._cut.popitem(last=False)
        logger.debug(
            "camera %s: track %d switched people at frames %s", tracklet.camera, tracklet.track_id, starts
        )
        return parts

    def _decide(self, rows: list[OpenTracklet]) -> list[Output]:
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
                score += self._continuation_evidence(tracklet, others, against)
                score += self._transit_evidence(tracklet, others)
                score += self._unseen_evidence(tracklet, others)
                if score >= 0 and self._allowed(tracklet, others):
                    cost[i, column[gid]] = -score
        if self.calibration is not None:  # a fixed threshold leaves decisions to appearance alone
            for gid, j in column.items():
                for i, tracklet in enumerate(rows):
                    others = [s for s in spans[gid] if s is not tracklet]
                    # tracklets at corresponding places in overlapping views: the same person, whatever
                    # appearance says (different people in similar clothes score alike)
                    if self._seen_together(tracklet, others) and self._allowed(tracklet, others):
                        cost[i, j] = min(cost[i, j], -GEOMETRY_LLR)
        row_index, col_index = linear_sum_assignment(cost)
        out: list[Output] = []
        for i, j in zip(row_index, col_index, strict=True):
            if j < n_ids and cost[i, j] < _FORBIDDEN:
                out.extend(self._assign(rows[i], candidates[j], found[i][candidates[j]]))
            else:
                out.extend(self._assign(rows[i], None, 0.0))
        return out

    def _prior_odds_against(self, at: np.ndarray | None = None) -> float | np.ndarray:
        """Calibrated: the prior log-odds against any one identity (one of N people is this one),
        applied as far as the calibration has learned from this site. Not used with a fixed threshold.

        N counts the people about (`_people_about`), not everyone the store ever held: that count grows
        with the run's length, until after an hour of a busy stream no likeness links two cameras and a
        refinement at the end undoes every link that looks made. Without `at`, about now (the newest
        frame); with data times `at` (T,), about each, in hindsight (a refinement, knowing what came
        after): an array (T,).
        """
        if at is not None:
            if self.calibration is None:
                return np.zeros(len(at))
            people = self._people_about(np.asarray(at, np.float64), ahead=POPULATION_WINDOW_S)
            return self.calibration.weight * np.log(np.maximum(people, 2.0))
        if self.calibration is None:
            return 0.0
        now = self._data_time()
        if self._people_now is None or self._people_now[0] != int(now):  # once a second of video
            self._people_now = (int(now), float(self._people_about(np.array([now]), ahead=0.0)[0]))
        return self.calibration.weight * float(np.log(max(self._people_now[1], 2.0)))

    def _people_about(self, times: np.ndarray, ahead: float) -> np.ndarray:
        """Per data time (T,), this session's identities seen from POPULATION_WINDOW_S before it to
        `ahead` seconds after it."""
        spans = [s for s in (*self._open.values(), *self._closed.values()) if s.global_id is not None]
        ids = np.array([s.global_id for s in spans], np.int64)
        first = np.array([s.first_time for s in spans], np.float64)
        last = np.array([s.last_time for s in spans], np.float64)
        about = (first <= times[:, None] + ahead) & (last >= times[:, None] - POPULATION_WINDOW_S)
        return np.array([len(np.unique(ids[row])) for row in about], np.float64)

    def _data_time(self) -> float:
        """The newest frame time of any camera (0 before any)."""
        return max((last for _, last in self._camera_times.values()), default=0.0)

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

    def _assign(self, tracklet: OpenTracklet, global_id: int | None, score: float) -> list[Output]:
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

    def _close(self, tracklet: OpenTracklet) -> list[Output]:
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
        self._closed[tracklet.camera, tracklet.track_id] = Span(
            tracklet.camera, tracklet.first_frame, tracklet.last_frame, tracklet.first_time,
            tracklet.last_time, tracklet.first_box, tracklet.last_box, tracklet.velocity,
            tracklet.track_id, None if tracklet.feature_sum is None else tracklet.feature(),
            tracklet.embeddings, tracklet.global_id, tracklet.encounters, tracklet.born_on,
            tracklet.typical_end_height(),
        )  # fmt: skip
        while len(self._closed) > _CLOSED_MEMORY:
            self._closed.popitem(last=False)
        return out

    def _label_by_geometry(self, tracklet: OpenTracklet) -> None:
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
            if not (other.first_time < tracklet.last_time and tracklet.first_time < other.last_time):
                continue  # not seen at once
            if isinstance(other, OpenTracklet):
                vector = None if other.feature_sum is None else other.feature()
            else:
                vector = other.appearance
            if vector is None:
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

    def _identity_spans(self, global_ids: list[int]) -> dict[int, list[Span]]:
        """This session's tracklets of each identity: open ones from memory, closed ones from the store."""
        spans: dict[int, list[Span]] = {gid: [] for gid in global_ids}
        for tracklet in self._open.values():
            if tracklet.global_id in spans:
                spans[tracklet.global_id].append(tracklet)
        for record in self.store.tracklets(session=self.session, global_ids=global_ids):
            key = (record.camera, record.track_id)
            if key not in self._open:
                span = self._closed.get(key) or Span(
                    record.camera, record.first_frame, record.last_frame, record.first_time,
                    record.last_time,
                )  # fmt: skip
                spans[record.global_id].append(span)
        return spans

    # -- store -------------------------------------------------------------------------------------

    def _members(self, global_id: int, exclude: Key) -> int:
        """How many tracklets (any session) other than `exclude` belong to `global_id`."""
        return sum(r.key != exclude for r in self.store.tracklets(global_ids=[global_id]))

    def _store_tracklet(self, tracklet: OpenTracklet, closed: bool) -> None:
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

    def _key(self, tracklet: OpenTracklet) -> Key:
        return (self.session, tracklet.camera, tracklet.track_id)

    def _event(self, kind: str, tracklet: OpenTracklet, score: float) -> IdentityEvent:
        assert tracklet.global_id is not None
        return IdentityEvent(
            kind, tracklet.global_id, tracklet.camera, tracklet.track_id, tracklet.last_frame,
            tracklet.last_time, score,
        )  # fmt: skip
