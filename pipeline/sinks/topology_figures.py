"""A picture per camera pair of what the matcher learned: overlaps, entry/exit zones, transit times."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import atomic_open

logger = logging.getLogger(__name__)

PANEL_HEIGHT = 360  # pixels: each camera's frame is scaled to this height
CHART_HEIGHT = 110  # pixels per transit-time histogram
_ENTRY, _EXIT, _MAPPED = (60, 200, 60), (40, 40, 230), (230, 160, 30)  # BGR


def write_topology_figures(topology: Mapping, frames: Mapping[str, np.ndarray], folder: Path) -> list[Path]:
    """One PNG per camera pair with something learned between them: `folder`/<a>__<b>.png.

    Each shows a frame of both cameras with their entry (green) and exit (red) zones; for overlapping
    views, a grid of a's foot points where the learned mapping puts them in b (orange, joined by lines);
    for disjoint views, a transit-time histogram per learned path.
    """
    overlaps = {
        (m["camera_a"], m["camera_b"]): m for m in (topology.get("overlaps") or {}).get("overlaps", [])
    }
    transit = topology.get("transit") or {"zones": [], "paths": []}
    pairs = set(overlaps) | {tuple(sorted((p["source"], p["target"]))) for p in transit["paths"]}
    written = []
    for a, b in sorted(pairs):
        if a not in frames or b not in frames:
            continue
        left, right = _panel(frames[a], a, transit["zones"]), _panel(frames[b], b, transit["zones"])
        figure = np.concatenate([left.image, right.image], axis=1)
        model = overlaps.get((a, b))
        if model is not None:
            _draw_mapping(figure, model, left, right)
        paths = [p for p in transit["paths"] if {p["source"], p["target"]} == {a, b}]
        if paths:
            figure = np.concatenate([figure, _histograms(paths, figure.shape[1])], axis=0)
        ok, encoded = cv2.imencode(".png", figure)
        if not ok:
            raise ValueError(f"could not encode the {a}/{b} figure as PNG")
        path = folder / f"{a}__{b}.png"
        with atomic_open(path, "wb") as f:
            f.write(encoded.tobytes())
        written.append(path)
    return written


class _Panel:
    """A camera's frame scaled to PANEL_HEIGHT, and where its pixels land in the figure."""

    def __init__(self, image: np.ndarray, scale: float, offset_x: int = 0) -> None:
        self.image, self.scale, self.offset_x = image, scale, offset_x

    def at(self, point) -> tuple[int, int]:
        return round(float(point[0]) * self.scale) + self.offset_x, round(float(point[1]) * self.scale)


def _panel(frame: np.ndarray, camera: str, zones: list[Mapping]) -> _Panel:
    scale = PANEL_HEIGHT / frame.shape[0]
    image = cv2.resize(frame, (max(1, round(frame.shape[1] * scale)), PANEL_HEIGHT))
    panel = _Panel(image, scale)
    for zone in zones:
        if zone["camera"] != camera:
            continue
        colour = _ENTRY if zone["kind"] == "entry" else _EXIT
        centre, radius = panel.at(zone["centre"]), max(2, int(zone["radius"] * scale))
        cv2.circle(image, centre, radius, colour, 2)
        cv2.putText(image, f"{zone['kind']} {zone['count']}", (centre[0] - radius, centre[1]),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)  # fmt: skip
    cv2.putText(image, camera, (8, 22), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2, cv2.LINE_AA)
    return panel


def _draw_mapping(figure: np.ndarray, model: Mapping, left: _Panel, right: _Panel) -> None:
    """A grid over a's region of evidence, mapped into b by the learned homography."""
    right.offset_x = left.image.shape[1]
    x1, y1, x2, y2 = model["region_a"]
    grid = np.array(list(itertools.product(np.linspace(x1, x2, 5), np.linspace(y1, y2, 4))))  # (20, 2)
    h = np.asarray(model["homography"], np.float64)
    mapped = np.c_[grid, np.ones(len(grid))] @ h.T  # (20, 3)
    for point, (u, v, w) in zip(grid, mapped, strict=True):
        if w <= 0:
            continue
        start, end = left.at(point), right.at((u / w, v / w))
        cv2.line(figure, start, end, _MAPPED, 1, cv2.LINE_AA)
        cv2.circle(figure, start, 3, _MAPPED, -1)
        cv2.circle(figure, end, 3, _MAPPED, -1)
    label = f"overlap: median error {model['median_error_rel']:.2f} box heights, confidence {model['confidence']:.2f}"
    cv2.putText(figure, label, (8, PANEL_HEIGHT - 10), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)


def _histograms(paths: list[Mapping], width: int) -> np.ndarray:
    """Transit-time histograms of `paths`, one strip each, `width` pixels wide."""
    strips = []
    for path in paths:
        strip = np.full((CHART_HEIGHT, width, 3), 32, np.uint8)
        counts = np.asarray(path["histogram"]["counts"], np.float64)
        bar = max(1, (width - 20) // max(len(counts), 1))
        top = max(counts.max(), 1.0)
        for i, count in enumerate(counts):
            height = int((CHART_HEIGHT - 50) * count / top)
            corner = (10 + i * bar, CHART_HEIGHT - 20 - height)
            cv2.rectangle(strip, corner, (10 + (i + 1) * bar - 1, CHART_HEIGHT - 20), _MAPPED, -1)
        title = (
            f"{path['source']} -> {path['target']}: {path['links']} links, median {path['median_s']:.1f} s "
            f"({path['histogram']['bin_s']:g} s bins)"
        )
        cv2.putText(strip, title, (10, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
        strips.append(strip)
    return np.concatenate(strips, axis=0)


def camera_frames(
    cameras: Mapping[str, Path | None], fallback: tuple[int, int] = (480, 640)
) -> dict[str, np.ndarray]:
    """A frame per camera: the first frame of its video (annotated output or source file); a grey image
    of `fallback` (height, width) where there is none, so the zones still have a canvas."""
    frames = {}
    for camera, video in cameras.items():
        image = None
        if video is not None and video.is_file():
            capture = cv2.VideoCapture(str(video))
            ok, image = capture.read()
            capture.release()
            image = image if ok else None
        frames[camera] = image if image is not None else np.full((*fallback, 3), 96, np.uint8)
    return frames
