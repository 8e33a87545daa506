"""Disjoint views: where people leave and enter each camera, and how long they take between cameras.

Learned from identities, the classic way (Makris, Ellis & Black 2004; Javed et al. 2008): each person's
consecutive visits to two cameras give an exit point, an entry point and a transit time. Exits and entries
cluster into zones per camera; each (exit zone, entry zone) pair seen often enough becomes a path with a
transit-time histogram. A track that ends behind an occluder and goes on in the same camera is one visit,
not an exit; a visit cut by the start or end of a camera's stream has no entry or exit.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

VERSION = 1
Point = tuple[float, float]


@dataclass(frozen=True)
class Sighting:
    """One tracklet of one identity: where and when it began and ended in its camera (foot points)."""

    camera: str
    identity: int
    first_time: float
    last_time: float
    first_foot: Point
    last_foot: Point
    height: float  # a typical box height, pixels


@dataclass(frozen=True)
class Zone:
    """Where people enter (or leave) one camera: a disc around the centre of the points behind it."""

    camera: str
    kind: str  # entry | exit
    centre: Point
    radius: float
    count: int

    def holds(self, point: Point) -> bool:
        return math.dist(point, self.centre) <= self.radius


@dataclass(frozen=True)
class Path:
    """People leaving `source` by its exit zone `exit_zone` enter `target` by entry zone `entry_zone`."""

    source: str
    exit_zone: int  # index into the model's zones of `source`
    target: str
    entry_zone: int
    transits: tuple[float, ...]  # seconds, one per link seen

    @property
    def median_s(self) -> float:
        return float(np.median(self.transits))

    def bandwidth_s(self, floor_s: float) -> float:
        """Kernel width: Silverman's robust rule over the links, at least `floor_s`. Links spread widely
        (links that chance made) give a flat density that says little either way; one stray link among
        tight ones does not widen it."""
        t = np.asarray(self.transits)
        q75, q25 = np.percentile(t, [75, 25])
        spread = min(float(np.std(t)), float(q75 - q25) / 1.34) or float(np.std(t))
        return max(floor_s, 0.9 * spread * len(t) ** -0.2)

    def without(self, seconds: float) -> Path:
        """The path less one link of this transit time, if it has one (a link matches to a microsecond)."""
        for i, t in enumerate(self.transits):
            if abs(t - seconds) < 1e-6:
                return dataclasses.replace(self, transits=self.transits[:i] + self.transits[i + 1 :])
        return self

    def density(self, seconds: float, floor_s: float) -> float:
        """Transit-time probability density at `seconds` (Gaussian kernels over the links, 1/s)."""
        t, width = np.asarray(self.transits), self.bandwidth_s(floor_s)
        return float(np.mean(np.exp(-0.5 * ((seconds - t) / width) ** 2)) / (width * math.sqrt(2 * math.pi)))


class TransitModel:
    """Learned zones and paths of a site, and the evidence they give a hand-over (see `llr`)."""

    def __init__(
        self,
        zones: Iterable[Zone] = (),
        paths: Iterable[Path] = (),
        *,
        max_transit_s: float = 120.0,
        bandwidth_s: float = 1.0,  # the narrowest transit-time kernel
        max_llr: float = 3.0,
        penalty: float = 2.0,
    ) -> None:
        self.zones = list(zones)
        self.paths = list(paths)
        self.max_transit_s = max_transit_s
        self.bandwidth_s = bandwidth_s
        self.max_llr = max_llr
        self.penalty = penalty

    def zone_of(self, camera: str, kind: str, point: Point) -> int | None:
        """The index (into `zones`) of the nearest zone of `kind` in `camera` that holds `point`."""
        inside = [
            (math.dist(point, z.centre), i)
            for i, z in enumerate(self.zones)
            if z.camera == camera and z.kind == kind and z.holds(point)
        ]
        return min(inside)[1] if inside else None

    def llr(self, leaving: Sighting, entering: Sighting) -> float:
        """Log-likelihood ratio that `entering` (another camera, later) is `leaving`'s person walking on.

        0 where nothing was learned between the two cameras, or the gap is beyond any transit. On a
        learned path, the transit-time density over the path's links but the one this pair made (if it
        made one) against a uniform one over `max_transit_s`; a hand-over that none of the two cameras'
        learned paths allows (another exit, entry or no path) costs up to `penalty`, as much as their
        best path is sure of itself.
        """
        gap = entering.first_time - leaving.last_time
        if leaving.camera == entering.camera or not 0 < gap <= self.max_transit_s:
            return 0.0
        between = [p for p in self.paths if (p.source, p.target) == (leaving.camera, entering.camera)]
        if not between:
            return 0.0
        exit_zone = self.zone_of(leaving.camera, "exit", leaving.last_foot)
        entry_zone = self.zone_of(entering.camera, "entry", entering.first_foot)
        for path in between:
            if (path.exit_zone, path.entry_zone) == (exit_zone, entry_zone):
                # Scored on the path's other links: a hand-over learned from the identities is one of
                # them, and would otherwise vouch for itself.
                others = path.without(gap)
                return self._path_llr(others, gap) if others.transits else 0.0
        # as much as the best path between the two cameras would have said for itself
        confidence = max(self._path_llr(p, p.median_s) for p in between)
        return -min(self.penalty, max(confidence, 0.0))

    def _path_llr(self, path: Path, gap: float) -> float:
        ratio = path.density(gap, self.bandwidth_s) * self.max_transit_s  # against a uniform transit time
        return float(np.clip(math.log(max(ratio, 1e-12)), -self.max_llr, self.max_llr))

    def to_dict(self) -> dict:
        """Plain data for topology.json: zones, and paths with their transit histograms (1 s bins)."""
        return {
            "version": VERSION,
            "max_transit_s": self.max_transit_s,
            "zones": [
                {
                    "camera": z.camera,
                    "kind": z.kind,
                    "centre": list(z.centre),
                    "radius": z.radius,
                    "count": z.count,
                }
                for z in self.zones
            ],
            "paths": [
                {
                    "source": p.source,
                    "exit_zone": p.exit_zone,
                    "target": p.target,
                    "entry_zone": p.entry_zone,
                    "links": len(p.transits),
                    "median_s": p.median_s,
                    "transits_s": list(p.transits),
                    "histogram": _histogram(p.transits),
                }
                for p in self.paths
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> TransitModel:
        """The model to_dict wrote; a missing or mistyped field is a ValueError."""
        if data.get("version") != VERSION:
            raise ValueError(f"transit model: version must be {VERSION}, but got {data.get('version')!r}")
        try:
            zones = [
                Zone(
                    str(z["camera"]), str(z["kind"]), _point(z["centre"]), float(z["radius"]), int(z["count"])
                )
                for z in data["zones"]
            ]
            paths = [
                Path(str(p["source"]), int(p["exit_zone"]), str(p["target"]), int(p["entry_zone"]),
                     tuple(float(t) for t in p["transits_s"]))
                for p in data["paths"]
            ]  # fmt: skip
            return cls(zones, paths, max_transit_s=float(data["max_transit_s"]))
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"transit model: {error!r}") from None


def _point(value) -> Point:
    x, y = value
    return float(x), float(y)


def _histogram(transits: Iterable[float], bin_s: float = 1.0) -> dict:
    values = np.asarray(list(transits))
    edges = np.arange(0.0, max(float(values.max()) + bin_s, bin_s) + 1e-9, bin_s)
    counts, _ = np.histogram(values, edges)
    return {"bin_s": bin_s, "counts": counts.tolist()}


@dataclass(frozen=True)
class _Visit:
    camera: str
    identity: int
    entry: Sighting  # the first tracklet of the visit
    exit: Sighting  # the last


def learn_transit(
    sightings: Iterable[Sighting],
    camera_spans: Mapping[str, tuple[float, float]],
    *,
    rejoin_gap_s: float = 3.0,
    edge_s: float = 1.0,
    zone_radius: float = 1.5,
    min_zone_count: int = 2,
    min_links: int = 2,
    max_transit_s: float = 120.0,
    skip: Iterable[frozenset[str]] = (),
) -> TransitModel:
    """Learn zones and paths from identities' sightings (all cameras on one clock).

    camera_spans: each camera's (first, last) time of the stream, so that visits cut by them count as no
    entry or exit (within `edge_s`). Sightings of one identity in one camera less than `rejoin_gap_s`
    apart are one visit. Points within `zone_radius` box heights of a zone's centre join it; zones need
    `min_zone_count` points and paths `min_links` links, at most `max_transit_s` long. Camera pairs in
    `skip` (overlapping views, whose hand-overs geometry explains) get no paths.
    """
    skip = set(skip)
    visits = _visits(sightings, rejoin_gap_s)
    ends: dict[tuple[str, str], list[int]] = defaultdict(list)  # (kind, camera) -> visits with such an end
    for i, v in enumerate(visits):
        start, end = camera_spans.get(v.camera, (-math.inf, math.inf))
        if v.entry.first_time > start + edge_s:
            ends[("entry", v.camera)].append(i)
        if v.exit.last_time < end - edge_s:
            ends[("exit", v.camera)].append(i)
    zones: list[Zone] = []
    zone_of: dict[tuple[str, int], int] = {}  # (kind, visit index) -> zone index
    for (kind, camera), group in sorted(ends.items()):
        points = np.array([_end(visits[i], kind)[0] for i in group])  # (N, 2)
        heights = np.array([_end(visits[i], kind)[1] for i in group])  # (N,)
        for members in _clusters(points, zone_radius * float(np.median(heights))):
            if len(members) < min_zone_count:
                continue
            centre = points[members].mean(axis=0)
            spread = float(np.max(np.linalg.norm(points[members] - centre, axis=1)))
            radius = max(zone_radius * float(np.median(heights[members])), spread)
            zone_of.update({(kind, group[m]): len(zones) for m in members})
            zones.append(Zone(camera, kind, (float(centre[0]), float(centre[1])), radius, len(members)))
    links: dict[tuple[str, int, str, int], list[float]] = defaultdict(list)
    by_identity: dict[int, list[int]] = defaultdict(list)
    for i, v in enumerate(visits):
        by_identity[v.identity].append(i)
    for own in by_identity.values():
        own.sort(key=lambda i: visits[i].entry.first_time)
        for a, b in itertools.pairwise(own):
            leaving, entering = visits[a], visits[b]
            gap = entering.entry.first_time - leaving.exit.last_time
            if leaving.camera == entering.camera or not 0 < gap <= max_transit_s:
                continue
            if frozenset((leaving.camera, entering.camera)) in skip:
                continue
            exit_zone, entry_zone = zone_of.get(("exit", a)), zone_of.get(("entry", b))
            if exit_zone is not None and entry_zone is not None:
                links[(leaving.camera, exit_zone, entering.camera, entry_zone)].append(gap)
    paths = [
        Path(source, exit_zone, target, entry_zone, tuple(sorted(gaps)))
        for (source, exit_zone, target, entry_zone), gaps in sorted(links.items())
        if len(gaps) >= min_links
    ]
    return TransitModel(zones, paths, max_transit_s=max_transit_s)


def _end(visit: _Visit, kind: str) -> tuple[Point, float]:
    return (
        (visit.entry.first_foot, visit.entry.height)
        if kind == "entry"
        else (visit.exit.last_foot, visit.exit.height)
    )


def _visits(sightings: Iterable[Sighting], rejoin_gap_s: float) -> list[_Visit]:
    """Each identity's sightings per camera, joined where less than `rejoin_gap_s` apart."""
    grouped: dict[tuple[int, str], list[Sighting]] = defaultdict(list)
    for s in sightings:
        grouped[(s.identity, s.camera)].append(s)
    visits = []
    for (identity, camera), group in grouped.items():
        group.sort(key=lambda s: s.first_time)
        first = last = group[0]
        for s in group[1:]:
            if s.first_time - last.last_time > rejoin_gap_s:
                visits.append(_Visit(camera, identity, first, last))
                first = s
            if s.last_time >= last.last_time:
                last = s
        visits.append(_Visit(camera, identity, first, last))
    return visits


def _clusters(points: np.ndarray, radius: float) -> list[list[int]]:
    """Leader clustering: each point joins the nearest cluster centre within `radius`, else starts one;
    centres follow their members. Deterministic in the order of `points`."""
    centres: list[np.ndarray] = []
    members: list[list[int]] = []
    for i, p in enumerate(points):
        if centres:
            d = np.linalg.norm(np.array(centres) - p, axis=1)
            j = int(np.argmin(d))
            if d[j] <= radius:
                members[j].append(i)
                centres[j] = points[members[j]].mean(axis=0)
                continue
        centres.append(p.astype(np.float64))
        members.append([i])
    return members
