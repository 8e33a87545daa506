"""What links two tracklets or keeps them apart: time, place, motion, overlapping views and transit paths."""

from __future__ import annotations

import math
from collections.abc import Iterable

from pipeline.tracklet_spans import (
    Span,
    borders_touched,
    continuation_miss,
    duplicate_handover,
    live_together,
    sighting_of,
)

GEOMETRY_LLR = 4.0  # log-likelihood ratio of two tracklets at corresponding places in overlapping views
GEOMETRY_MIN_COMMON = 3  # moments seen together before geometry speaks
CONFIDENT_OVERLAP = 0.5  # a learned mapping less confident than this constrains nothing
# Views whose cameras ran together for less than this in a whole run could not show whether they overlap:
# when the run is re-solved at its end, a person may be in both at once there, and looks decide, between
# tracklets whose features average UNDECIDED_MIN_EMBEDDINGS crops or more (the calibration's own bar).
UNDECIDED_OVERLAP_S = 10.0
UNDECIDED_MIN_EMBEDDINGS = 4
CONTINUATION_LLR = 2.0  # log-likelihood ratio of a lost track restarting exactly where its motion led
# ... and of a track crossing the border back in soon after one walked out there: the one who left turns
# back less often than the next person walks in. These odds count as far as the calibration has learned
# how alike one person looks (times its `weight`): the fixed threshold that scores looks before that holds
# them already, as it holds the odds against any one identity. Replayed on the suite, held-out splits and
# the first 200 frames of each, -1 times the weight let people who walk in where another just left link
# on looks alone (a narrow view then scored under the raw tracker); -2 times it parts them, and still lets
# returns through in a run's first seconds, before anything is learned.
RETURN_LLR = -2.0
MAX_CONTINUATION_MISS = 1.0  # tolerances beyond which a later track cannot continue an earlier one
# Beyond this, the longer an identity goes unseen by every camera, the less likely its next sighting is
# the same person: most people who leave the cameras' sight do not come back, and those who do may come
# back at any time, so the odds of a return g seconds later fall as UNSEEN_GRACE_S / g ...
UNSEEN_GRACE_S = 10.0
# ... down to this log-likelihood ratio (about 75 s): someone back after an hour is no less likely the
# person who left than someone back after ten minutes, and strong looks must still be able to link them
UNSEEN_MAX_LLR = 2.0


