"""Score calibration: re-ID cosine similarity -> log-likelihood ratio of "same person" vs "different people".

What a similarity means depends on the model and on the site (crop size, light, clothes), so one global
threshold fits neither. The tracking constraints label pairs for free: the two halves of one continuous
local track are the same person, two tracks seen at the same time in one camera (or at once in two cameras
that do not overlap) are different people. `ScoreCalibration` learns from those labels, per site and per
model, how the similarities of the two classes are distributed and turns a similarity into
``log p(s | same) / p(s | different)``, a score that adds to the log-likelihood ratios of geometry and
timing. Until enough labels have been seen it follows a logistic prior around a configured threshold, and
it moves from the prior to the learned ratio as labels accumulate.

Both classes are measured on aggregated features, as the matcher compares them: the quality-weighted,
normalised mean of a tracklet's embeddings against the mean of another tracklet's. A positive is the
cosine between the means of the first and the second half of one tracklet; a negative is the cosine between
half-means of two tracklets, so both classes average the same number of crops.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Hashable, Iterable
from dataclasses import asdict, dataclass
from typing import Any, overload

import numpy as np
from numpy.typing import ArrayLike
from scipy.ndimage import gaussian_filter1d
from scipy.optimize import brentq

logger = logging.getLogger(__name__)

VERSION = 1
_Z_MAX = float(np.arctanh(0.999))  # cosines beyond +-0.999 share the outermost bins
_BINS = 380  # 0.02 wide in Fisher z: 0.005 in cosine at 0.85, 0.001 at 0.97
_EDGES = np.linspace(-_Z_MAX, _Z_MAX, _BINS + 1)
_CENTRES = (_EDGES[:-1] + _EDGES[1:]) / 2
_BIN_WIDTH = float(_EDGES[1] - _EDGES[0])
_FLOOR_COUNTS = 1.0  # pseudo-count spread over all bins, so a bin one class never reached has a finite ratio


def _fisher_z(sims: np.ndarray) -> np.ndarray:
    """Fisher's z of cosine similarities: stretches the crowded top of the range so one bandwidth fits all."""
    return np.arctanh(np.clip(sims, -0.999, 0.999))


def _bin(sims: np.ndarray) -> np.ndarray:
    """Counts (_BINS,) of the similarities per Fisher-z bin."""
    index = np.clip(np.searchsorted(_EDGES, _fisher_z(sims), side="right") - 1, 0, _BINS - 1)
    return np.bincount(index, minlength=_BINS).astype(np.float64)


def _weighted_quantile(counts: np.ndarray, q: float) -> float:
    """The q-quantile (Fisher z) of the histogram `counts` (_BINS,)."""
    cumulative = np.cumsum(counts)
    return float(np.interp(q * cumulative[-1], cumulative, _CENTRES))


def _density(counts: np.ndarray) -> np.ndarray:
    """A smoothed probability per bin (_BINS,): binned Gaussian KDE, Silverman's bandwidth, plus a floor."""
    n = counts.sum()
    mean = float(counts @ _CENTRES / n)
    std = float(np.sqrt(counts @ (_CENTRES - mean) ** 2 / n))
    iqr = _weighted_quantile(counts, 0.75) - _weighted_quantile(counts, 0.25)
    spread = min(std, iqr / 1.349) if iqr > 0 else std  # robust to the odd mislabelled pair
    bandwidth = max(0.9 * spread * n**-0.2, 2 * _BIN_WIDTH)
    smooth = gaussian_filter1d(counts, bandwidth / _BIN_WIDTH, mode="constant", truncate=5.0)
    smooth *= n / max(smooth.sum(), 1e-12)  # mass lost past the outer bins
    return (smooth + _FLOOR_COUNTS / _BINS) / (n + _FLOOR_COUNTS)


