"""Re-solving identities with all the evidence: constrained average-linkage clustering of tracklets."""

from __future__ import annotations

import functools
import itertools
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.messages import Assignment, IdentityEvent
from pipeline.site_evidence import GEOMETRY_LLR
from pipeline.tracklet_spans import PART_STRIDE, Span, live_together, sighting_of
from pipeline.transit import learn_transit

logger = logging.getLogger(__name__)

Output = Assignment | IdentityEvent
REFINE_MAX = 1000  # closed tracklets a refinement re-solves at most (the most recent)
VIEW_OFFSET_MIN_PAIRS = 20  # pairs of two people, within one view and across two, to measure their offset
# The log-odds by which the merge a freeing allows must outweigh the freed members' link with their
# cluster (about 7 to 1). On the replayed suite the freeings under it (1.6, 0.95) lost IDF1, and those
# over it gained (6.4 on pets-three: one person's clusters that one switching track held apart).
FREEING_MARGIN = 2.0
MAX_FREEINGS = 5  # freeings per clustering, at most (each one clusters once more)
# The log-odds (about 7 to 1) by which the parts of an online identity, clustered afresh, must weigh against
# one another for it to come apart into them. Online, a tracklet may join an identity on a likeness in its
# own view, which the refinement does not count (alike people in one view score alike), and later ones
# follow it: in pets-gap, with crops all along each track, two people's parts weigh -2.4 and -2.9. At 1,
# correct online links of brief tracks came apart in a held-out split (-1.5).
APART_LLR = 2.0
# The time over which a person's likeness drifts (pose, light, where in the view): on PETS09-S2L1's
# ground-truth crops one person's segments score 0.91 within 5 s of each other and 0.82-0.86 from 5 s on,
# while two people score 0.55 at any distance in time. So in a cluster's mean, a pair of looks counts
# 1 / (1 + gap / LIKENESS_DRIFT_S), the gap the seconds between the two sightings: a hand-over is judged
# by how its person looked just before more than by how they looked a minute earlier. Replayed (96 cells):
# at 2 s the full PETS view lost 0.034; at 5 s and 10 s no cell lost more than 0.005, and at 5 s three
# narrow views with gaps between them gained the most (0.640 -> 0.705).
LIKENESS_DRIFT_S = 5.0


@dataclass(frozen=True)
class _Looks:
    """The appearance scores of n tracklets as a cluster's mean weighs them: `counts` (n, n) the share
    of one full comparison each pair counts for (0 where it has no score) and `sums` (n, n) its score
    times that share."""

    counts: np.ndarray
    sums: np.ndarray

    @classmethod
    def of(cls, scores: np.ndarray, weights: np.ndarray) -> _Looks:
        known = ~np.isnan(scores)
        return cls(np.where(known, weights, 0.0), np.where(known, scores * weights, 0.0))

    def block(self, members: list[int]) -> _Looks:
        """The tables among `members` only, in their order."""
        inside = np.ix_(members, members)
        return _Looks(self.counts[inside], self.sums[inside])


