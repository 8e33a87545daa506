"""Tracks that switched people: where a track's looks change for good, it follows someone else.

A tracker that loses one person behind another often goes on with the other one under the same id. Its
embeddings then fall into two runs, each alike within and unlike the other. Two halves of one person's
track are what the score calibration learns "same person" from, so the likeness of the two runs' means
is scored as any two tracklets are: where the cut that best fits two runs scores under SWITCH_LLR, the
track holds two people, and each part is searched again.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

# The log-likelihood ratio of "same person" under which the two parts of a track are two people (about
# 12 to 1 against). On PETS ground-truth crops (OSNet x0.25, the calibration's prior), it cuts 1 in 88
# tracks of 8 crops of one person, and 85% of those of 4 crops of one person and 4 of another exactly
# where they switch. Replayed on the suite, -2.8 cut fewer of pets-gap's and pets-three's switches.
SWITCH_LLR = -2.5
SWITCH_MIN_SIDE = 2  # embeddings each part averages at least: one crop alone may be a bad one


def switch_points(
    vectors: np.ndarray,
    weights: np.ndarray,
    llr: Callable[[np.ndarray], np.ndarray],
    *,
    last_side: int = SWITCH_MIN_SIDE + 1,
) -> list[int]:
    """Where a track's embeddings (N, D), in time order with their weights (N,), change person: indices
    k (the first embedding of a new part), ascending. `llr` turns cosine similarities of unit means into
    log-likelihood ratios of "same person".

    The last part averages `last_side` embeddings at least, one more than the others: as a tracker loses
    someone, its box drifts off them, and the last crops of a track, of half a person or of what hid them,
    look like someone else.
    """
    vectors = np.asarray(vectors, np.float64)
    weights = np.asarray(weights, np.float64)
    n = len(vectors)
    if n < SWITCH_MIN_SIDE + last_side:
        return []
    weighted = vectors * weights[:, None]
    first = np.cumsum(weighted, axis=0)[:-1]  # (N-1, D): for k = 1..N-1, the sum of the first k
    second = first[-1] + weighted[-1] - first  # ... and of the rest
    # where the change is: the cut whose two parts' means hold their own crops best (the length of a
    # sum of unit vectors is the sum of their cosines with its direction)
    k = int(np.argmax(np.linalg.norm(first, axis=1) + np.linalg.norm(second, axis=1))) + 1
    if k < SWITCH_MIN_SIDE or n - k < last_side:
        return []
    a, b = first[k - 1], second[k - 1]
    likeness = float(a @ b) / max(float(np.linalg.norm(a) * np.linalg.norm(b)), 1e-12)
    if float(llr(np.array([likeness]))[0]) >= SWITCH_LLR:
        return []
    earlier = switch_points(vectors[:k], weights[:k], llr, last_side=SWITCH_MIN_SIDE)
    later = switch_points(vectors[k:], weights[k:], llr, last_side=last_side)
    return [*earlier, k, *(k + i for i in later)]