def _isotonic(values: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The non-decreasing sequence closest to `values` (N,) in weighted least squares (pool adjacent violators)."""
    means: list[float] = []
    masses: list[float] = []
    sizes: list[int] = []
    for value, weight in zip(values.tolist(), weights.tolist(), strict=True):
        means.append(value)
        masses.append(weight)
        sizes.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            mass = masses[-2] + masses[-1]
            mean = (means[-2] * masses[-2] + means[-1] * masses[-1]) / mass
            size = sizes[-2] + sizes[-1]
            del means[-1], masses[-1], sizes[-1]
            means[-1], masses[-1], sizes[-1] = mean, mass, size
    return np.repeat(np.array(means), sizes)


def _summary_stats(counts: np.ndarray) -> tuple[float | None, float | None]:
    """Median cosine and Fisher-z standard deviation of a histogram; None for an empty one."""
    n = counts.sum()
    if n == 0:
        return None, None
    mean = counts @ _CENTRES / n
    return float(np.tanh(_weighted_quantile(counts, 0.5))), float(
        np.sqrt(counts @ (_CENTRES - mean) ** 2 / n)
    )


@dataclass(frozen=True)
class CalibrationSummary:
    """What a calibration has learned, for logs and topology.json.

    `weight` is the share of the learned ratio in the score (0: prior only); `threshold` is the similarity
    where the score is 0, `learned_threshold` the same for the learned ratio alone (None before it exists).
    Medians are cosines; spreads are standard deviations in Fisher z; `d_prime` is the distance between the
    two classes' means in units of their pooled spread.
    """

    positives: int
    negatives: int
    weight: float
    threshold: float
    learned_threshold: float | None
    prior_threshold: float
    positive_median: float | None
    negative_median: float | None
    positive_spread: float | None
    negative_spread: float | None
    d_prime: float | None


@dataclass
class _Observed:
    """A tracklet kept for pairing with later ones: where and when it was seen, and its two half-means."""

    camera: str
    first_time: float
    last_time: float
    halves: np.ndarray  # (2, D) float32, unit rows


class ScoreCalibration:
    """Learns, online, the log-likelihood ratio of "same person" for a cosine similarity of aggregated features.

    Labels come in through `observe_tracklet` (each local tracklet once, when it ends, with its embeddings in
    time order) or directly through `add_positive` / `add_negative`. Each class is kept as a histogram over
    Fisher z of the cosine and smoothed into a density (a binned Gaussian KDE with a floor); the log ratio
    of the two densities is made non-decreasing in similarity (isotonic regression) and clipped to
    +-`max_llr`.

    Before `min_labels` positives and negatives have been seen, `llr` is the prior
    ``(sim - prior_threshold) / prior_scale`` (a logistic posterior around the configured threshold, also
    clipped); after, it is ``w * learned + (1 - w) * prior`` with ``w = 1 - min_labels / n``, n the smaller
    of the two label counts, so the learned ratio takes over as evidence grows. `min_labels=None` keeps the
    prior for good (a threshold the user set by hand).

    Pairs for negatives are formed among the last `memory` observed tracklets: two tracklets of one camera
    whose time spans overlap by more than `min_overlap_s` seconds, or of two cameras listed in
    `non_overlapping`. Tracklets with fewer than `min_embeddings` embeddings are ignored. All times share
    one clock.

    A brief sighting, a tracklet of fewer crops than `min_embeddings`, looks less like its own person than
    a long one: its mean averages out less of the pose and the crop. So each observed tracklet also gives,
    for every k below `min_embeddings`, the positive of its first k crops against its later half; once k
    has `min_labels` of them, a comparison whose fewest crops are k (`llr(sims, crops)`) reads the
    similarity against those positives, and its prior moves down by as much as their median lies under the
    median of all positives. Different people look no less alike in a brief sighting, so the negatives
    stay the same.

    Two biases remain, in opposite directions: positives come from within one track, a little more alike
    than two sightings of one person far apart or in two cameras (the threshold comes out stricter), and
    half-means average half the crops of the whole tracklets the matcher compares, which lowers the
    similarities of both classes (the threshold comes out more lenient).
    """

    def __init__(
        self,
        *,
        prior_threshold: float = 0.85,
        prior_scale: float = 0.05,
        min_labels: int | None = 30,
        max_llr: float = 6.0,
        min_embeddings: int = 4,
        non_overlapping: Iterable[tuple[str, str]] = (),
        min_overlap_s: float = 0.0,
        memory: int = 512,
        model: str = "",
    ) -> None:
        if not -1.0 < prior_threshold < 1.0:
            raise ValueError(f"prior_threshold must be in (-1, 1), but got {prior_threshold}")
        if prior_scale <= 0 or max_llr <= 0:
            raise ValueError(f"prior_scale and max_llr must be > 0, but got {prior_scale} and {max_llr}")
        if min_labels is not None and min_labels < 1:
            raise ValueError(f"min_labels must be >= 1 or None, but got {min_labels}")
        if min_embeddings < 2 or memory < 1 or min_overlap_s < 0:
            raise ValueError(
                f"min_embeddings must be >= 2, memory >= 1 and min_overlap_s >= 0, but got {min_embeddings}, "
                f"{memory} and {min_overlap_s}"
            )
        self.prior_threshold = float(prior_threshold)
        self.prior_scale = float(prior_scale)
        self.min_labels = min_labels
        self.max_llr = float(max_llr)
        self.min_embeddings = min_embeddings
        self.non_overlapping = {frozenset(pair) for pair in non_overlapping}
        self.min_overlap_s = float(min_overlap_s)
        self.memory = memory
        self.model = model
        self._positive = np.zeros(_BINS)  # (_BINS,) label counts per Fisher-z bin
        self._negative = np.zeros(_BINS)
        # k -> positives of a tracklet's first k crops against its later half, k < min_embeddings
        self._brief_positive = {k: np.zeros(_BINS) for k in range(1, min_embeddings)}
        self._observed: OrderedDict[Hashable, _Observed] = OrderedDict()
        # crops (0: as many as a tracklet has) -> learned LLR (_BINS,) at the bin centres, cached
        self._learned: dict[int, np.ndarray] = {}

    # -- labels ------------------------------------------------------------------------------------

    def add_positive(self, sims: ArrayLike) -> None:
        """Count cosine similarities of pairs known to be the same person."""
        self._positive += _bin(np.asarray(sims, np.float64).ravel())
        self._learned = {}

    def add_negative(self, sims: ArrayLike) -> None:
        """Count cosine similarities of pairs known to be different people."""
        self._negative += _bin(np.asarray(sims, np.float64).ravel())
        self._learned = {}

    def observe_tracklet(
        self,
        key: Hashable,
        camera: str,
        first_time: float,
        last_time: float,
        embeddings: np.ndarray,
        weights: np.ndarray | None = None,
    ) -> tuple[int, int]:
        """Learn from one ended tracklet: its embeddings (N, D) in time order, `weights` (N,) their quality.

        Adds the positive of its two halves (and of its first k crops against its later half, for each k
        below `min_embeddings` and its half) and a negative for every remembered tracklet it must differ
        from; returns how many positives of its halves and negatives were added. A key still remembered is
        ignored.
        """
        embeddings = np.asarray(embeddings, np.float64)
        if embeddings.ndim != 2:
            raise ValueError(f"embeddings must have shape (N, D), but got shape {embeddings.shape}")
        n = len(embeddings)
        weights = np.ones(n) if weights is None else np.asarray(weights, np.float64)
        if weights.shape != (n,):
            raise ValueError(f"weights must have shape ({n},), but got shape {weights.shape}")
        if last_time < first_time:
            raise ValueError(f"last_time must be >= first_time, but got {last_time} < {first_time}")
        if key in self._observed:
            logger.debug("tracklet %s observed twice: ignored", key)
            return 0, 0
        if n < self.min_embeddings:
            return 0, 0
        half = n // 2  # an odd tracklet's middle embedding is left out, so both halves average as many
        halves = np.stack(
            [_mean(embeddings[:half], weights[:half]), _mean(embeddings[n - half :], weights[n - half :])]
        )  # (2, D)
        for k, counts in self._brief_positive.items():
            if k < half:
                counts += _bin(np.atleast_1d(_mean(embeddings[:k], weights[:k]) @ halves[1]))
        self.add_positive(halves[0] @ halves[1])  # after the brief positives: it clears every learned ratio
        others = [
            other
            for other in self._observed.values()
            if other.halves.shape[1] == halves.shape[1]
            and self._different(other, camera, first_time, last_time)
        ]
        if others:
            # the remembered tracklet's later half against the new one's earlier half: one cosine per pair
            self.add_negative(np.stack([other.halves[1] for other in others]) @ halves[0])
        self._observed[key] = _Observed(
            camera, float(first_time), float(last_time), halves.astype(np.float32)
        )
        while len(self._observed) > self.memory:
            self._observed.popitem(last=False)
        return 1, len(others)

    def _different(self, other: _Observed, camera: str, first_time: float, last_time: float) -> bool:
        """Whether a remembered tracklet and a new one must be different people: seen at once where one can't be."""
        overlap = min(other.last_time, last_time) - max(other.first_time, first_time)
        if overlap <= self.min_overlap_s:  # strictly: a track that starts as another ends may be its switch
            return False
        return other.camera == camera or frozenset((other.camera, camera)) in self.non_overlapping

    @property
    def positives(self) -> int:
        """The number of same-person similarities counted."""
        return int(self._positive.sum())

    @property
    def negatives(self) -> int:
        """The number of different-people similarities counted."""
        return int(self._negative.sum())

    @property
    def weight(self) -> float:
        """The share of the learned ratio in `llr`: 0 before `min_labels` of each class, towards 1 after."""
        if self.min_labels is None:
            return 0.0
        n = min(self.positives, self.negatives)
        return 0.0 if n < self.min_labels else 1.0 - self.min_labels / n

    # -- scores ------------------------------------------------------------------------------------

    @overload
    def llr(self, sims: float, crops: int | None = None) -> float: ...

    @overload
    def llr(self, sims: np.ndarray, crops: ArrayLike | None = None) -> np.ndarray: ...

    def llr(self, sims: float | ArrayLike, crops: ArrayLike | None = None) -> float | np.ndarray:
        """The log-likelihood ratio of "same person" for cosine similarities; same shape, non-decreasing.

        `crops`: the fewest crops either side of each comparison averages (broadcast to the shape of
        `sims`; None: enough). Comparisons of a brief sighting are read as such once the calibration has
        learned how alike one looks to its own person (see the class).
        """
        values = np.asarray(sims, np.float64)
        prior = self._prior(values)
        weight = self.weight
        if weight == 0.0:
            out = prior
        else:
            z = _fisher_z(values)
            learned = np.interp(z, _CENTRES, self._learned_llr())
            if crops is not None:
                crops = np.broadcast_to(np.asarray(crops), values.shape)
                for k, counts in self._brief_positive.items():
                    brief = crops == k
                    if brief.any() and counts.sum() >= self.min_labels:
                        learned = np.where(brief, np.interp(z, _CENTRES, self._learned_llr(k)), learned)
                        prior = np.where(brief, self._prior(values + self._brief_drop(counts)), prior)
            out = weight * learned + (1.0 - weight) * prior
        return float(out) if out.ndim == 0 else out

    def _prior(self, values: np.ndarray) -> np.ndarray:
        """The logistic prior's log ratio around `prior_threshold`, clipped."""
        return np.clip((values - self.prior_threshold) / self.prior_scale, -self.max_llr, self.max_llr)

    def _brief_drop(self, counts: np.ndarray) -> float:
        """How far (cosine, >= 0) the median of the positives `counts` lies under that of all positives."""
        median = float(np.tanh(_weighted_quantile(self._positive, 0.5)))
        return max(median - float(np.tanh(_weighted_quantile(counts, 0.5))), 0.0)

    def threshold_at(self, llr: float = 0.0) -> float:
        """The similarity where `llr` reaches `llr` (0: same and different equally likely); +-1 if never."""
        return self._solve(self.llr, llr)

    def _solve(self, score, target: float) -> float:
        """The cosine where the non-decreasing `score` crosses `target`, clamped to [-1, 1]."""
        grid = np.tanh(_CENTRES)
        values = score(grid) - target
        if values[0] >= 0:
            return -1.0
        if values[-1] < 0:
            return 1.0
        above = int(np.argmax(values >= 0))
        at = int(len(values) - np.argmax(values[::-1] <= 0))  # a flat stretch at the target: its middle
        if at - 1 > above:
            return float((grid[above] + grid[at - 1]) / 2)
        return float(brentq(lambda s: float(score(np.asarray(s))) - target, grid[above - 1], grid[above]))

    def _learned_llr(self, crops: int = 0) -> np.ndarray:
        """The learned log ratio (_BINS,) at the bin centres, of comparisons whose fewest crops are
        `crops` (0: as many as a tracklet has); non-decreasing and clipped."""
        if crops not in self._learned:
            counts = self._brief_positive[crops] if crops else self._positive
            positive, negative = _density(counts), _density(self._negative)
            raw = np.log(positive) - np.log(negative)
            monotone = _isotonic(raw, positive + negative)  # tails where neither class lives weigh little
            self._learned[crops] = np.clip(monotone, -self.max_llr, self.max_llr)
        return self._learned[crops]

    def summary(self) -> CalibrationSummary:
        """The label counts, the thresholds and the shape of both classes."""
        learned = None
        if self.weight > 0:
            table = self._learned_llr()
            learned = self._solve(lambda s: np.interp(_fisher_z(s), _CENTRES, table), 0.0)
        positive_median, positive_spread = _summary_stats(self._positive)
        negative_median, negative_spread = _summary_stats(self._negative)
        d_prime = None
        if positive_spread is not None and negative_spread is not None:
            gap = (
                self._positive @ _CENTRES / self._positive.sum()
                - self._negative @ _CENTRES / self._negative.sum()
            )
            pooled = np.sqrt((positive_spread**2 + negative_spread**2) / 2)
            d_prime = float(gap / pooled) if pooled > 0 else None
        return CalibrationSummary(
            positives=self.positives,
            negatives=self.negatives,
            weight=self.weight,
            threshold=self.threshold_at(0.0),
            learned_threshold=learned,
            prior_threshold=self.prior_threshold,
            positive_median=positive_median,
            negative_median=negative_median,
            positive_spread=positive_spread,
            negative_spread=negative_spread,
            d_prime=d_prime,
        )

    # -- persistence -------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready record of the settings and label histograms (not the remembered tracklets)."""
        return {
            "version": VERSION,
            "model": self.model,
            "prior_threshold": self.prior_threshold,
            "prior_scale": self.prior_scale,
            "min_labels": self.min_labels,
            "max_llr": self.max_llr,
            "bins": {"space": "fisher_z", "count": _BINS, "z_max": _Z_MAX},
            "positives": _sparse(self._positive),
            "negatives": _sparse(self._negative),
            "brief_positives": {str(k): _sparse(counts) for k, counts in self._brief_positive.items()},
            "summary": asdict(self.summary()),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], **overrides: Any) -> ScoreCalibration:
        """A calibration from `to_dict` output; keyword `overrides` replace its stored settings."""
        version = data.get("version")
        if version != VERSION:
            raise ValueError(f"score calibration version must be {VERSION}, but got {version!r}")
        bins = data.get("bins", {})
        if bins.get("count") != _BINS or not np.isclose(bins.get("z_max", 0.0), _Z_MAX):
            raise ValueError(f"score calibration bins must be {_BINS} up to z {_Z_MAX:.4f}, but got {bins}")
        settings = {
            name: data[name] for name in ("model", "prior_threshold", "prior_scale", "min_labels", "max_llr")
        }
        calibration = cls(**{**settings, **overrides})
        calibration._positive = _dense(data["positives"], "positives")
        calibration._negative = _dense(data["negatives"], "negatives")
        for k, record in data.get("brief_positives", {}).items():  # absent before they were learned
            if int(k) in calibration._brief_positive:
                calibration._brief_positive[int(k)] = _dense(record, f"brief_positives {k}")
        return calibration