def cluster_tracklets(
    scores: np.ndarray,
    forbidden: np.ndarray,
    *,
    evidence: np.ndarray | None = None,
    initial: Sequence[int] | None = None,
    allowed: Callable[[Sequence[int]], bool] = lambda members: True,
    cost: Callable[[Sequence[int]], float] | None = None,
    attachments: np.ndarray | None = None,
    weights: np.ndarray | None = None,
    min_score: float = 0.0,
) -> np.ndarray:
    """Cluster n tracklets by average linkage over pairwise evidence, never across a forbidden pair.

    Two kinds of evidence weigh a merge. `scores` compare looks: every pair of two clusters compares the
    same two people's clothes, so the comparisons repeat one observation, and the clusters' score is
    their mean. `evidence` is what each pair observes on its own (tracklets walking at corresponding
    places in overlapping views, a lost track restarting where its motion led): it adds up.

    scores: (n, n) symmetric, how strongly each pair favours "same person" over "different" (> 0 links);
    nan where the pair has no evidence either way (it neither helps nor hurts a merge). evidence: (n, n)
    symmetric log-likelihood ratios, 0 where there is none (default: none). forbidden: (n, n) bool, pairs
    that cannot be one person (seen at once where one person cannot be). Two clusters merge, best first,
    while their mean score plus their summed evidence is above `min_score`, none of their pairs is
    forbidden and `allowed(members)` accepts the merged cluster's members (constraints that depend on the
    whole cluster, such as transit times). `cost(members)`, where given, is evidence against a whole
    cluster (a log-likelihood ratio <= 0, such as the time its person goes unseen): a merge weighs what
    it adds to its two clusters' costs (nothing where it takes some away).

    Clustering starts from the groups of `initial` (labels (n,), e.g. the decisions made online; default
    every tracklet alone), after detaching each member whose link with the rest of its group, weighed as
    above, is not above `min_score` (worst first), or that is forbidden with one of them. A group whose
    members, clustered afresh among themselves, fall into parts of which two weigh under -APART_LLR as a
    merge starts as those parts.

    One member can hold two clusters of one person apart: a track that switched people half way joins the
    first person's cluster on its first part, while its second part is where that person's later cluster
    cannot be. So once no merge is left, the members of a cluster that are forbidden with another one
    leave it (each alone) where the merge of the rest with the other cluster outweighs their link with
    the rest by FREEING_MARGIN, the best such freeing first; clustering then goes on from there, at most
    MAX_FREEINGS times.

    `attachments` (n, n) symmetric, where given, is evidence between tracklets of which one has no looks
    (no score with any other, such as a track lost before its first crop). Once clustering is done, these
    links carry clusters into others, strongest first, under the same constraints and weighed as a merge
    with the link as evidence: a cluster without looks joins the one its link leads to, a cluster with
    looks only where looks compare it with the other. So a tracklet without looks never joins two
    clusters that nothing else compares.

    `weights` (n, n) symmetric, > 0, where given, is the share of one full comparison each pair of looks
    counts for in the mean of two clusters that may merge (default 1; clusters whose pairs add up to less
    than one comparison are weighed as if the rest were undecided, score 0). The check of the initial
    groups and the attachments read every look in full: they keep apart what looks speak against.

    Returns labels (n,) int, 0..k-1 in order of each cluster's first member.
    """
    scores = np.asarray(scores, np.float64)
    n = len(scores)
    additive = np.zeros((n, n)) if evidence is None else np.asarray(evidence, np.float64)
    shares = np.ones((n, n)) if weights is None else np.asarray(weights, np.float64)
    if any(np.shape(table) != (n, n) for table in (scores, forbidden, additive, shares)):
        raise ValueError(f"scores, evidence, weights and forbidden must all have shape ({n}, {n})")
    if not (shares > 0).all():
        raise ValueError("weights must be > 0")
    looks = _Looks.of(scores, shares)
    # Shares pull what looks speak against towards undecided. Replayed with them in the check of the
    # initial groups, pets-gap's two people's parts weighed over -2 and stayed one identity; in the
    # attachments, a crop-less track joined two clusters that looks held apart (a held-out relay's left
    # camera fell under the raw tracker).
    in_full = _Looks.of(scores, np.ones((n, n)))
    forbidden = np.asarray(forbidden, bool)
    forbidden = forbidden | forbidden.T
    remembered = None if cost is None else functools.cache(cost)  # called with sorted member tuples

    def added_cost(first: list[int], second: list[int]) -> float:  # what uniting two clusters adds (<= 0)
        if remembered is None:
            return 0.0
        whole, *parts = (remembered(tuple(sorted(g))) for g in (first + second, first, second))
        return min(whole - sum(parts), 0.0)

    def groups(labels: Sequence[int] | None) -> list[list[int]]:
        return _consistent_groups(in_full, additive, forbidden, labels, allowed, min_score, added_cost)

    labels = _agglomerate(looks, additive, forbidden, groups(initial), allowed, added_cost, min_score)
    for _ in range(MAX_FREEINGS):
        freed = _freeing(looks, additive, forbidden, labels, allowed, added_cost, min_score)
        if freed is None:
            break
        labels = _agglomerate(looks, additive, forbidden, groups(freed), allowed, added_cost, min_score)
    if attachments is not None:
        labels = _attach(
            labels, in_full, additive, np.asarray(attachments), forbidden, allowed, added_cost, min_score
        )
    return labels


