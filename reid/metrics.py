"""Re-ID retrieval metrics (Market-1501 protocol) and k-reciprocal re-ranking, in pure numpy."""

from __future__ import annotations

import logging

import numpy as np

logger = logging.getLogger(__name__)


def evaluate_rank(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 10,
) -> tuple[np.ndarray, float]:
    """CMC curve (min(max_rank, G),) and mAP from a (Q, G) distance matrix, Market-1501 protocol.

    For each query, gallery entries with the same pid AND the same camera are removed; a query left with
    no true match is skipped. Raises ValueError when no query has a true match.
    """
    distmat = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    if q_pids.shape != (num_q,) or q_camids.shape != (num_q,):
        raise ValueError(
            f"q_pids and q_camids must have shape ({num_q},), got {q_pids.shape}, {q_camids.shape}"
        )
    if g_pids.shape != (num_g,) or g_camids.shape != (num_g,):
        raise ValueError(
            f"g_pids and g_camids must have shape ({num_g},), got {g_pids.shape}, {g_camids.shape}"
        )
    max_rank = min(max_rank, num_g)
    order = np.argsort(distmat, axis=1, kind="stable")  # (Q, G) nearest first
    cmc_sum, ap_sum, num_valid = np.zeros(max_rank), 0.0, 0
    for i in range(num_q):
        ranked = order[i]
        keep = ~((g_pids[ranked] == q_pids[i]) & (g_camids[ranked] == q_camids[i]))
        matches = (g_pids[ranked][keep] == q_pids[i]).astype(np.float64)  # (G',)
        if not matches.any():
            continue
        num_valid += 1
        first = int(np.argmax(matches))
        cmc_sum[first:] += 1.0
        hits = np.cumsum(matches)
        precision_at_hit = hits[matches > 0] / (np.flatnonzero(matches) + 1.0)
        ap_sum += float(precision_at_hit.mean())
    if num_valid == 0:
        raise ValueError("no query has a true match in the gallery (after removing same-camera matches)")
    if num_valid < num_q:
        logger.debug("%d of %d queries have no cross-camera match and were skipped", num_q - num_valid, num_q)
    return (cmc_sum / num_valid).astype(np.float32), ap_sum / num_valid


def _k_reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """R(i, k): the k-nearest neighbours of i (itself included) that hold i among their own k-nearest."""
    forward = rank[i, : k + 1]
    backward = rank[forward, : k + 1]  # (k+1, k+1)
    return forward[np.any(backward == i, axis=1)]


def re_ranking(
    q_g: np.ndarray, q_q: np.ndarray, g_g: np.ndarray, k1: int = 20, k2: int = 6, lambda_value: float = 0.3
) -> np.ndarray:
    """k-reciprocal re-ranked (Q, G) distances (Zhong et al., CVPR 2017) from (Q,G), (Q,Q), (G,G) distances.

    Over all N = Q + G images: R(p, k1) is the set of k-reciprocal neighbours of p (self included);
    R*(p, k1) adds R(q, k1/2) for each q in R(p, k1) sharing at least 2/3 of it with R(p, k1). Each p
    gets a vector V_p (N,) with V_pg = exp(-d(p, g)) on R*(p, k1), 0 elsewhere, then averaged over its
    k2 nearest neighbours (local query expansion). The Jaccard distance is 1 - sum min(V_p, V_g) /
    sum max(V_p, V_g), and the result is (1 - lambda) * Jaccard + lambda * the original distance.
    Distances must be non-negative (e.g. 1 - cosine or squared Euclidean). Memory is O(N^2).
    """
    q_g, q_q, g_g = (np.asarray(m, dtype=np.float64) for m in (q_g, q_q, g_g))
    num_q, num_g = q_g.shape
    if q_q.shape != (num_q, num_q) or g_g.shape != (num_g, num_g):
        raise ValueError(
            f"expected q_q ({num_q},{num_q}) and g_g ({num_g},{num_g}), got {q_q.shape}, {g_g.shape}"
        )
    dist = np.block([[q_q, q_g], [q_g.T, g_g]])  # (N, N)
    n = num_q + num_g
    k1, k2 = min(k1, n - 1), min(k2, n)
    rank = np.argsort(dist, axis=1, kind="stable")  # (N, N); each row's own index comes first (distance 0)
    half = max(1, round(k1 / 2))
    vectors = np.zeros((n, n), dtype=np.float32)  # O(N^2) memory: 2 GB for Market-1501
    for p in range(n):
        reciprocal = _k_reciprocal(rank, p, k1)
        expanded = set(reciprocal.tolist())
        for q in reciprocal:
            candidate = _k_reciprocal(rank, int(q), half)
            if len(np.intersect1d(candidate, reciprocal)) >= 2 / 3 * len(candidate):
                expanded.update(candidate.tolist())
        members = np.fromiter(expanded, dtype=np.int64)
        vectors[p, members] = np.exp(-dist[p, members])
    if k2 > 1:
        expanded_vectors = np.empty_like(vectors)
        for start in range(0, n, 256):  # chunks bound the (rows, k2, N) temporary
            rows = rank[start : start + 256, :k2]
            expanded_vectors[start : start + 256] = vectors[rows].mean(axis=1)
        vectors = expanded_vectors
    totals = vectors.sum(axis=1)  # (N,)
    jaccard = np.empty((num_q, num_g))
    gallery_vectors = vectors[num_q:]  # (G, N)
    for i in range(num_q):
        nonzero = np.flatnonzero(vectors[i])
        shared = np.minimum(vectors[i, nonzero], gallery_vectors[:, nonzero]).sum(axis=1)  # (G,)
        union = totals[i] + totals[num_q:] - shared
        jaccard[i] = 1.0 - shared / np.maximum(union, 1e-12)
    return (1.0 - lambda_value) * jaccard + lambda_value * q_g
