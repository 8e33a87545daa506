"""report.html: a static page of a run (no server): cameras, an identity timeline, thumbnails, topology.

Built from the files the run wrote (run.json, tracks.json, the thumbnails folder and, where the matcher
learned a topology, topology.json), so it can be written again after `forget`. Thumbnails are linked by
relative path: open the page from the run's output folder.
"""

from __future__ import annotations

import html
import json
import logging
import math
from pathlib import Path

from pipeline.atomic import atomic_open
from pipeline.sinks.video import identity_colour

logger = logging.getLogger(__name__)

THUMBNAILS_PER_IDENTITY = 4
MAX_TIMELINE_ROWS = 300
_CAMERA_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")

_STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.25em .7em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}
.ids{display:flex;flex-wrap:wrap;gap:.8em}.id{border:1px solid #ccc;border-radius:6px;padding:.4em}
.id img{height:96px;margin-right:2px}.id h3{margin:.1em 0 .3em;font-size:1em}
.muted{color:#777}
"""


def camera_colour(index: int) -> str:
    return _CAMERA_COLOURS[index % len(_CAMERA_COLOURS)]


def write_report(out_dir: Path | str) -> Path:
    """Write OUT/report.html from the run's outputs; returns its path."""
    out_dir = Path(out_dir)
    info = _read_json(out_dir / "run.json") or {}
    tracks = _read_json(out_dir / "tracks.json") or {"cameras": [], "identities": []}
    topology = _read_json(out_dir / "topology.json")
    cameras = [c["id"] for c in tracks.get("cameras", [])]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>reid-pipeline report</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Run report <span class='muted'>{html.escape(str(out_dir.name))}</span></h1>",
        f"<p>status <b>{html.escape(str(info.get('status', 'unknown')))}</b>, "
        f"{len(tracks.get('identities', []))} identities, wall time {info.get('wall_seconds', 0):.1f} s</p>",
        _camera_table(tracks, info),
        "<h2>Identity timeline</h2>",
        _timeline_svg(tracks, cameras),
        "<h2>Identities</h2>",
        _gallery(tracks),
    ]
    if topology is not None:
        parts += ["<h2>Topology</h2>", _topology(topology, cameras)]
    parts.append("</body></html>\n")
    path = out_dir / "report.html"
    with atomic_open(path) as f:
        f.write("\n".join(parts))
    return path


def write_report_logged(out_dir: Path | str) -> None:
    """write_report for the end of a run: a report that cannot be written is a warning, not a failure."""
    try:
        write_report(out_dir)
    except Exception as e:  # the exports are what the run owes; the report is a view of them
        logger.warning("report.html not written: %s: %s", type(e).__name__, e)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _camera_table(tracks: dict, info: dict) -> str:
    stats = info.get("cameras", {})
    wall = float(info.get("wall_seconds") or 0.0)
    rows = [
        "<table id='cameras'><tr><th>camera</th><th>frames</th><th>source fps</th>"
        "<th>processed fps</th><th>identities</th><th>tracks</th><th>boxes</th></tr>"
    ]
    for camera in tracks.get("cameras", []):
        cid = camera["id"]
        appearances = [
            a for i in tracks.get("identities", []) for a in i["appearances"] if a["camera"] == cid
        ]
        identities = {
            i["global_id"]
            for i in tracks.get("identities", [])
            if any(a["camera"] == cid for a in i["appearances"])
        }
        frames = stats.get(cid, {}).get("frames_processed", camera.get("frames", 0))
        processed = f"{frames / wall:.1f}" if wall > 0 else "-"
        rows.append(
            f"<tr><td>{html.escape(cid)}</td><td>{frames}</td><td>{float(camera.get('fps') or 0):.1f}</td>"
            f"<td>{processed}</td><td>{len(identities)}</td><td>{len(appearances)}</td>"
            f"<td>{sum(len(a['boxes']) for a in appearances)}</td></tr>"
        )
    rows.append("</table>")
    return "\n".join(rows)


def _timeline_svg(tracks: dict, cameras: list[str]) -> str:
    """One row per identity (first seen first), a bar per appearance coloured by camera."""
    identities = sorted(
        tracks.get("identities", []), key=lambda i: min(a["start_time"] for a in i["appearances"])
    )[:MAX_TIMELINE_ROWS]
    if not identities:
        return "<p class='muted'>no identities</p>"
    start = min(a["start_time"] for i in identities for a in i["appearances"])
    end = max(a["end_time"] for i in identities for a in i["appearances"])
    span = max(end - start, 1e-6)
    left, width, row = 70, 900, 14
    height = 30 + row * len(identities)
    colour = {c: camera_colour(n) for n, c in enumerate(cameras)}
    out = [
        f"<svg id='timeline' xmlns='http://www.w3.org/2000/svg' width='{left + width + 20}' height='{height + 30}'>"
    ]
    for n in range(6):  # time axis
        t = start + span * n / 5
        x = left + width * n / 5
        out.append(f"<line x1='{x:.1f}' y1='20' x2='{x:.1f}' y2='{height}' stroke='#eee'/>")
        out.append(f"<text x='{x:.1f}' y='14' font-size='10' text-anchor='middle'>{t:.1f} s</text>")
    for r, identity in enumerate(identities):
        y = 22 + r * row
        out.append(
            f"<text x='{left - 6}' y='{y + 10}' font-size='10' text-anchor='end'>ID {identity['global_id']}</text>"
        )
        for a in identity["appearances"]:
            x1 = left + width * (a["start_time"] - start) / span
            w = max(width * (a["end_time"] - a["start_time"]) / span, 2.0)
            title = f"ID {identity['global_id']} {a['camera']} track {a['local_track_id']}: {a['start_time']:.1f}-{a['end_time']:.1f} s"
            out.append(
                f"<rect class='appearance' x='{x1:.1f}' y='{y}' width='{w:.1f}' height='{row - 3}' "
                f"fill='{colour.get(a['camera'], '#999')}' opacity='0.8'><title>{html.escape(title)}</title></rect>"
            )
    legend_y = height + 18
    for n, c in enumerate(cameras):
        x = left + 110 * n
        out.append(f"<rect x='{x}' y='{legend_y - 9}' width='10' height='10' fill='{colour[c]}'/>")
        out.append(f"<text x='{x + 14}' y='{legend_y}' font-size='11'>{html.escape(c)}</text>")
    out.append("</svg>")
    return "\n".join(out)


def _gallery(tracks: dict) -> str:
    cards = ["<div class='ids'>"]
    for identity in tracks.get("identities", []):
        cameras = sorted({a["camera"] for a in identity["appearances"]})
        b, g, r = identity_colour(identity["global_id"])
        images = "".join(
            f"<img src='{html.escape(p)}' alt='ID {identity['global_id']}' loading='lazy'>"
            for p in identity_thumbnails(identity)[:THUMBNAILS_PER_IDENTITY]
        )
        cards.append(
            f"<div class='id' data-global-id='{identity['global_id']}' style='border-color:rgb({r},{g},{b})'>"
            f"<h3>ID {identity['global_id']} <span class='muted'>{html.escape(', '.join(cameras))}</span></h3>"
            f"{images or '<span class=muted>no thumbnails</span>'}</div>"
        )
    cards.append("</div>")
    return "\n".join(cards)


def identity_thumbnails(identity: dict) -> list[str]:
    """An identity's thumbnails from tracks.json, the best of each appearance first."""
    rounds = [a.get("thumbnails", []) for a in identity["appearances"]]
    ordered = []
    for i in range(max(map(len, rounds), default=0)):
        ordered.extend(r[i] for r in rounds if i < len(r))
    return ordered


def overlap_pairs(topology: dict) -> list[dict]:
    """The learned overlaps of topology.json as {cameras: [a, b], ...details}, whatever its nesting."""
    overlaps = topology.get("overlaps", [])
    if isinstance(overlaps, dict):
        overlaps = overlaps.get("overlaps", [])
    pairs = []
    for item in overlaps if isinstance(overlaps, list) else []:
        if not isinstance(item, dict):
            continue
        cams = item.get("cameras") or [item.get("camera_a"), item.get("camera_b")]
        if len(cams) == 2 and all(isinstance(c, str) for c in cams):
            pairs.append({**item, "cameras": list(cams)})
    return pairs


def _topology(topology: dict, cameras: list[str]) -> str:
    pairs = overlap_pairs(topology)
    if not pairs:
        return "<p class='muted'>no overlapping views learned</p>"
    nodes = sorted(set(cameras) | {c for p in pairs for c in p["cameras"]})
    size, radius = 360, 130
    pos = {
        c: (
            size / 2 + radius * math.cos(2 * math.pi * n / len(nodes) - math.pi / 2),
            size / 2 + radius * math.sin(2 * math.pi * n / len(nodes) - math.pi / 2),
        )
        for n, c in enumerate(nodes)
    }
    out = [f"<svg id='topology' xmlns='http://www.w3.org/2000/svg' width='{size}' height='{size}'>"]
    for p in pairs:
        (x1, y1), (x2, y2) = pos[p["cameras"][0]], pos[p["cameras"][1]]
        confidence = p.get("confidence")
        label = "overlap" if confidence is None else f"overlap {float(confidence):.2f}"
        out.append(
            f"<line class='overlap' x1='{x1:.0f}' y1='{y1:.0f}' x2='{x2:.0f}' y2='{y2:.0f}' stroke='#555' stroke-width='3'/>"
        )
        out.append(
            f"<text x='{(x1 + x2) / 2:.0f}' y='{(y1 + y2) / 2 - 6:.0f}' font-size='11' text-anchor='middle'>{label}</text>"
        )
    colour = {c: camera_colour(n) for n, c in enumerate(cameras)}
    for c in nodes:
        x, y = pos[c]
        out.append(f"<circle cx='{x:.0f}' cy='{y:.0f}' r='26' fill='{colour.get(c, '#999')}'/>")
        out.append(
            f"<text x='{x:.0f}' y='{y + 4:.0f}' font-size='12' text-anchor='middle' fill='white'>{html.escape(c)}</text>"
        )
    out.append("</svg>")
    return "\n".join(out)