def _attach(
    labels: np.ndarray,
    looks: _Looks,
    additive: np.ndarray,
    attachments: np.ndarray,
    forbidden: np.ndarray,
    allowed: Callable[[Sequence[int]], bool],
    added_cost: Callable[[list[int], list[int]], float],
    min_score: float,
) -> np.ndarray:
    """`labels` (n,) once `attachments` have carried clusters into others, strongest first (see
    `cluster_tracklets`)."""
    labels = labels.copy()
    known = looks.counts > 0
    looked = known.any(axis=1)
    rows, cols = np.nonzero(attachments > min_score)
    for i, j in sorted(zip(rows.tolist(), cols.tolist(), strict=True), key=lambda p: -attachments[p]):
        moving = np.flatnonzero(labels == labels[i]).tolist()
        target = np.flatnonzero(labels == labels[j]).tolist()
        if labels[i] == labels[j] or forbidden[np.ix_(moving, target)].any():
            continue
        if not looked[moving].any():
            link = attachments[i, j] + added_cost(moving, target)
        elif known[np.ix_(moving, target)].any():  # compared on looks with the other cluster
            link = attachments[i, j] + _merge_value(moving, target, looks, additive, added_cost)
        else:
            continue
        if link > min_score and allowed(sorted(moving + target)):
            labels[moving] = labels[j]
    values, first = np.unique(labels, return_index=True)
    rank = np.argsort(np.argsort(first))  # each label's rank by its first member
    return rank[np.searchsorted(values, labels)]


def _agglomerate(
    looks: _Looks,
    additive: np.ndarray,
    forbidden: np.ndarray,
    groups: list[list[int]],
    allowed: Callable[[Sequence[int]], bool],
    added_cost: Callable[[list[int], list[int]], float],
    min_score: float,
) -> np.ndarray:
    """`cluster_tracklets` from `groups` (each sorted; the others alone) until no merge is left, without
    freeings."""
    n = len(additive)
    total = looks.sums.copy()  # (k, k) sums of weighted pair scores between clusters
    count = looks.counts.copy()  # (k, k) weights of the pairs with scores between clusters
    added = additive.copy()  # (k, k) sums of the evidence between clusters
    weighed = (count > 0) | (additive != 0)  # (k, k) whether anything speaks for or against a merge
    blocked = forbidden | np.eye(n, dtype=bool)
    members: list[list[int]] = [[i] for i in range(n)]
    alive = np.ones(n, bool)

    def merge(a: int, b: int) -> None:  # b joins a: its sums, counts and vetoes become a's
        for table in (total, count, added, weighed, blocked):
            table[a, :] += table[b, :]
            table[:, a] = table[a, :]
        blocked[a, a] = True
        members[a].extend(members[b])
        members[b] = []
        alive[b] = False

    def best_merge() -> tuple[int, int] | None:
        linkage = np.where(weighed & ~blocked, _link(total, count, added), -np.inf)
        linkage[~alive, :] = -np.inf
        linkage[:, ~alive] = -np.inf
        candidates = np.flatnonzero(linkage > min_score)
        best, best_value = None, min_score
        for flat in candidates[np.argsort(-linkage.flat[candidates], kind="stable")]:
            a, b = divmod(int(flat), n)
            if linkage[a, b] <= best_value:
                break  # a cost only lowers a merge: none further down can do better
            value = linkage[a, b] + added_cost(members[a], members[b])
            if value > best_value:
                best, best_value = (a, b), value
        return best

    for group in groups:
        for b in group[1:]:
            merge(group[0], b)
    while (pair := best_merge()) is not None:
        a, b = pair
        if not allowed(sorted(members[a] + members[b])):
            blocked[a, b] = blocked[b, a] = True
            continue
        merge(a, b)
    labels = np.empty(n, np.int64)
    for label, group in enumerate(sorted((sorted(m) for m in members if m), key=lambda m: m[0])):
        labels[group] = label
    return labels