def _mean(embeddings: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """The normalised weighted mean (D,) of embeddings (N, D), as the matcher aggregates a tracklet."""
    total = (embeddings * np.maximum(weights, 1e-6)[:, None]).sum(axis=0)
    return total / max(float(np.linalg.norm(total)), 1e-12)


def _sparse(counts: np.ndarray) -> dict[str, list[int]]:
    """Histogram counts as the indices and counts of the non-empty bins."""
    index = np.flatnonzero(counts)
    return {"bins": index.tolist(), "counts": np.rint(counts[index]).astype(int).tolist()}


def _dense(record: dict[str, list[int]], name: str) -> np.ndarray:
    """The counts (_BINS,) of a `_sparse` record, checked."""
    index = np.asarray(record.get("bins", []), np.int64)
    counts = np.asarray(record.get("counts", []), np.float64)
    if index.shape != counts.shape or index.ndim != 1:
        raise ValueError(
            f"{name}: bins and counts must be two lists of one length, but got {index.shape} and {counts.shape}"
        )
    if index.size and (index.min() < 0 or index.max() >= _BINS or counts.min() < 0):
        raise ValueError(f"{name}: bins must be in [0, {_BINS}) and counts >= 0")
    dense = np.zeros(_BINS)
    np.add.at(dense, index, counts)
    return dense
