"""Re-solving identities with all the evidence: constrained average-linkage clustering of tracklets."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


def cluster_tracklets(
    scores: np.ndarray,
    forbidden: np.ndarray,
    *,
    initial: Sequence[int] | None = None,
    allowed: Callable[[Sequence[int]], bool] = lambda members: True,
    min_score: float = 0.0,
) -> np.ndarray:
    """Cluster n tracklets by average linkage over pairwise evidence, never across a forbidden pair.

    Clustering starts from the groups of `initial` (labels (n,), e.g. the decisions made online; default
    every tracklet alone), after detaching each member whose mean score with the rest of its group is
    not above `min_score` (worst first), or that is forbidden with one of them.

    scores: (n, n) symmetric, how strongly each pair favours "same person" over "different" (> 0 links);
    nan where the pair has no evidence either way (it neither helps nor hurts a merge). forbidden: (n, n)
    bool, pairs that cannot be one person (seen at once where one person cannot be). Two clusters merge,
    best first, while their mean score over the pairs with evidence is above `min_score`, none of their
    pairs is forbidden and `allowed(members)` accepts the merged cluster's members (constraints that
    depend on the whole cluster, such as transit times). Returns labels (n,) int, 0..k-1 in order of
    each cluster's first member.
    """
    scores = np.asarray(scores, np.float64)
    n = len(scores)
    if scores.shape != (n, n) or np.shape(forbidden) != (n, n):
        raise ValueError(f"scores and forbidden must both have shape ({n}, {n})")
    known = ~np.isnan(scores)
    total = np.where(known, scores, 0.0)  # (k, k) sums of pair scores between clusters
    count = known.astype(np.float64)  # (k, k) pairs with evidence between clusters
    blocked = np.array(forbidden, bool) | np.eye(n, dtype=bool)
    members: list[list[int]] = [[i] for i in range(n)]
    alive = np.ones(n, bool)

    def merge(a: int, b: int) -> None:  # b joins a: its sums, counts and vetoes become a's
        total[a, :] += total[b, :]
        total[:, a] = total[a, :]
        count[a, :] += count[b, :]
        count[:, a] = count[a, :]
        blocked[a, :] |= blocked[b, :]
        blocked[:, a] = blocked[a, :]
        blocked[a, a] = True
        members[a].extend(members[b])
        members[b] = []
        alive[b] = False

    for group in _consistent_groups(scores, known, blocked, initial, min_score):
        for b in group[1:]:
            merge(group[0], b)
    while True:
        with np.errstate(invalid="ignore", divide="ignore"):
            linkage = np.where((count > 0) & ~blocked, total / np.maximum(count, 1e-12), -np.inf)
        linkage[~alive, :] = -np.inf
        linkage[:, ~alive] = -np.inf
        flat = int(np.argmax(linkage))
        a, b = divmod(flat, n)
        if not linkage[a, b] > min_score:
            break
        if not allowed(sorted(members[a] + members[b])):
            blocked[a, b] = blocked[b, a] = True
            continue
        merge(a, b)
    labels = np.empty(n, np.int64)
    for label, group in enumerate(sorted((sorted(m) for m in members if m), key=lambda m: m[0])):
        labels[group] = label
    return labels


def _consistent_groups(
    scores: np.ndarray,
    known: np.ndarray,
    blocked: np.ndarray,
    initial: Sequence[int] | None,
    min_score: float,
) -> list[list[int]]:
    """The groups of `initial` (2+ members) less the members that do not fit them, each sorted."""
    if initial is None:
        return []
    labels = np.asarray(initial)
    if labels.shape != (len(scores),):
        raise ValueError(f"initial must have shape ({len(scores)},), but got shape {labels.shape}")
    groups = []
    for label in np.unique(labels):
        group = np.flatnonzero(labels == label).tolist()
        while len(group) > 1:
            sub = np.ix_(group, group)
            clash = (blocked[sub] & ~np.eye(len(group), dtype=bool)).sum(axis=1)
            with np.errstate(invalid="ignore"):
                fit = np.where(known[sub], scores[sub], 0.0).sum(axis=1) / known[sub].sum(axis=1)
            fit = np.where(np.isnan(fit), -np.inf, fit)  # no evidence with the rest: it stands alone
            worst = int(np.argmax(clash)) if clash.any() else int(np.argmin(fit))
            if not clash.any() and fit[worst] > min_score:
                break
            group.pop(worst)
        if len(group) > 1:
            groups.append(group)
    return groups