def _freeing(
    looks: _Looks,
    additive: np.ndarray,
    forbidden: np.ndarray,
    labels: np.ndarray,
    allowed: Callable[[Sequence[int]], bool],
    added_cost: Callable[[list[int], list[int]], float],
    min_score: float,
) -> np.ndarray | None:
    """`labels` (n,) with the best freeing made (see `cluster_tracklets`), the freed members each alone
    and the rest of their cluster joined to the other one; None where none is worth FREEING_MARGIN."""

    def link(first: list[int], second: list[int]) -> float:
        return _merge_value(first, second, looks, additive, added_cost)

    rows, cols = np.nonzero(np.triu(forbidden) & (labels[:, None] != labels[None, :]))
    apart = {(min(a, b), max(a, b)) for a, b in zip(labels[rows].tolist(), labels[cols].tolist())}
    best, best_value = None, FREEING_MARGIN
    for a, b in sorted(apart):  # clusters that a forbidden pair holds apart
        first, second = np.flatnonzero(labels == a).tolist(), np.flatnonzero(labels == b).tolist()
        clash = forbidden[np.ix_(first, second)]
        for group, other, held in ((first, second, clash.any(axis=1)), (second, first, clash.any(axis=0))):
            rest = [m for m, c in zip(group, held, strict=True) if not c]
            if not rest or (gain := link(rest, other)) <= min_score:
                continue
            freed = [m for m, c in zip(group, held, strict=True) if c]
            value = gain - max(link(freed, rest), 0.0)
            if value > best_value and allowed(sorted(rest + other)):
                best, best_value = (freed, rest, other), value
    if best is None:
        return None
    freed, rest, other = best
    relabelled = labels.copy()
    relabelled[rest] = labels[other[0]]
    relabelled[freed] = labels.max() + 1 + np.arange(len(freed))
    return relabelled


def _merge_value(
    first: list[int],
    second: list[int],
    looks: _Looks,
    additive: np.ndarray,
    added_cost: Callable[[list[int], list[int]], float],
) -> float:
    """How a merge of two clusters weighs them: `_link` of their pairs plus what the merge adds to their
    cost; -inf where nothing speaks for or against it (no scores, no evidence)."""
    pairs = np.ix_(first, second)
    if not ((looks.counts[pairs] > 0) | (additive[pairs] != 0)).any():
        return -np.inf
    linkage = _link(looks.sums[pairs].sum(), looks.counts[pairs].sum(), additive[pairs].sum())
    return float(linkage) + added_cost(first, second)


def _link(total: np.ndarray, count: np.ndarray, added: np.ndarray) -> np.ndarray:
    """How strongly clusters favour one person: their mean score (0 without any; as if undecided for
    what their weights lack of one full comparison) plus their evidence."""
    return total / np.maximum(count, 1.0) + added