class SiteEvidence:
    """The constraints and the evidence of the site the Matcher weighs, as a mixin of it.

    Uses the matcher's `geometry` (OverlapLearner), `calibration` (ScoreCalibration or None for a fixed
    threshold), `transit` (TransitModel or None), `overlaps`, `transitions`, `rejoin_max_gap_s`, its open
    and recently closed tracklets (`_open`, `_closed`), each camera's time span (`_camera_times`) and
    frame size (`_view_sizes`), and its prior odds against one identity where a caller hands them in.
    """

    def _allowed(self, tracklet: Span, others: list[Span], resolving: bool = False) -> bool:
        """Whether `tracklet` may join an identity whose other tracklets (this session) are `others`;
        `resolving`: in a refinement, with all the data so far (see `_may_be_together`)."""
        before = [s for s in others if s.last_time <= tracklet.first_time]
        after = [s for s in others if s.first_time >= tracklet.last_time]
        here = [s for s in others if s.camera == tracklet.camera]
        if any(live_together(s, tracklet) for s in here):
            return False  # two live tracks of one person in one camera
        # a break in one camera is judged between neighbours: the tracklets just before and after this one
        earlier = [s for s in here if s.first_time < tracklet.first_time]
        later = [s for s in here if s.first_time > tracklet.first_time]
        neighbours = [max(earlier, key=lambda s: s.last_time)] if earlier else []
        neighbours += [min(later, key=lambda s: s.first_time)] if later else []
        if not all(self._rejoin_ok(tracklet, s, others) for s in neighbours):
            return False
        for other in (s for s in others if s.camera != tracklet.camera):
            simultaneous = other.first_time < tracklet.last_time and tracklet.first_time < other.last_time
            if simultaneous and not self._may_be_together(tracklet, other, resolving):
                return False  # in two cameras at once, where their views cannot both see one person
        if before:
            last = max(before, key=lambda s: s.last_time)
            if not self._hand_over_ok(last, tracklet, others):
                return False
        if after:
            following = min(after, key=lambda s: s.first_time)
            if not self._hand_over_ok(tracklet, following, others):
                return False
        return True

    def _hand_over_ok(self, earlier: Span, later: Span, others: list[Span]) -> bool:
        """Whether one person may be seen last in `earlier` and next in `later`, of one identity whose
        other tracklets are `others`: a declared transition's window holds the gap between them, and the
        person did not vanish for longer than `rejoin_max_gap_s` between two views that overlap.

        Where two views overlap, one person walks from one into the other in sight of at least one of
        them. Someone gone from both for longer has left the ground they cover, and whoever appears there
        later is someone else, unless seen elsewhere in between: as after a long break in one view
        (`_rejoin_ok`).
        """
        gap = later.first_time - earlier.last_time
        if not self._transit_ok(earlier.camera, later.camera, gap):
            return False
        if gap <= self.rejoin_max_gap_s or earlier.camera == later.camera:
            return True  # a break in one view is `_rejoin_ok`'s to judge
        model = self.geometry.model(earlier.camera, later.camera)
        if model is None or model.confidence < CONFIDENT_OVERLAP:
            return True
        return _seen_between(earlier, later, others)

    def _geometric_distance(self, tracklet: Span, other: Span) -> tuple[float | None, object | None]:
        """How far apart two tracklets of overlapping views are, in box heights, by the learned mapping.

        Judged where both views saw their feet; where that was too seldom, on the bottoms of all their
        boxes, those cut by the bottom of a view included: a rougher measure, but the only one there is.
        """
        model = self.geometry.model(tracklet.camera, other.camera)
        if model is None or tracklet.track_id < 0 or other.track_id < 0:
            return None, model
        for bottoms in (False, True):
            first = self.geometry.trajectory(tracklet.camera, tracklet.track_id, bottoms=bottoms)
            second = self.geometry.trajectory(other.camera, other.track_id, bottoms=bottoms)
            if first is not None and second is not None:
                distance = model.distance(first, second, min_common=GEOMETRY_MIN_COMMON)
                if distance is not None:
                    return distance, model
        return None, model

    def _may_be_together(self, tracklet: Span, other: Span, resolving: bool = False) -> bool:
        """Whether one person may be seen at once in the two tracklets' cameras, where they are.

        Without a learned overlap only a declared one allows it; or, `resolving` (a refinement, with all
        its data), cameras that ran together too briefly (UNDECIDED_OVERLAP_S) to learn whether they do,
        for tracklets whose looks are well measured (UNDECIDED_MIN_EMBEDDINGS).
        """
        distance, model = self._geometric_distance(tracklet, other)
        if model is None:
            if frozenset((other.camera, tracklet.camera)) in self.overlaps:
                return True
            return (
                resolving
                and self._run_together(tracklet.camera, other.camera) < UNDECIDED_OVERLAP_S
                and min(tracklet.embeddings, other.embeddings) >= UNDECIDED_MIN_EMBEDDINGS
            )
        return distance is None or distance <= model.tolerance or model.confidence < CONFIDENT_OVERLAP

    def _run_together(self, a: str, b: str) -> float:
        """Seconds of data time during which both cameras have been streaming."""
        first_a, last_a = self._camera_times.get(a, (0.0, 0.0))
        first_b, last_b = self._camera_times.get(b, (0.0, 0.0))
        return max(min(last_a, last_b) - max(first_a, first_b), 0.0)

    def _seen_together(self, tracklet: Span, others: list[Span]) -> bool:
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

    def _rejoin_ok(self, tracklet: Span, other: Span, others: list[Span]) -> bool:
        """Whether two tracklets of one camera, one after the other, may be one person.

        A track born on the earlier one's person that took it over (`duplicate_handover`) is that person.
        A short break (at most `rejoin_max_gap_s`) is a track the tracker lost: the later one must start
        where the earlier one's motion leads, at a similar size. After a longer break the person must
        have been seen in another camera in between (left the view and came back); a person does not
        vanish in the middle of a view for long and reappear as someone the tracker never followed.
        """
        earlier, later = (other, tracklet) if other.first_time < tracklet.first_time else (tracklet, other)
        if duplicate_handover(earlier, later):
            return True
        gap = later.first_time - earlier.last_time
        if gap > self.rejoin_max_gap_s:
            return _seen_between(earlier, later, [s for s in others if s.camera != tracklet.camera])
        miss = self._continuation_miss(earlier, later)
        return miss is None or miss <= MAX_CONTINUATION_MISS

    def _walked_out(self, earlier: Span) -> bool:
        """Whether `earlier` ended walking out of its view: its last box on a border, heading across it.
        False where the camera's frame size is not known."""
        size = self._view_sizes.get(earlier.camera)
        if size is None or earlier.last_box is None:
            return False
        left, top, right, bottom = borders_touched(earlier.last_box, size)
        vx, vy = earlier.velocity
        return (left and vx < 0) or (right and vx > 0) or (top and vy < 0) or (bottom and vy > 0)

    def _on_border(self, later: Span) -> bool:
        """Whether `later` began on a border of its view (False where its box or frame size is unknown)."""
        size = self._view_sizes.get(later.camera)
        return (
            size is not None and later.first_box is not None and any(borders_touched(later.first_box, size))
        )

    def _continuation_miss(self, earlier: Span, later: Span) -> float | None:
        """`continuation_miss` of two tracklets of one camera, where a crossing may have swapped people.

        If the earlier tracklet met another track shortly before it ended, its person may have gone on
        in that track, and the later one may continue that track's motion instead; likewise at the later
        one's start. The best fit among these counts, so that motion leaves the choice to appearance.
        """
        miss = continuation_miss(earlier, later)
        if miss is None:
            return None
        ends = [
            earlier,
            *(s for s in self._camera_partners(earlier, at_end=True) if s.last_time <= later.first_time),
        ]
        starts = [
            later,
            *(s for s in self._camera_partners(later, at_end=False) if s.first_time >= earlier.last_time),
        ]
        for end in ends:
            for start in starts:
                if end is not start and (alternative := continuation_miss(end, start)) is not None:
                    miss = min(miss, alternative)
        return miss

    def _camera_partners(self, span: Span, at_end: bool) -> list[Span]:
        found = ((span.camera, t) for t in span.partners(at_end))
        return [s for key in found if (s := self._open.get(key) or self._closed.get(key)) is not None]

    def _transit_ok(self, source: str, target: str, gap: float) -> bool:
        window = self.transitions.get((source, target)) if source != target else None
        return window is None or window[0] <= gap <= window[1]

    def _continuation_llr(self, a: Span, b: Span, prior_odds_against: float) -> float | None:
        """Evidence that the later of two tracklets of one camera continues the earlier one's motion.

        A lost track restarted where the person was heading, soon after, is a likely continuation: the
        prior odds against any one identity (`prior_odds_against`, which the appearance score took off)
        do not apply to it, and the closer the fit, the more it adds.

        A track that walked out of the view (`_walked_out`) led where its camera does not see. A person
        who comes back is first seen crossing the border once more, where the next person to walk in is
        seen just as well: motion cannot tell them apart, and the looks decide, among the few who just
        left there (so the prior odds against any one identity do not apply), against the odds of a
        return (RETURN_LLR, as far as the calibration has learned). A track that begins clear of the
        border is someone who was in the view already (out of an occlusion, or a crowd): no continuation.

        None where the pair is not a plausible continuation, or scores are a fixed threshold.
        """
        if self.calibration is None:
            return None
        earlier, later = (a, b) if a.first_time < b.first_time else (b, a)
        if later.first_time - earlier.last_time > self.rejoin_max_gap_s:
            return None
        walked_out = self._walked_out(earlier)
        if walked_out and not self._on_border(later):
            return None
        miss = self._continuation_miss(earlier, later)
        if miss is None or miss > MAX_CONTINUATION_MISS:
            return None
        if walked_out:
            return prior_odds_against + RETURN_LLR * self.calibration.weight
        return prior_odds_against + CONTINUATION_LLR * (1.0 - miss)

    def _continuation_evidence(self, tracklet: Span, others: list[Span], prior_odds_against: float) -> float:
        """`_continuation_llr` of `tracklet` after the identity's latest earlier tracklet in its camera."""
        before = [s for s in others if s.camera == tracklet.camera and s.first_time < tracklet.first_time]
        if not before:
            return 0.0
        llr = self._continuation_llr(max(before, key=lambda s: s.last_time), tracklet, prior_odds_against)
        return 0.0 if llr is None else llr

    def _unseen_llr(self, spans: Iterable[Span]) -> float:
        """Log-likelihood ratio against one identity whose tracklets are `spans`, for the time they leave
        it unseen by every camera: each gap of g > UNSEEN_GRACE_S seconds between the end of a sighting
        and the next one's start costs log(g / UNSEEN_GRACE_S), at most UNSEEN_MAX_LLR, unless a
        declared transition between the two cameras allows it (people take that long on their way). 0
        where scores are a fixed threshold."""
        ordered = sorted(spans, key=lambda s: s.first_time)
        if self.calibration is None or not ordered:
            return 0.0
        llr = 0.0
        latest = ordered[0]  # of the sightings begun so far, the one that ended last
        for span in ordered[1:]:
            gap = span.first_time - latest.last_time
            pair = (latest.camera, span.camera)
            declared = pair in self.transitions and self._transit_ok(*pair, gap)
            if gap > UNSEEN_GRACE_S and not declared:
                llr -= min(math.log(gap / UNSEEN_GRACE_S), UNSEEN_MAX_LLR)
            latest = max(latest, span, key=lambda s: s.last_time)
        return llr

    def _unseen_evidence(self, tracklet: Span, others: list[Span]) -> float:
        """What `tracklet` joining the identity whose other tracklets are `others` adds to its
        `_unseen_llr` (a gap it fills earns nothing)."""
        return min(self._unseen_llr([*others, tracklet]) - self._unseen_llr(others), 0.0)

    def _transit_llr(self, a: Span, b: Span) -> float:
        """`TransitModel.llr` of two tracklets of two cameras, one after the other (0: nothing learned)."""
        if self.transit is None or self.calibration is None or self.geometry.model(a.camera, b.camera):
            return 0.0  # overlapping views: geometry speaks for their hand-overs
        leaving, entering = (a, b) if a.last_time <= b.first_time else (b, a)
        first, second = sighting_of(leaving, -1), sighting_of(entering, -1)
        return 0.0 if first is None or second is None else self.transit.llr(first, second)

    def _transit_evidence(self, tracklet: Span, others: list[Span]) -> float:
        """`_transit_llr` of `tracklet` after the identity's latest sighting in another camera before it."""
        before = [s for s in others if s.camera != tracklet.camera and s.last_time <= tracklet.first_time]
        return self._transit_llr(max(before, key=lambda s: s.last_time), tracklet) if before else 0.0


def _seen_between(earlier: Span, later: Span, spans: list[Span]) -> bool:
    """Whether any of `spans` saw its person between the end of `earlier` and the start of `later`."""
    return any(s.last_time > earlier.last_time and s.first_time < later.first_time for s in spans)
