"""Learned geometry of overlapping views: whether two cameras see the same ground, and the homography that
maps foot points (the bottom-centre of a box) from one image to the other, learned from the tracks alone.

Two tracklets of cameras a and b seen at the same moments are a candidate pair; each gives simultaneous
foot-point correspondences. A homography is hypothesised from two candidate pairs (the second drawn by
how well a local similarity fitted to the first explains it), scored by how many other pairs it explains
(median transfer error below a tolerance in box heights, each tracklet matched to at most one tracklet of
the other camera at a time), and refitted on the pairs it explains. The views overlap when the best
mapping explains enough independent pairs and, as negative evidence, most of what each camera sees where
the mapping puts the other camera's people; otherwise they do not.

Until people have crossed the shared ground in more than one direction, their foot points lie along one
line, and no homography is determined across it. At the end of a run (`OverlapLearner.finish`), a pair
of views still without a mapping then gets a similarity (rotation, scale and shift), hypothesised from
each candidate pair alone: known along the line, a guess across it.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import ConvexHull, QhullError

from pipeline.tracklet_spans import BORDER_PX

logger = logging.getLogger(__name__)

TOPOLOGY_VERSION = 1  # version of what to_dict writes and from_dict reads

Key = tuple[str, int]  # (camera, local track id)
Similarity = Callable[["Trajectory", "Trajectory"], "float | None"] | Mapping[tuple[Key, Key], float]
Fit = Callable[[np.ndarray, np.ndarray], "np.ndarray | None"]  # correspondences pa, pb (N, 2) -> (3, 3)

_SCORE_SAMPLES = 12  # correspondences per tracklet pair that score a hypothesis
_FIT_SAMPLES = 40  # correspondences per tracklet pair in the final least-squares fit
_HYPOTHESIS_SPREAD = 0.05  # box heights across the main axis below which a hypothesis' points are a line
_MODEL_SPREAD = 0.25  # box heights: the same for the points behind a model
_MAX_SCALE = 20.0  # a mapping that locally stretches or shrinks more than this is absurd
_REFINE_ROUNDS = 3  # rounds of refitting on the explained pairs, in RANSAC and at the end
_COVERAGE_SAMPLES = 50  # samples per tracklet that measure the coverage of a mapping
# box heights a pair must move to guess a local mapping from it, and the points behind a similarity fitted
# along a line must spread along it
_GUIDE_MOTION = 0.1
_GUIDED = 0.8  # share of second pairs drawn by how well the first pair's local mapping explains them
_GUIDED_HIT = 0.25  # assumed chance that a guided second pair is explained when the first one is
_FRESH_MIN_COMMON = 3  # simultaneous samples a pair needs to count towards the rolling error
_MIN_ERROR_PAIRS = 8  # fresh pair errors needed before the rolling error can drop a model


def _check(name: str, value: np.ndarray, shape: tuple[int | None, ...]) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a np.ndarray, but got {type(value).__name__}")
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("_" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, but got shape {value.shape}")
    if value.dtype != np.float64:
        raise ValueError(f"{name} must have dtype float64, but got {value.dtype}")
    if not np.all(np.isfinite(value)):
        raise ValueError(f"{name} must be finite")


@dataclass(frozen=True)
class Trajectory:
    """Where one tracklet's foot point was, and how tall its box was, over time."""

    camera: str
    track_id: int
    times: np.ndarray  # (T,) float64 seconds on the clock the run's cameras share, strictly increasing
    points: np.ndarray  # (T, 2) float64 foot points (x, y) in pixels
    heights: np.ndarray  # (T,) float64 box heights in pixels, > 0

    def __post_init__(self) -> None:
        _check("times", self.times, (None,))
        n = len(self.times)
        _check("points", self.points, (n, 2))
        _check("heights", self.heights, (n,))
        if n > 1 and np.any(np.diff(self.times) <= 0):
            raise ValueError("times must be strictly increasing")
        if np.any(self.heights <= 0):
            raise ValueError(f"heights must be > 0, but got min {self.heights.min()}")

    @classmethod
    def from_arrays(cls, camera: str, track_id: int, times, points, heights) -> Trajectory:
        """Build from array-likes in any time order; of samples at one time the last one is kept."""
        times = np.asarray(times, np.float64).reshape(-1)
        points = np.asarray(points, np.float64).reshape(-1, 2)
        heights = np.asarray(heights, np.float64).reshape(-1)
        order = np.argsort(times, kind="stable")
        sorted_times = times[order]
        last_of_run = np.r_[sorted_times[1:] != sorted_times[:-1], True]
        keep = order[last_of_run]
        return cls(camera, int(track_id), times[keep], points[keep], heights[keep])

    @classmethod
    def from_boxes(cls, camera: str, track_id: int, times, xyxy) -> Trajectory:
        """Build from boxes (T, 4) x1, y1, x2, y2: the foot point is the bottom-centre of each box."""
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        foot = np.stack([(xyxy[:, 0] + xyxy[:, 2]) / 2, xyxy[:, 3]], axis=1)  # (T, 2)
        return cls.from_arrays(camera, track_id, times, foot, xyxy[:, 3] - xyxy[:, 1])

    @property
    def key(self) -> Key:
        return self.camera, self.track_id

    @property
    def start(self) -> float:
        return float(self.times[0]) if len(self.times) else math.inf

    @property
    def end(self) -> float:
        return float(self.times[-1]) if len(self.times) else -math.inf

    def __len__(self) -> int:
        return len(self.times)

    def at(self, times: np.ndarray, max_gap_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Foot points (N, 2), heights (N,) and validity (N,) at `times` (N,), linearly interpolated.

        A time is valid inside the trajectory's span where the samples around it are at most max_gap_s
        apart (a sample at exactly that time is always valid).
        """
        times = np.asarray(times, np.float64).reshape(-1)
        n = len(self.times)
        if n < 2:
            valid = np.zeros(len(times), bool) if n == 0 else times == self.times[0]
            points = np.repeat(self.points[:1], len(times), 0) if n else np.zeros((len(times), 2))
            heights = np.repeat(self.heights[:1], len(times)) if n else np.ones(len(times))
            return points, heights, valid
        hi = np.clip(np.searchsorted(self.times, times, side="right"), 1, n - 1)  # (N,)
        lo = hi - 1
        t_lo, t_hi = self.times[lo], self.times[hi]
        frac = np.clip((times - t_lo) / (t_hi - t_lo), 0.0, 1.0)  # (N,)
        points = self.points[lo] + frac[:, None] * (self.points[hi] - self.points[lo])
        heights = self.heights[lo] + frac * (self.heights[hi] - self.heights[lo])
        close = (t_hi - t_lo <= max_gap_s) | (times == t_lo) | (times == t_hi)
        valid = (times >= self.times[0]) & (times <= self.times[-1]) & close
        return points, heights, valid

    def between(self, start: float, end: float) -> Trajectory:
        """The samples at times in [start, end]."""
        keep = (self.times >= start) & (self.times <= end)
        return Trajectory(self.camera, self.track_id, self.times[keep], self.points[keep], self.heights[keep])


def _transfer(h: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Points (..., 2) through homography h (3, 3): mapped points (..., 2) and their w (...)."""
    x = points @ h[:, :2].T + h[:, 2]  # (..., 3)
    w = x[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        return x[..., :2] / w[..., None], w


def _symmetric_errors(
    h: np.ndarray, pa: np.ndarray, pb: np.ndarray, ha: np.ndarray, hb: np.ndarray
) -> np.ndarray:
    """Symmetric transfer error (...) in box heights of correspondences pa -> pb (..., 2); inf behind a horizon."""
    fa, wa = _transfer(h, pa)
    fb, wb = _transfer(np.linalg.inv(h), pb)
    with np.errstate(invalid="ignore"):
        err = 0.5 * (np.linalg.norm(fa - pb, axis=-1) / hb + np.linalg.norm(fb - pa, axis=-1) / ha)
    err[(wa <= 0) | (wb <= 0) | ~np.isfinite(err)] = np.inf
    return err


def _normalizer(points: np.ndarray) -> np.ndarray:
    """Similarity (3, 3) that moves points (N, 2) to mean 0 and mean distance sqrt(2) (Hartley)."""
    centre = points.mean(axis=0)
    spread = float(np.linalg.norm(points - centre, axis=1).mean())
    s = math.sqrt(2) / max(spread, 1e-9)
    return np.array([[s, 0, -s * centre[0]], [0, s, -s * centre[1]], [0, 0, 1]])


def _dlt(pa: np.ndarray, pb: np.ndarray) -> np.ndarray | None:
    """Least-squares homography (3, 3) from correspondences pa -> pb (N, 2), N >= 4, or None if degenerate."""
    if len(pa) < 4:
        return None
    ta, tb = _normalizer(pa), _normalizer(pb)
    (x, y), (u, v) = _transfer(ta, pa)[0].T, _transfer(tb, pb)[0].T
    zero, one = np.zeros_like(x), np.ones_like(x)
    rows_u = np.stack([-x, -y, -one, zero, zero, zero, u * x, u * y, u], axis=1)  # (N, 9)
    rows_v = np.stack([zero, zero, zero, -x, -y, -one, v * x, v * y, v], axis=1)  # (N, 9)
    _, s, vt = np.linalg.svd(np.concatenate([rows_u, rows_v]), full_matrices=False)
    if s[-2] < 1e-9 * s[0]:
        return None  # more than one solution: the points are degenerate
    h = np.linalg.inv(tb) @ vt[-1].reshape(3, 3) @ ta
    return h / np.linalg.norm(h)


def _complex_similarity(za: np.ndarray, zb: np.ndarray) -> tuple[complex, complex] | None:
    """Least-squares (scale, shift) with zb ~ scale * za + shift for complex points za, zb (N,): rotation
    and scale, no reflection; None where za do not move."""
    ca, cb = za - za.mean(), zb - zb.mean()
    norm = float(np.sum(np.abs(ca) ** 2))
    if norm == 0:
        return None
    scale = np.sum(np.conj(ca) * cb) / norm
    return scale, zb.mean() - scale * za.mean()


def _similarity(pa: np.ndarray, pb: np.ndarray) -> np.ndarray | None:
    """Least-squares similarity (3, 3) from pa to pb (N, 2) (`_complex_similarity`)."""
    fit = _complex_similarity(pa @ np.array([1, 1j]), pb @ np.array([1, 1j]))
    if fit is None:
        return None
    scale, shift = fit
    return np.array(
        [[scale.real, -scale.imag, shift.real], [scale.imag, scale.real, shift.imag], [0.0, 0.0, 1.0]]
    )


def _plausible(h: np.ndarray | None, points_a: np.ndarray) -> np.ndarray | None:
    """h with its sign fixed so that w > 0 on points_a (N, 2), or None where it folds, flips or is absurd.

    Both cameras look at the ground from above, so the mapping keeps orientation (det of its Jacobian > 0),
    no horizon passes between the points (w > 0), and its local scale stays within bounds.
    """
    if h is None or not np.all(np.isfinite(h)):
        return None
    _, w = _transfer(h, points_a)
    if np.median(w) < 0:
        h, w = -h, -w
    det = float(np.linalg.det(h))
    if np.any(w <= 0) or det <= 0:
        return None
    scale = np.sqrt(det / w**3)  # (N,) local linear scale of the mapping
    if np.any(scale > _MAX_SCALE) or np.any(scale < 1 / _MAX_SCALE):
        return None
    return h


def _spread(points: np.ndarray, axis: int = 0) -> float:
    """Standard deviation of points (N, 2) across their main axis (0 for points on a line), or along it
    (`axis=1`)."""
    if len(points) < 3:
        return 0.0
    return float(np.sqrt(max(np.linalg.eigvalsh(np.cov(points.T))[axis], 0.0)))


def _simultaneous(ta: Trajectory, tb: Trajectory, max_gap_s: float) -> tuple[np.ndarray, ...]:
    """Times (N,), foot points pa, pb (N, 2) and heights ha, hb (N,) at a's samples where b is seen too."""
    inside = (ta.times >= tb.start) & (ta.times <= tb.end)
    times = ta.times[inside]
    pb, hb, valid = tb.at(times, max_gap_s)
    return times[valid], ta.points[inside][valid], pb[valid], ta.heights[inside][valid], hb[valid]


def _even(n: int, m: int) -> np.ndarray:
    """At most m indices (M,) spread evenly over range(n)."""
    return np.unique(np.linspace(0, n - 1, min(n, m)).round().astype(int))


@dataclass
class _Candidates:
    """Tracklet pairs of cameras a and b seen at the same times, with their simultaneous foot points."""

    a: np.ndarray  # (P,) int, index into the a trajectories
    b: np.ndarray  # (P,) int, index into the b trajectories
    t0: np.ndarray  # (P,) float, first common time
    t1: np.ndarray  # (P,) float, last common time
    pa: np.ndarray  # (P, M, 2) evenly spaced simultaneous foot points in a, padded
    pb: np.ndarray  # (P, M, 2) the same in b
    ha: np.ndarray  # (P, M) box heights in a, padded with 1
    hb: np.ndarray  # (P, M) box heights in b, padded with 1
    valid: np.ndarray  # (P, M) bool, False on padding
    full: list[tuple[np.ndarray, ...]]  # per pair: all its (pa, pb, ha, hb)

    def __len__(self) -> int:
        return len(self.a)

    @classmethod
    def build(
        cls, a: Sequence[Trajectory], b: Sequence[Trajectory], min_common: int, max_gap_s: float
    ) -> _Candidates:
        """All pairs seen together at >= min_common of a's sample times."""
        starts_a, ends_a = np.array([t.start for t in a]), np.array([t.end for t in a])
        starts_b, ends_b = np.array([t.start for t in b]), np.array([t.end for t in b])
        together = np.minimum.outer(ends_a, ends_b) >= np.maximum.outer(starts_a, starts_b)  # (Na, Nb)
        rows: list[tuple[int, int, tuple[np.ndarray, ...]]] = []
        for i, j in zip(*np.nonzero(together)):
            sim = _simultaneous(a[i], b[j], max_gap_s)
            if len(sim[0]) >= min_common:
                rows.append((int(i), int(j), sim))
        m = _SCORE_SAMPLES
        p = len(rows)
        pa, pb = np.zeros((p, m, 2)), np.zeros((p, m, 2))
        ha, hb, valid = np.ones((p, m)), np.ones((p, m)), np.zeros((p, m), bool)
        for k, (_, _, (times, qa, qb, ga, gb)) in enumerate(rows):
            pick = _even(len(times), m)
            n = len(pick)
            pa[k, :n], pb[k, :n], ha[k, :n], hb[k, :n] = qa[pick], qb[pick], ga[pick], gb[pick]
            valid[k, :n] = True
        return cls(
            a=np.array([r[0] for r in rows], int),
            b=np.array([r[1] for r in rows], int),
            t0=np.array([r[2][0][0] for r in rows]),
            t1=np.array([r[2][0][-1] for r in rows]),
            pa=pa,
            pb=pb,
            ha=ha,
            hb=hb,
            valid=valid,
            full=[r[2][1:] for r in rows],
        )

    def errors(self, h: np.ndarray) -> np.ndarray:
        """Median symmetric transfer error (P,) of each pair under h, in box heights."""
        err = _symmetric_errors(h, self.pa, self.pb, self.ha, self.hb)  # (P, M)
        err[~self.valid] = np.inf
        return self._median(err)

    def similarity_errors(self, p: int) -> np.ndarray | None:
        """Median error (P,) in box heights of every pair under the similarity that best maps pair p's
        foot points, a local guess at the mapping near p; None where p stands still (no direction)."""
        mask = self.valid[p]
        za = self.pa[p, mask] @ np.array([1, 1j])  # (n,) complex foot points of p in a
        zb = self.pb[p, mask] @ np.array([1, 1j])
        if np.sqrt(np.mean(np.abs(za - za.mean()) ** 2)) < _GUIDE_MOTION * np.median(self.ha[p, mask]):
            return None
        scale, shift = _complex_similarity(za, zb)
        predicted = scale * (self.pa @ np.array([1, 1j])) + shift  # (P, M)
        err = np.abs(predicted - self.pb @ np.array([1, 1j])) / self.hb
        err[~self.valid] = np.inf
        return self._median(err)

    def _median(self, err: np.ndarray) -> np.ndarray:
        """Per-pair median (P,) of errors (P, M) that are inf on the padding."""
        err = np.sort(err, axis=1)
        n = self.valid.sum(axis=1)
        lo = np.take_along_axis(err, ((n - 1) // 2)[:, None], axis=1)[:, 0]
        hi = np.take_along_axis(err, (n // 2)[:, None], axis=1)[:, 0]
        return 0.5 * (lo + hi)

    def points(self, pairs: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The scoring foot points of the given pairs, pa, pb (N, 2), and their box heights in a (N,)."""
        mask = self.valid[pairs]
        return self.pa[pairs][mask], self.pb[pairs][mask], self.ha[pairs][mask]


def _one_to_one(errors: np.ndarray, c: _Candidates, tolerance: float) -> np.ndarray:
    """Pairs (K,) below tolerance, best first, such that no tracklet is matched to two at the same time."""
    below = np.flatnonzero(errors < tolerance)
    order = below[np.argsort(errors[below], kind="stable")]
    taken_a: dict[int, list[tuple[float, float]]] = {}
    taken_b: dict[int, list[tuple[float, float]]] = {}
    accepted = []
    for p in order:
        t0, t1 = float(c.t0[p]), float(c.t1[p])
        spans = (*taken_a.get(int(c.a[p]), ()), *taken_b.get(int(c.b[p]), ()))
        if any(min(t1, e) >= max(t0, s) for s, e in spans):
            continue  # a tracklet already matched to another one at these times
        taken_a.setdefault(int(c.a[p]), []).append((t0, t1))
        taken_b.setdefault(int(c.b[p]), []).append((t0, t1))
        accepted.append(p)
    return np.array(accepted, int)


def _score(errors: np.ndarray, accepted: np.ndarray, tolerance: float) -> float:
    """MSAC score: every explained pair counts, the better explained the more."""
    return float(np.sum(1 - (errors[accepted] / tolerance) ** 2))


def _support(c: _Candidates, accepted: np.ndarray) -> int:
    """Independent pairs among the accepted: pieces of one tracklet count once."""
    return min(len(set(c.a[accepted].tolist())), len(set(c.b[accepted].tolist())))


def _sampling_weights(
    c: _Candidates, a: Sequence[Trajectory], b: Sequence[Trajectory], similarity: Similarity | None
) -> np.ndarray:
    """Probability (P,) of drawing each pair into a hypothesis: uniform, or by appearance rank where known.

    Ranks rather than raw similarities, so that a model whose scores sit on another scale works alike;
    appearance only steers the sampling, it never rules a pair out.
    """
    p = len(c)
    if similarity is None or p == 0:
        return np.full(p, 1 / max(p, 1))
    sims = np.full(p, np.nan)
    for k in range(p):
        ta, tb = a[c.a[k]], b[c.b[k]]
        value = similarity(ta, tb) if callable(similarity) else similarity.get((ta.key, tb.key))
        if value is not None:
            sims[k] = float(value)
    if np.all(np.isnan(sims)):
        return np.full(p, 1 / p)
    filled = np.where(np.isnan(sims), np.nanmin(sims), sims)
    weight = np.zeros(p)
    for side in (c.a, c.b):
        for member in np.unique(side):
            rows = np.flatnonzero(side == member)
            ranks = np.argsort(np.argsort(-filled[rows], kind="stable"), kind="stable")
            weight[rows] += 1 / (1 + ranks)
    return weight / weight.sum()


def _refine(
    h: np.ndarray, c: _Candidates, tolerance: float, fit: Fit = _dlt
) -> tuple[np.ndarray, np.ndarray, float]:
    """Refit h (by DLT, or `fit`) on the accepted pairs and re-accept, while that improves the score."""
    errors = c.errors(h)
    accepted = _one_to_one(errors, c, tolerance)
    score = _score(errors, accepted, tolerance)
    for _ in range(_REFINE_ROUNDS):
        pa, pb, _ = c.points(accepted)
        h_new = _plausible(fit(pa, pb), pa)
        if h_new is None:
            break
        errors_new = c.errors(h_new)
        accepted_new = _one_to_one(errors_new, c, tolerance)
        score_new = _score(errors_new, accepted_new, tolerance)
        if score_new <= score:
            break
        h, accepted, score = h_new, accepted_new, score_new
    return h, accepted, score


def _ransac(
    c: _Candidates, weights: np.ndarray, tolerance: float, rng: np.random.Generator, max_iterations: int
) -> tuple[np.ndarray | None, np.ndarray]:
    """The homography (3, 3) that explains the most candidate pairs, and those pairs (K,).

    Hypotheses come from two pairs. The first is drawn by `weights`; the second mostly by rank under the
    similarity that maps the first one's points (pairs near a true pair are explained by it roughly, so
    a true second pair ranks high), otherwise by `weights` too.
    """
    best_h, best_accepted, best_score = None, np.zeros(0, int), 0.0
    needed = max_iterations
    ranks: dict[int, np.ndarray | None] = {}
    for iteration in range(max_iterations):
        if iteration >= needed:
            break
        p = int(rng.choice(len(c), p=weights))
        if p not in ranks:
            guess = c.similarity_errors(p)
            if guess is None:
                ranks[p] = None
            else:
                guide = 1 / (1 + np.argsort(np.argsort(guess, kind="stable"), kind="stable"))
                guide[(c.a == c.a[p]) | (c.b == c.b[p])] = 0  # one tracklet twice: one person, not two
                ranks[p] = guide / guide.sum() if guide.sum() > 0 else None
        guided = ranks[p]
        q = int(rng.choice(len(c), p=guided if guided is not None and rng.random() < _GUIDED else weights))
        if c.a[p] == c.a[q] or c.b[p] == c.b[q]:
            continue
        pa, pb, ha = c.points(np.array([p, q]))
        if _spread(pa) < _HYPOTHESIS_SPREAD * np.median(ha):
            continue
        h = _plausible(_dlt(pa, pb), pa)
        if h is None:
            continue
        errors = c.errors(h)
        if errors[p] >= tolerance or errors[q] >= tolerance:
            continue  # it does not even explain the pairs it came from
        if np.count_nonzero(errors < tolerance) < best_score:
            continue  # cannot beat the best, whatever the one-to-one constraint leaves
        h, accepted, score = _refine(h, c, tolerance)
        if score > best_score:
            best_h, best_accepted, best_score = h, accepted, score
            hit = min(len(accepted) / len(c), 1.0) * _GUIDED_HIT  # chance a draw gives two explained pairs
            needed = min(max_iterations, int(math.log(1e-3) / math.log1p(-hit)) + 1) if hit > 0 else needed
    return best_h, best_accepted


def _ransac_line(c: _Candidates, tolerance: float) -> tuple[np.ndarray | None, np.ndarray]:
    """The similarity (3, 3) that explains the most candidate pairs, and those pairs (K,): hypotheses
    come from every pair that moves, one at a time (the pairs are few), each refitted on what it explains."""
    best_h, best_accepted, best_score = None, np.zeros(0, int), 0.0
    for p in range(len(c)):
        pa, pb, ha = c.points(np.array([p]))
        if _spread(pa, axis=1) < _GUIDE_MOTION * np.median(ha):
            continue
        h = _plausible(_similarity(pa, pb), pa)
        if h is None or c.errors(h)[p] >= tolerance:
            continue
        h, accepted, score = _refine(h, c, tolerance, _similarity)
        if score > best_score:
            best_h, best_accepted, best_score = h, accepted, score
    return best_h, best_accepted


def _least_squares(
    h: np.ndarray, pa: np.ndarray, pb: np.ndarray, ha: np.ndarray, hb: np.ndarray
) -> np.ndarray:
    """h refined to minimise the robust symmetric transfer error in box heights of pa -> pb (N, 2)."""
    ta, tb = _normalizer(pa), _normalizer(pb)
    na, nb = _transfer(ta, pa)[0], _transfer(tb, pb)[0]
    hn = tb @ h @ np.linalg.inv(ta)
    hn = hn / hn[2, 2]  # w > 0 at the centroid of a, so hn[2, 2] > 0
    sa, sb = ta[0, 0], tb[0, 0]

    def residuals(x: np.ndarray) -> np.ndarray:
        m = np.append(x, 1.0).reshape(3, 3)
        fa, _ = _transfer(m, na)
        fb, _ = _transfer(np.linalg.inv(m), nb)
        return np.concatenate(
            [((fa - nb) / (sb * hb[:, None])).ravel(), ((fb - na) / (sa * ha[:, None])).ravel()]
        )

    fit = least_squares(residuals, hn.ravel()[:8], loss="soft_l1", f_scale=0.05, max_nfev=200)
    m = np.append(fit.x, 1.0).reshape(3, 3)
    out = np.linalg.inv(tb) @ m @ ta
    return out / np.linalg.norm(out)


def _full(c: _Candidates, accepted: np.ndarray, per_pair: int | None) -> tuple[np.ndarray, ...]:
    """All correspondences (pa, pb (N, 2), ha, hb (N,)) of the accepted pairs, at most per_pair from each."""
    parts = []
    for p in accepted:
        qa, qb, ga, gb = c.full[p]
        pick = _even(len(qa), per_pair) if per_pair else slice(None)
        parts.append((qa[pick], qb[pick], ga[pick], gb[pick]))
    return tuple(np.concatenate([part[i] for part in parts]) for i in range(4))


def _hull(points: np.ndarray) -> np.ndarray | None:
    """The edges of the convex hull of points (M, 2) as half-planes (E, 3): n . (x, y) + d <= 0 inside."""
    try:
        return ConvexHull(points).equations
    except (QhullError, ValueError):
        return None


def _in_hull(edges: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Which points (N, 2) lie inside the hull whose half-planes (E, 3) _hull gave: (N,) bool."""
    return np.all(points @ edges[:, :2].T + edges[:, 2] <= 1e-9, axis=1)


def _seen(trajectories: Sequence[Trajectory]) -> np.ndarray:
    """A sample of every foot point (N, 2) the trajectories hold: where their camera sees people."""
    return np.concatenate([t.points[_even(len(t), _COVERAGE_SAMPLES)] for t in trajectories])


def _coverage_one_way(
    h: np.ndarray, source: Sequence[Trajectory], spans: dict[int, list], target: np.ndarray, when: tuple
) -> float:
    """Of the source samples in `when` (start, end) that h projects where the target camera sees people
    (the hull of its foot points (M, 2)), the fraction that a matched pair explains; `spans` maps a
    source index to the time spans its matched pairs cover."""
    hull = _hull(target)
    if hull is None:
        return 0.0
    inside = explained = 0
    for i, t in enumerate(source):
        pick = _even(len(t), _COVERAGE_SAMPLES)
        times, (points, w) = t.times[pick], _transfer(h, t.points[pick])
        seen = (w > 0) & (times >= when[0]) & (times <= when[1])
        seen[seen] = _in_hull(hull, points[seen])
        inside += int(seen.sum())
        for s, e in spans.get(i, ()):
            explained += int(np.sum(seen & (times >= s) & (times <= e)))
    return explained / inside if inside else 0.0


def _coverage(
    h: np.ndarray, a: Sequence[Trajectory], b: Sequence[Trajectory], c: _Candidates, accepted: np.ndarray
) -> float:
    """How much of what each camera sees where the other camera sees people the matched pairs explain.

    Negative evidence: if the views truly overlap, a person whose foot point the mapping puts where the
    other camera sees people is mostly seen there too (misses and occlusions aside); a mapping found by
    chance explains its few pairs and little else. The smaller of the two directions, in [0, 1].
    """
    when = (
        max(min(t.start for t in a), min(t.start for t in b)),
        min(max(t.end for t in a), max(t.end for t in b)),
    )
    spans_a: dict[int, list] = {}
    spans_b: dict[int, list] = {}
    for p in accepted:
        spans_a.setdefault(int(c.a[p]), []).append((c.t0[p], c.t1[p]))
        spans_b.setdefault(int(c.b[p]), []).append((c.t0[p], c.t1[p]))
    forward = _coverage_one_way(h, a, spans_a, _seen(b), when)
    backward = _coverage_one_way(np.linalg.inv(h), b, spans_b, _seen(a), when)
    return min(forward, backward)


@dataclass(frozen=True)
class OverlapModel:
    """A learned mapping of foot points from camera_a's image to camera_b's, with the evidence behind it."""

    camera_a: str
    camera_b: str
    homography: np.ndarray  # (3, 3) float64: homogeneous pixels of a -> b, w > 0 where both see the ground
    inlier_pairs: tuple[tuple[int, int], ...]  # (track id in a, track id in b) the mapping explains
    correspondences: int  # simultaneous foot-point pairs behind the fit
    median_error_px: float  # a's foot points projected into b, distance to b's, in b's pixels
    p90_error_px: float
    median_error_rel: float  # symmetric transfer error in box heights
    p90_error_rel: float
    coverage: float  # share of what one camera sees where the other sees people that pairs explain
    confidence: float  # in [0, 1): grows with independent support, falls with error
    tolerance: float  # box heights within which a pair was counted as one person
    region_a: tuple[float, float, float, float]  # x1, y1, x2, y2 around the foot points behind the fit, in a
    region_b: tuple[float, float, float, float]  # the same in b
    fitted_at: float  # latest time of the evidence, seconds

    def __post_init__(self) -> None:
        _check("homography", self.homography, (3, 3))
        if abs(np.linalg.det(self.homography)) < 1e-12 * np.linalg.norm(self.homography) ** 3:
            raise ValueError("homography must be invertible")

    def project(self, points: np.ndarray) -> np.ndarray:
        """Foot points (N, 2) in a's image mapped into b's image (N, 2); nan beyond a's horizon."""
        out, w = _transfer(self.homography, np.asarray(points, np.float64).reshape(-1, 2))
        out[w <= 0] = np.nan
        return out

    def inverse(self) -> OverlapModel:
        """The same model from b to a."""
        h = np.linalg.inv(self.homography)
        return OverlapModel(
            camera_a=self.camera_b,
            camera_b=self.camera_a,
            homography=h / np.linalg.norm(h),
            inlier_pairs=tuple((b, a) for a, b in self.inlier_pairs),
            correspondences=self.correspondences,
            median_error_px=math.nan,  # measured in b's pixels only
            p90_error_px=math.nan,
            median_error_rel=self.median_error_rel,
            p90_error_rel=self.p90_error_rel,
            coverage=self.coverage,
            confidence=self.confidence,
            tolerance=self.tolerance,
            region_a=self.region_b,
            region_b=self.region_a,
            fitted_at=self.fitted_at,
        )

    def distance(
        self, first: Trajectory, second: Trajectory, *, max_gap_s: float = 1.0, min_common: int = 1
    ) -> float | None:
        """Median symmetric transfer error, in box heights, of two tracklets over the times both are seen.

        One tracklet of each camera, in either order. Small (about the model's median_error_rel) for one
        person, above `tolerance` for two; None where they are seen together fewer than min_common times.
        """
        if (first.camera, second.camera) == (self.camera_b, self.camera_a):
            first, second = second, first
        elif (first.camera, second.camera) != (self.camera_a, self.camera_b):
            raise ValueError(
                f"distance needs one tracklet of {self.camera_a!r} and one of {self.camera_b!r}, "
                f"but got {first.camera!r} and {second.camera!r}"
            )
        _, pa, pb, ha, hb = _simultaneous(first, second, max_gap_s)
        if len(pa) < max(min_common, 1):
            return None
        return float(np.median(_symmetric_errors(self.homography, pa, pb, ha, hb)))

    def to_dict(self) -> dict:
        """Plain data for topology.json."""
        return {
            "version": TOPOLOGY_VERSION,
            "camera_a": self.camera_a,
            "camera_b": self.camera_b,
            "homography": self.homography.tolist(),
            "inlier_pairs": [list(p) for p in self.inlier_pairs],
            "correspondences": self.correspondences,
            "median_error_px": _finite_or_none(self.median_error_px),
            "p90_error_px": _finite_or_none(self.p90_error_px),
            "median_error_rel": self.median_error_rel,
            "p90_error_rel": self.p90_error_rel,
            "coverage": self.coverage,
            "confidence": self.confidence,
            "tolerance": self.tolerance,
            "region_a": list(self.region_a),
            "region_b": list(self.region_b),
            "fitted_at": self.fitted_at,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> OverlapModel:
        """The model to_dict wrote; a missing, unknown or mistyped field is a ValueError."""
        _check_version(data, "overlap model")
        expected = set(cls.__dataclass_fields__) | {"version"}
        if set(data) != expected:
            missing, unknown = sorted(expected - set(data)), sorted(set(data) - expected)
            raise ValueError(f"overlap model: missing fields {missing}, unknown fields {unknown}")
        try:
            return cls(
                camera_a=str(data["camera_a"]),
                camera_b=str(data["camera_b"]),
                homography=np.array(data["homography"], np.float64),
                inlier_pairs=tuple((int(a), int(b)) for a, b in data["inlier_pairs"]),
                correspondences=int(data["correspondences"]),
                median_error_px=_float_or_nan(data["median_error_px"]),
                p90_error_px=_float_or_nan(data["p90_error_px"]),
                median_error_rel=float(data["median_error_rel"]),
                p90_error_rel=float(data["p90_error_rel"]),
                coverage=float(data["coverage"]),
                confidence=float(data["confidence"]),
                tolerance=float(data["tolerance"]),
                region_a=_region(data["region_a"]),
                region_b=_region(data["region_b"]),
                fitted_at=float(data["fitted_at"]),
            )
        except (TypeError, ValueError) as error:
            raise ValueError(
                f"overlap model {data.get('camera_a')!r}-{data.get('camera_b')!r}: {error}"
            ) from None


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _float_or_nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _region(value: Sequence[float]) -> tuple[float, float, float, float]:
    x1, y1, x2, y2 = (float(v) for v in value)
    return x1, y1, x2, y2


def _check_version(data: Mapping, what: str) -> None:
    if not isinstance(data, Mapping):
        raise ValueError(f"{what} must be a mapping, but got {type(data).__name__}")
    if data.get("version") != TOPOLOGY_VERSION:
        raise ValueError(f"{what}: version must be {TOPOLOGY_VERSION}, but got {data.get('version')!r}")


def _bounds(points: np.ndarray) -> tuple[float, float, float, float]:
    x1, y1 = points.min(axis=0)
    x2, y2 = points.max(axis=0)
    return float(x1), float(y1), float(x2), float(y2)


def _on_a_line(c: _Candidates, accepted: np.ndarray) -> bool:
    """Whether the foot points in a behind the accepted pairs (K,) spread too little across their main
    axis to determine a homography."""
    pa, _, ha, _ = _full(c, accepted, None)
    return _spread(pa) < _MODEL_SPREAD * np.median(ha)


def _refit(
    h: np.ndarray, accepted: np.ndarray, c: _Candidates, tolerance: float
) -> tuple[np.ndarray, np.ndarray]:
    """A homography refitted on all correspondences of the pairs it explains, then re-accepted, while
    that explains as many independent pairs."""
    for _ in range(_REFINE_ROUNDS):
        points_a = _full(c, accepted, _FIT_SAMPLES)[0]
        h_new = _plausible(_least_squares(h, *_full(c, accepted, _FIT_SAMPLES)), points_a)
        if h_new is None:
            break
        accepted_new = _one_to_one(c.errors(h_new), c, tolerance)
        if _support(c, accepted_new) < _support(c, accepted):
            break
        h, unchanged, accepted = h_new, np.array_equal(accepted_new, accepted), accepted_new
        if unchanged:
            break
    return h, accepted


def fit_overlap(
    a: Sequence[Trajectory],
    b: Sequence[Trajectory],
    *,
    similarity: Similarity | None = None,
    min_common: int = 5,
    tolerance: float = 0.25,
    min_pairs: int = 3,
    min_correspondences: int = 20,
    min_coverage: float = 0.5,
    max_gap_s: float = 1.0,
    max_iterations: int = 2000,
    seed: int = 0,
    along_a_line: bool = False,
) -> OverlapModel | None:
    """The foot-point mapping from the tracklets of one camera (a) to those of another (b), or None when
    no mapping explains at least min_pairs independent tracklet pairs (the views do not overlap).

    Pairs count when seen together at >= min_common of a's sample times and their median symmetric
    transfer error is below `tolerance` box heights. `similarity` (appearance, per pair of tracklets, any
    scale) only steers which pairs are tried first; it is never required. `along_a_line`: where the foot
    points behind the best homography lie along one line, fit a similarity instead.

    A mapping found by chance explains its few pairs and little else of what each view sees where the
    other sees people (`_coverage`), so a mapping must cover `min_coverage` of it; one that explains k
    independent pairs, min_coverage * sqrt(min_pairs / k), as chance seldom lines up many. Measured on
    the replayed suite with one view's clock shifted by 5 to 80 s (32 recordings whose views then match
    no one): chance mappings of 3 pairs covered up to 0.46, of 5 to 7 pairs at most 0.18; true ones of
    3 pairs 0.68 and more, and the 8 pairs of the warped split's first 28 s 0.48 (its detector misses
    people in the tilted view).
    """
    a, b = [t for t in a if len(t)], [t for t in b if len(t)]
    if not a or not b:
        return None
    cameras_a, cameras_b = {t.camera for t in a}, {t.camera for t in b}
    if len(cameras_a) != 1 or len(cameras_b) != 1 or cameras_a == cameras_b:
        raise ValueError(
            f"fit_overlap needs the tracklets of two cameras, but got {cameras_a} and {cameras_b}"
        )
    camera_a, camera_b = cameras_a.pop(), cameras_b.pop()
    c = _Candidates.build(a, b, min_common, max_gap_s)
    if len(c) < min_pairs:
        logger.debug("%s-%s: %d candidate pairs, too few to fit", camera_a, camera_b, len(c))
        return None
    rng = np.random.default_rng(seed)
    h, accepted = _ransac(c, _sampling_weights(c, a, b, similarity), tolerance, rng, max_iterations)
    if h is not None:
        h, accepted = _refit(h, accepted, c, tolerance)
    line = along_a_line and (h is None or _on_a_line(c, accepted))
    if line:  # people crossed the shared ground along one line so far
        h, accepted = _ransac_line(c, tolerance)
    if h is None:
        logger.debug("%s-%s: no hypothesis explains more than its own pairs", camera_a, camera_b)
        return None
    pa, pb, ha, hb = _full(c, accepted, None)
    support = _support(c, accepted)
    spread = _spread(pa, axis=1 if line else 0)
    needed = (_GUIDE_MOTION if line else _MODEL_SPREAD) * np.median(ha)
    if support < min_pairs or len(pa) < min_correspondences or spread < needed:
        logger.debug(
            "%s-%s: best mapping explains %d pairs, %d correspondences, spread %.0f px: no overlap",
            *(camera_a, camera_b, support, len(pa), spread),
        )
        return None
    if _plausible(h, pa) is None:
        return None
    coverage = _coverage(h, a, b, c, accepted)
    if coverage < min_coverage * math.sqrt(min_pairs / support):
        logger.debug(
            "%s-%s: best mapping explains %d pairs but only %.0f%% of what each view sees of the other: "
            "no overlap",
            *(camera_a, camera_b, support, 100 * coverage),
        )
        return None
    pixel = np.linalg.norm(_transfer(h, pa)[0] - pb, axis=1)  # (N,)
    relative = _symmetric_errors(h, pa, pb, ha, hb)  # (N,)
    median_rel = float(np.median(relative))
    confidence = (1 - math.exp(-support / min_pairs)) * max(0.0, 1 - median_rel / tolerance)
    return OverlapModel(
        camera_a=camera_a,
        camera_b=camera_b,
        homography=h,
        inlier_pairs=tuple(sorted((a[c.a[p]].track_id, b[c.b[p]].track_id) for p in accepted)),
        correspondences=len(pa),
        median_error_px=float(np.median(pixel)),
        p90_error_px=float(np.percentile(pixel, 90)),
        median_error_rel=median_rel,
        p90_error_rel=float(np.percentile(relative, 90)),
        coverage=coverage,
        confidence=float(confidence),
        tolerance=tolerance,
        region_a=_bounds(pa),
        region_b=_bounds(pb),
        fitted_at=float(c.t1[accepted].max()),
    )


class _Samples:
    """The growing samples of one tracklet, kept as lists so that one box per frame appends cheaply."""

    def __init__(self, camera: str, track_id: int) -> None:
        self.camera, self.track_id = camera, track_id
        self.times: list[float] = []
        self.points: list[tuple[float, float]] = []
        self.heights: list[float] = []
        self._cached: Trajectory | None = None

    @classmethod
    def of(cls, trajectory: Trajectory, keep: np.ndarray, track_id: int | None = None) -> _Samples:
        """The samples of `trajectory` where `keep` (bool per sample), as tracklet `track_id` (default:
        the trajectory's)."""
        samples = cls(trajectory.camera, trajectory.track_id if track_id is None else track_id)
        samples.times = trajectory.times[keep].tolist()
        samples.points = list(map(tuple, trajectory.points[keep].tolist()))
        samples.heights = trajectory.heights[keep].tolist()
        return samples

    @property
    def end(self) -> float:
        return self.times[-1] if self.times else -math.inf

    def add(self, time: float, point: tuple[float, float], height: float) -> None:
        if self.times and time <= self.times[-1]:
            self.merge(Trajectory.from_arrays(self.camera, self.track_id, [time], [point], [height]))
            return
        self.times.append(time)
        self.points.append(point)
        self.heights.append(height)
        self._cached = None

    def merge(self, trajectory: Trajectory) -> None:
        """Take in a trajectory's samples; at a time both hold, the trajectory's sample wins."""
        if not len(trajectory):
            return
        if not self.times or trajectory.start > self.times[-1]:
            self.times.extend(trajectory.times.tolist())
            self.points.extend(map(tuple, trajectory.points.tolist()))
            self.heights.extend(trajectory.heights.tolist())
        else:
            old = self.trajectory()
            merged = Trajectory.from_arrays(
                self.camera,
                self.track_id,
                np.concatenate([old.times, trajectory.times]),
                np.concatenate([old.points, trajectory.points]),
                np.concatenate([old.heights, trajectory.heights]),
            )
            self.times, self.heights = merged.times.tolist(), merged.heights.tolist()
            self.points = list(map(tuple, merged.points.tolist()))
        self._cached = None

    def trajectory(self) -> Trajectory:
        if self._cached is None:
            self._cached = Trajectory(
                self.camera,
                self.track_id,
                np.array(self.times, np.float64),
                np.array(self.points, np.float64).reshape(-1, 2),
                np.array(self.heights, np.float64),
            )
        return self._cached


@dataclass
class _PairState:
    """What the learner knows about one camera pair."""

    model: OverlapModel | None = None
    since: float = -math.inf  # evidence before this time is no longer trusted (a dropped model's)
    evidence_at_fit: float = 0.0  # co-visible tracklet seconds at the last fit attempt
    attempted_at: float = -math.inf  # data time of the last fit attempt
    checked_until: float = -math.inf  # fresh errors measured up to this time
    last_check: float = -math.inf
    errors: deque = field(default_factory=deque)  # (start time, pair error) of fresh matched pairs


class OverlapLearner:
    """Learns, online, which camera pairs overlap and how foot points map between them, from the tracks.

    Feed it trajectories (whole tracklets or new pieces) or per-frame boxes; every `check_interval_s` of
    data time it measures each model's error on the fresh correspondences, drops a model whose rolling
    error rises above `drop_error`, and refits a camera pair when its evidence (seconds of tracklets seen
    at once by both cameras) has grown by `refit_growth` since the last attempt, or `refit_interval_s`
    have passed.
    """

    def __init__(
        self,
        *,
        similarity: Similarity | None = None,
        min_common: int = 5,
        tolerance: float = 0.25,
        min_pairs: int = 3,
        min_correspondences: int = 20,
        min_coverage: float = 0.5,
        max_gap_s: float = 1.0,
        refit_growth: float = 1.5,
        refit_interval_s: float = 300.0,
        check_interval_s: float = 2.0,
        error_window: int = 30,
        drop_error: float | None = None,
        memory_s: float = 900.0,
        seed: int = 0,
    ) -> None:
        if refit_growth <= 1:
            raise ValueError(f"refit_growth must be > 1, but got {refit_growth}")
        self.similarity = similarity
        self.fit_options = dict(
            min_common=min_common,
            tolerance=tolerance,
            min_pairs=min_pairs,
            min_correspondences=min_correspondences,
            min_coverage=min_coverage,
            max_gap_s=max_gap_s,
            seed=seed,
        )
        self.tolerance = tolerance
        self.max_gap_s = max_gap_s
        self.refit_growth = refit_growth
        self.refit_interval_s = refit_interval_s
        self.check_interval_s = check_interval_s
        self.error_window = error_window
        self.drop_error = tolerance if drop_error is None else drop_error
        self.memory_s = memory_s
        self.reset()

    def reset(self) -> None:
        """Forget all tracklets and models."""
        self._samples: dict[Key, _Samples] = {}  # where each tracklet's feet were seen
        self._bottoms: dict[Key, _Samples] = {}  # the bottom-centre of each of its boxes, cut ones too
        self._latest: dict[str, float] = {}
        self._pairs: dict[tuple[str, str], _PairState] = {}

    def update(self, trajectories: Iterable[Trajectory]) -> list[tuple[str, str]]:
        """Take in new trajectory data; the camera pairs (a, b), a < b, whose model changed."""
        for t in trajectories:
            if len(t):
                self._tracklet(t.camera, t.track_id).merge(t)
                self._tracklet(t.camera, t.track_id, self._bottoms).merge(t)
                self._latest[t.camera] = max(self._latest.get(t.camera, -math.inf), t.end)
        return self._maintain()

    def add_boxes(
        self, camera: str, timestamp: float, track_ids, xyxy, image_size: tuple[int, int] | None = None
    ) -> list[tuple[str, str]]:
        """Take in one frame's tracks of one camera, ids (N,) and boxes (N, 4) x1, y1, x2, y2; as update.

        With the frame's `image_size` (width, height), a box cut by the bottom of the view does not show
        where its person stands: the mappings are learned without it, and it is one of the tracklet's
        `bottoms` only.
        """
        xyxy = np.asarray(xyxy, np.float64).reshape(-1, 4)
        ids = np.asarray(track_ids).reshape(-1)
        if len(ids) != len(xyxy):
            raise ValueError(f"track_ids must have shape ({len(xyxy)},), but got shape {ids.shape}")
        for tid, (x1, y1, x2, y2) in zip(ids.tolist(), xyxy.tolist()):
            if y2 <= y1:
                continue
            sample = (float(timestamp), ((x1 + x2) / 2, y2), y2 - y1)
            self._tracklet(camera, int(tid), self._bottoms).add(*sample)
            if image_size is None or y2 < image_size[1] - BORDER_PX:
                self._tracklet(camera, int(tid)).add(*sample)
        self._latest[camera] = max(self._latest.get(camera, -math.inf), float(timestamp))
        return self._maintain()

    def finish(self) -> list[tuple[str, str]]:
        """All the data is in: fit once more, to all of it, each camera pair without a model (attempts
        wait for the evidence to grow by `refit_growth`, so the last of a run may have seen little more
        than half of it); the pairs (a, b) that found one.

        Where people crossed the ground two views share along one line only, the mapping is a similarity
        (`along_a_line`): known along the line, a guess across it. Live decisions never see it, since
        links made on a guess would last; the run's re-solving at its end has nothing better."""
        found = []
        for (a, b), state in sorted(self._pairs.items()):
            if state.model is not None:
                continue
            now = min(self._latest[a], self._latest[b])
            evidence = self._evidence(a, b, state.since, now)
            if self._fit(a, b, state, now, evidence, along_a_line=True):
                found.append((a, b))
        return found

    def model(self, a: str, b: str) -> OverlapModel | None:
        """The current mapping from camera a to camera b, or None while they are not known to overlap."""
        state = self._pairs.get((min(a, b), max(a, b)))
        if state is None or state.model is None:
            return None
        return state.model if state.model.camera_a == a else state.model.inverse()

    def models(self) -> dict[tuple[str, str], OverlapModel]:
        """Every current model, keyed by its (camera_a, camera_b)."""
        return {key: s.model for key, s in self._pairs.items() if s.model is not None}

    def rolling_error(self, a: str, b: str) -> float | None:
        """Median error in box heights of the fresh pairs matched under the current model, if any."""
        state = self._pairs.get((min(a, b), max(a, b)))
        if state is None or not state.errors:
            return None
        return float(np.median([e for _, e in state.errors]))

    def trajectory(self, camera: str, track_id: int, *, bottoms: bool = False) -> Trajectory | None:
        """What the learner remembers of one tracklet, or None: where its feet were seen, or with
        `bottoms`, the bottom-centres of all its boxes, those cut by the bottom of the view included."""
        samples = (self._bottoms if bottoms else self._samples).get((camera, track_id))
        return None if samples is None else samples.trajectory()

    def split_track(self, camera: str, track_id: int, at: float, new_track_id: int) -> None:
        """What the learner holds of one tracklet from time `at` on becomes the tracklet `new_track_id`'s
        (a track that switched people, cut in two)."""
        for table in (self._samples, self._bottoms):
            samples = table.get((camera, track_id))
            if samples is None:
                continue
            whole = samples.trajectory()
            later = whole.times >= at
            table[camera, track_id] = _Samples.of(whole, ~later)
            table[camera, new_track_id] = _Samples.of(whole, later, new_track_id)

    def trajectories(self, camera: str) -> list[Trajectory]:
        """The tracklets of one camera the learner remembers."""
        return [s.trajectory() for (c, _), s in self._samples.items() if c == camera]

    def to_dict(self) -> dict:
        """The learned overlaps for topology.json: every model, and the pairs tried without one."""
        return {
            "version": TOPOLOGY_VERSION,
            "overlaps": [s.model.to_dict() for _, s in sorted(self._pairs.items()) if s.model is not None],
            "no_overlap": [
                {"cameras": list(key), "evidence_s": s.evidence_at_fit}
                for key, s in sorted(self._pairs.items())
                if s.model is None and s.evidence_at_fit > 0
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping, **kwargs) -> OverlapLearner:
        """A learner that starts from the models to_dict wrote; they stay until fresh evidence refutes them."""
        _check_version(data, "topology overlaps")
        unknown = sorted(set(data) - {"version", "overlaps", "no_overlap"})
        if unknown:
            raise ValueError(f"topology overlaps: unknown fields {unknown}")
        learner = cls(**kwargs)
        for item in data.get("overlaps", ()):
            model = OverlapModel.from_dict(item)
            if model.camera_a > model.camera_b:
                model = model.inverse()
            learner._pairs[(model.camera_a, model.camera_b)] = _PairState(model=model)
        return learner

    def _tracklet(self, camera: str, track_id: int, table: dict[Key, _Samples] | None = None) -> _Samples:
        """The samples of one tracklet in `table` (default: where its feet were seen)."""
        table = self._samples if table is None else table
        key = (camera, track_id)
        if key not in table:
            table[key] = _Samples(camera, track_id)
        return table[key]

    def _maintain(self) -> list[tuple[str, str]]:
        """Measure fresh errors, drop and refit models where due; the pairs whose model changed."""
        if not self._latest:
            return []
        horizon = max(self._latest.values()) - self.memory_s
        for table in (self._samples, self._bottoms):
            for key in [k for k, s in table.items() if s.end < horizon]:
                del table[key]
        changed = []
        cameras = sorted(self._latest)
        for i, a in enumerate(cameras):
            for b in cameras[i + 1 :]:
                state = self._pairs.setdefault((a, b), _PairState())
                now = min(self._latest[a], self._latest[b])
                if now - state.last_check < self.check_interval_s:
                    continue
                state.last_check = now
                if self._check(a, b, state, now):
                    changed.append((a, b))
        return changed

    def _window(self, camera: str, start: float, end: float) -> list[Trajectory]:
        out = []
        for (c, _), s in self._samples.items():
            if c == camera and s.end >= start and s.times[0] <= end:
                t = s.trajectory()
                out.append(t if t.start >= start and t.end <= end else t.between(start, end))
        return [t for t in out if len(t)]

    def _check(self, a: str, b: str, state: _PairState, now: float) -> bool:
        """One check of a camera pair at data time `now`; True when its model changed."""
        changed = False
        if state.model is not None and self._fresh_error_too_high(a, b, state, now):
            logger.info(
                "%s-%s: dropped the overlap model, its error on fresh tracks rose to %.2f box heights",
                *(a, b, self.rolling_error(a, b)),
            )
            # trust the evidence from the last pair the model still explained on: later rather than
            # earlier, so that the old geometry's evidence cannot bring the dropped model back
            good = [t for t, e in state.errors if e <= self.drop_error]
            state.since = max(good) if good else min(t for t, _ in state.errors)
            state.model, state.evidence_at_fit = None, 0.0
            state.errors.clear()
            changed = True
        state.checked_until = now
        evidence = self._evidence(a, b, state.since, now)
        grown = evidence >= self.refit_growth * state.evidence_at_fit and evidence > 0
        stale = now - state.attempted_at >= self.refit_interval_s and evidence > state.evidence_at_fit
        if not (grown or stale):
            return changed
        return self._fit(a, b, state, now, evidence) or changed

    def _fit(
        self, a: str, b: str, state: _PairState, now: float, evidence: float, along_a_line: bool = False
    ) -> bool:
        """Fit a camera pair's mapping to its trusted tracklets up to data time `now` (`evidence`: their
        co-visible seconds); True when a model was found (a model stays until fresh evidence refutes it).
        `along_a_line` as in `fit_overlap`."""
        state.evidence_at_fit, state.attempted_at = evidence, now
        model = fit_overlap(
            self._window(a, state.since, now),
            self._window(b, state.since, now),
            similarity=self.similarity,
            along_a_line=along_a_line,
            **self.fit_options,
        )
        if model is None:
            return False
        if state.model is None:
            logger.info(
                "%s-%s: the views overlap: %d tracklet pairs, median error %.1f px (%.2f box heights)",
                *(a, b, len(model.inlier_pairs), model.median_error_px, model.median_error_rel),
            )
        state.model = model
        state.errors.clear()
        return True

    def _fresh_error_too_high(self, a: str, b: str, state: _PairState, now: float) -> bool:
        """Add the errors of the fresh tracklets to the rolling window; True when its median is above
        drop_error.

        A fresh tracklet of either camera that the model puts where the other camera sees people counts
        with the error of the tracklet it is matched to there, or as a miss (error at the gate) when it
        is matched to none: a model that no longer fits stops matching, and misses are what show it.
        """
        assert state.model is not None
        start = max(state.checked_until, state.since)
        if now <= start:
            return False
        fresh = {camera: self._window(camera, start, now) for camera in (a, b)}
        if not fresh[a] and not fresh[b]:
            return False
        gate = 2 * self.tolerance  # wide: the pairs of a drifting model still count with their error
        c = _Candidates.build(fresh[a], fresh[b], _FRESH_MIN_COMMON, self.max_gap_s)
        errors = c.errors(state.model.homography) if len(c) else np.zeros(0)
        matched = _one_to_one(errors, c, gate) if len(c) else np.zeros(0, int)
        for p in matched:
            state.errors.append((float(c.t0[p]), float(errors[p])))
        found = {a: set(c.a[matched].tolist()), b: set(c.b[matched].tolist())}
        mappings = {a: state.model.homography, b: np.linalg.inv(state.model.homography)}
        for source, target in ((a, b), (b, a)):
            remembered = self.trajectories(target)
            hull = _hull(_seen(remembered)) if remembered else None
            if hull is None:
                continue
            for i, t in enumerate(fresh[source]):
                if i in found[source] or len(t) < _FRESH_MIN_COMMON:
                    continue
                points, w = _transfer(mappings[source], t.points)
                if np.all(w > 0) and np.mean(_in_hull(hull, points)) > 0.5:
                    state.errors.append((t.start, gate))  # where the other camera sees people, yet unseen
        while len(state.errors) > self.error_window:
            state.errors.popleft()
        return len(state.errors) >= _MIN_ERROR_PAIRS and self.rolling_error(a, b) > self.drop_error

    def _evidence(self, a: str, b: str, start: float, end: float) -> float:
        """Seconds during which a tracklet of a and one of b were both seen, summed over tracklet pairs."""
        spans = {}
        for camera in (a, b):
            rows = [(s.times[0], s.end) for (c, _), s in self._samples.items() if c == camera and s.times]
            spans[camera] = np.clip(np.array(rows, np.float64).reshape(-1, 2), start, end)  # (N, 2)
        sa, sb = spans[a], spans[b]
        together = np.minimum.outer(sa[:, 1], sb[:, 1]) - np.maximum.outer(sa[:, 0], sb[:, 0])  # (Na, Nb)
        return float(np.clip(together, 0, None).sum())