def _consistent_groups(
    looks: _Looks,
    additive: np.ndarray,
    forbidden: np.ndarray,
    initial: Sequence[int] | None,
    allowed: Callable[[Sequence[int]], bool],
    min_score: float,
    added_cost: Callable[[list[int], list[int]], float],
) -> list[list[int]]:
    """The groups of `initial` (2+ members) less the members that do not fit them, each sorted; a
    member's fit counts what it adds to the cost of the rest (`added_cost(member, rest)`).

    A group must also be one that `allowed` accepts: online, a tracklet may have joined an identity
    because of a sighting that a later decision moved to another one (a return to a view is allowed by
    a sighting elsewhere in between), so the worst-fitting members leave until it is. A group whose
    members fit it one by one may still hold parts that its evidence sets apart (`_apart`)."""
    if initial is None:
        return []
    labels = np.asarray(initial)
    if labels.shape != (len(additive),):
        raise ValueError(f"initial must have shape ({len(additive)},), but got shape {labels.shape}")
    groups = []
    for label in np.unique(labels):
        group = np.flatnonzero(labels == label).tolist()
        while len(group) > 1:
            sub = np.ix_(group, group)
            clash = (forbidden[sub] & ~np.eye(len(group), dtype=bool)).sum(axis=1)
            fit = _link(looks.sums[sub].sum(axis=1), looks.counts[sub].sum(axis=1), additive[sub].sum(axis=1))
            fit += [added_cost([m], [o for o in group if o != m]) for m in group]
            # no evidence with the rest: it stands alone
            fit = np.where(((looks.counts[sub] > 0) | (additive[sub] != 0)).any(axis=1), fit, -np.inf)
            worst = int(np.argmax(clash)) if clash.any() else int(np.argmin(fit))
            if not clash.any() and fit[worst] > min_score and allowed(group):
                break
            group.pop(worst)
        if len(group) > 1:
            groups += _apart(group, looks, additive, forbidden, allowed, min_score, added_cost)
    return groups


def _apart(
    group: list[int],
    looks: _Looks,
    additive: np.ndarray,
    forbidden: np.ndarray,
    allowed: Callable[[Sequence[int]], bool],
    min_score: float,
    added_cost: Callable[[list[int], list[int]], float],
) -> list[list[int]]:
    """`group`, or its parts (2+ members each) where its members, clustered afresh among themselves, fall
    into parts of which two weigh under -APART_LLR as a merge."""
    inside = np.ix_(group, group)  # all below in the group's own indices
    looks, additive = looks.block(group), additive[inside]

    def cost(first: list[int], second: list[int]) -> float:
        return added_cost([group[m] for m in first], [group[m] for m in second])

    labels = _agglomerate(
        looks, additive, forbidden[inside], [], lambda members: allowed([group[m] for m in members]), cost,
        min_score,
    )  # fmt: skip
    parts = [np.flatnonzero(labels == label).tolist() for label in range(labels.max() + 1)]
    for first, second in itertools.combinations(parts, 2):
        if _merge_value(first, second, looks, additive, cost) < -APART_LLR:
            return [[group[m] for m in part] for part in parts if len(part) > 1]
    return [group]


def _drift_weights(spans: list[Span]) -> np.ndarray:
    """(n, n) the share of one full comparison each pair of `spans` counts for in a cluster's mean:
    1 / (1 + gap / LIKENESS_DRIFT_S), the gap the seconds between them (0 where they overlap in time)."""
    first = np.array([s.first_time for s in spans])
    last = np.array([s.last_time for s in spans])
    gap = np.maximum(np.maximum(first[:, None] - last[None, :], first[None, :] - last[:, None]), 0.0)
    return 1.0 / (1.0 + gap / LIKENESS_DRIFT_S)


class Refinement:
    """Re-solving a session's identities with all their evidence, as a mixin of the Matcher.

    Uses the matcher's store, session, remembered closed tracklets (`_closed`), its constraints and
    evidence (SiteEvidence) and `refine_interval_s`; keeps in `view_offsets` what it measured of how much
    less alike people look across two views.
    """

    def _refine_due(self) -> bool:
        """Whether `refine_interval_s` of data time (the newest frame of any camera) have passed."""
        if self.refine_interval_s is None or not self._camera_times:
            return False
        now = self._data_time()
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
        REFINE_MAX) are clustered at once (`cluster_tracklets`): appearance and transit times as the
        decisions score them, tracklets walking at corresponding places in overlapping views and lost
        tracks restarting where their motion led as evidence of their own, the time each identity would
        go unseen against it, and the same constraints.
        Each cluster keeps the identity most of its frames already had; what moves is reported as
        `revised`.
        """
        records = {(r.camera, r.track_id): r for r in self.store.tracklets(session=self.session)}
        keys = [k for k in self._closed if k in records and records[k].global_id is not None]
        keys = keys[-REFINE_MAX:]  # the most recent: older ones keep their decisions
        spans = [self._closed[k] for k in keys]
        if len(spans) < 2:
            return []
        scores, evidence, forbidden, attachments = self._pair_evidence(spans)

        def allowed(members: list[int]) -> bool:
            group = [spans[m] for m in members]
            return all(self._allowed(s, [o for o in group if o is not s], resolving=True) for s in group)

        labels = cluster_tracklets(
            scores,
            forbidden,
            initial=[records[k].global_id for k in keys],
            evidence=evidence,
            allowed=allowed,
            cost=lambda members: self._unseen_llr(spans[m] for m in members),
            attachments=attachments,
            weights=_drift_weights(spans),
        )
        out = self._relabel(keys, labels, records)
        logger.info("refinement: %d of %d tracklets changed identity", len(out) // 2, len(spans))
        return out

    def adopt(self, labels: Mapping[tuple[str, int], int]) -> list[Output]:
        """Take the identities decided elsewhere for this session's closed tracklets (camera, track id)
        -> label, such as the same messages re-solved in one fixed order: tracklets labelled alike share
        one identity, the one most of their frames already had. Tracklets not labelled keep theirs."""
        records = {(r.camera, r.track_id): r for r in self.store.tracklets(session=self.session)}
        keys = [k for k in self._closed if k in labels and k in records and records[k].global_id is not None]
        _, clusters = np.unique(np.array([labels[k] for k in keys], np.int64), return_inverse=True)
        out = self._relabel(keys, clusters, records)
        logger.info("re-solved in order: %d of %d tracklets changed identity", len(out) // 2, len(keys))
        return out

    def _relabel(self, keys: list[tuple[str, int]], labels: np.ndarray, records: Mapping) -> list[Output]:
        """Give the closed tracklets `keys` the identities of their clusters `labels` (len(keys),) and
        report what moved as `revised`."""
        spans = [self._closed[k] for k in keys]
        current = [records[k].global_id for k in keys]
        new_ids = self._label_identities(np.asarray(labels), current, spans)
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
        return out

    def _pair_evidence(self, spans: list[Span]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(n, n) link scores (nan: no evidence), evidence of each pair's own (geometry, motion; 0: none),
        forbidden pairs, as `_decide` weighs them, and the motion of pairs without looks (attachments;
        see `cluster_tracklets`)."""
        n = len(spans)
        scores = np.full((n, n), np.nan)
        evidence = np.zeros((n, n))
        attachments = np.zeros((n, n))
        forbidden = np.zeros((n, n), bool)
        # the prior odds against a pair are those at the later tracklet's start: (n, n)
        starts = np.array([s.first_time for s in spans])
        odds = self._prior_odds_against(starts)
        against = np.where(starts[:, None] >= starts[None, :], odds[:, None], odds[None, :])
        have = [i for i, s in enumerate(spans) if s.appearance is not None]
        looks = np.ix_(have, have)
        scores[looks] = 0.0  # compared on looks: their score is added once the view offsets are known
        for i in range(n):
            for j in range(i + 1, n):
                a, b = spans[i], spans[j]
                if a.camera == b.camera:
                    forbidden[i, j] = live_together(a, b)
                    gap = max(a.first_time - b.last_time, b.first_time - a.last_time)
                    if gap > self.rejoin_max_gap_s:
                        # left the view and came back: what links the two is the sighting elsewhere in
                        # between, not their likeness in one view (alike people in one view score alike)
                        scores[i, j] = scores[j, i] = np.nan
                        continue
                    motion = None if forbidden[i, j] else self._continuation_llr(a, b, against[i, j])
                    if motion is None:
                        continue
                    if not np.isnan(scores[i, j]):
                        evidence[i, j] = evidence[j, i] = motion
                    else:
                        # a track lost before its first crop: motion alone tells whose it is, where a
                        # track restarted (not where a track was cut as it switched people) and not on
                        # a return to the view, which only looks could tell
                        earlier, later = sorted((a, b), key=lambda s: s.first_time)
                        if later.track_id < PART_STRIDE and not self._walked_out(earlier):
                            attachments[i, j] = attachments[j, i] = motion
                elif a.last_time <= b.first_time or b.last_time <= a.first_time:
                    transit = self._transit_llr(a, b)
                    if transit and not np.isnan(scores[i, j]):
                        scores[i, j] = scores[j, i] = scores[i, j] + transit
                else:
                    if not self._may_be_together(a, b, resolving=True):
                        forbidden[i, j] = True
                    elif self.calibration is not None and self._seen_together(a, [b]):
                        # walking at corresponding places picks out one person, as a continuation
                        # does: the prior odds against any one identity do not apply to the pair
                        scores[i, j] = scores[j, i] = np.nan
                        evidence[i, j] = evidence[j, i] = GEOMETRY_LLR + against[i, j]
        if have:
            features = np.stack([spans[i].appearance for i in have])  # (m, D)
            sims = np.clip(features @ features.T, -1.0, 1.0)
            if self.calibration is None:
                scores[looks] += sims - self.threshold
            else:
                # across two views everyone looks less alike than in one: the calibration reads them as such
                offsets = self._view_offsets([spans[i] for i in have], sims, forbidden[looks])
                crops = np.array([spans[i].embeddings for i in have])
                brief = np.minimum.outer(crops, crops)  # a brief sighting looks less like its person
                scores[looks] += self.calibration.llr(sims + offsets, brief) - against[looks]
        forbidden |= forbidden.T
        np.fill_diagonal(scores, np.nan)
        return scores, evidence, forbidden, attachments

    def _view_offsets(self, spans: list[Span], sims: np.ndarray, different: np.ndarray) -> np.ndarray:
        """(m, m) cosine to add to the similarities `sims` of `spans` (m,) before the calibration reads
        them: per pair of cameras, how much less alike two people look across them than within one view.

        The calibration learns what one person and two people look like within one camera: parts of one
        track, and tracks seen at once in one view. Across two views everyone looks less alike (another
        angle, light, colour cast, size), one person too, and likenesses across them read as weaker than
        they are. `different` (upper triangle): pairs known to be two people, seen at once in one camera
        or where one person cannot be in both views. The median likeness of such pairs across two
        cameras, against that of such pairs within one, measures the offset of that camera pair, from
        VIEW_OFFSET_MIN_PAIRS pairs of each, of tracklets whose features average enough crops. What was
        measured is kept in `view_offsets` for topology.json.
        """
        m = len(spans)
        offsets = np.zeros((m, m))
        cameras = np.array([s.camera for s in spans])
        measured = np.array([s.embeddings >= self.calibration.min_embeddings for s in spans])
        pairs = np.triu(different & np.outer(measured, measured), k=1)
        within = sims[pairs & (cameras[:, None] == cameras[None, :])]
        if len(within) < VIEW_OFFSET_MIN_PAIRS:
            return offsets
        for a, b in itertools.combinations(sorted({s.camera for s in spans}), 2):
            between = np.outer(cameras == a, cameras == b) | np.outer(cameras == b, cameras == a)
            across = sims[pairs & between]
            if len(across) >= VIEW_OFFSET_MIN_PAIRS:
                offset = float(np.median(within) - np.median(across))
                offsets[between] = offset
                self.view_offsets[(a, b)] = {"cameras": [a, b], "offset": offset, "pairs": len(across)}
        return offsets

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
            and (sighting := sighting_of(span, r.global_id)) is not None
        ]
        spans = {camera: (first, last) for camera, (first, last) in self._camera_times.items()}
        learned = learn_transit(sightings, spans, rejoin_gap_s=self.rejoin_max_gap_s, skip=overlapping)
        if learned.paths:
            self.transit = learned
        return bool(learned.paths)

    def _label_identities(self, labels: np.ndarray, current: list[int], spans: list[Span]) -> list[int]:
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
