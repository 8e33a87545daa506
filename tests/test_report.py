"""report.html: a static page per run with cameras, an identity timeline, thumbnails and the topology."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

from pipeline.sinks.report import write_report


class _Elements(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []

    def handle_starttag(self, tag, attrs) -> None:
        self.tags.append((tag, dict(attrs)))


def _parse(path: Path) -> list[tuple[str, dict]]:
    parser = _Elements()
    parser.feed(path.read_text())
    return parser.tags


def _write_run(out: Path, topology: dict | None) -> None:
    out.mkdir()
    (out / "thumbnails/a/1").mkdir(parents=True)
    (out / "thumbnails/a/1/000003.jpg").write_bytes(b"jpeg")
    appearance = {"first_frame": 1, "last_frame": 10, "boxes": [[1, 0, 0, 10, 20, 0.9]] * 4}
    tracks = {
        "schema_version": 1,
        "cameras": [
            {"id": "a", "source": "a.mp4", "fps": 10.0, "frames": 50},
            {"id": "b", "source": "b.mp4", "fps": 5.0, "frames": 20},
        ],
        "identities": [
            {
                "global_id": 1,
                "appearances": [
                    {
                        **appearance,
                        "camera": "a",
                        "local_track_id": 1,
                        "start_time": 0.0,
                        "end_time": 1.0,
                        "thumbnails": ["thumbnails/a/1/000003.jpg"],
                    },
                    {
                        **appearance,
                        "camera": "b",
                        "local_track_id": 4,
                        "start_time": 2.0,
                        "end_time": 3.5,
                        "thumbnails": [],
                    },
                ],
            },
            {
                "global_id": 2,
                "appearances": [
                    {
                        **appearance,
                        "camera": "b",
                        "local_track_id": 5,
                        "start_time": 1.0,
                        "end_time": 4.0,
                        "thumbnails": [],
                    },
                ],
            },
        ],
    }
    (out / "tracks.json").write_text(json.dumps(tracks))
    run = {
        "status": "complete",
        "wall_seconds": 10.0,
        "cameras": {"a": {"frames_processed": 50}, "b": {"frames_processed": 20}},
    }
    (out / "run.json").write_text(json.dumps(run))
    if topology is not None:
        (out / "topology.json").write_text(json.dumps(topology))


def test_report_shows_cameras_timeline_and_thumbnails(tmp_path):
    out = tmp_path / "out"
    _write_run(out, topology=None)
    tags = _parse(write_report(out))
    page = (out / "report.html").read_text()
    rows = re.findall(
        r"<tr><td>(\w+)</td><td>(\d+)</td><td>([\d.]+)</td><td>([\d.]+)</td><td>(\d+)</td>", page
    )
    assert rows == [("a", "50", "10.0", "5.0", "1"), ("b", "20", "5.0", "2.0", "2")]
    bars = [a for t, a in tags if t == "rect" and a.get("class") == "appearance"]
    assert len(bars) == 3
    images = [a["src"] for t, a in tags if t == "img"]
    assert images == ["thumbnails/a/1/000003.jpg"] and (out / images[0]).is_file()
    assert {a["data-global-id"] for t, a in tags if a.get("class") == "id"} == {"1", "2"}
    assert not any(a.get("id") == "topology" for _, a in tags)


def test_report_draws_the_learned_overlaps_when_topology_json_exists(tmp_path):
    out = tmp_path / "out"
    nested = {
        "overlaps": {
            "version": 1,
            "overlaps": [{"camera_a": "a", "camera_b": "b", "confidence": 0.93}],
            "no_overlap": [],
        }
    }
    _write_run(out, topology=nested)
    tags = _parse(write_report(out))
    assert any(a.get("id") == "topology" for _, a in tags)
    assert len([a for t, a in tags if t == "line" and a.get("class") == "overlap"]) == 1
    assert "overlap 0.93" in (out / "report.html").read_text()
    flat = tmp_path / "flat"
    _write_run(flat, topology={"overlaps": [{"cameras": ["a", "b"]}]})
    assert len([a for t, a in _parse(write_report(flat)) if a.get("class") == "overlap"]) == 1
    empty = tmp_path / "empty"
    _write_run(empty, topology={"overlaps": []})
    assert "no overlapping views learned" in write_report(empty).read_text()


def test_each_run_writes_its_report(pets_finished_run):
    out, _ = pets_finished_run
    tags = _parse(out / "report.html")
    tracks = json.loads((out / "tracks.json").read_text())
    shown = {int(a["data-global-id"]) for t, a in tags if a.get("class") == "id"}
    assert shown == {i["global_id"] for i in tracks["identities"]}
    bars = [a for t, a in tags if t == "rect" and a.get("class") == "appearance"]
    assert len(bars) == sum(len(i["appearances"]) for i in tracks["identities"])
    assert all((out / a["src"]).is_file() for t, a in tags if t == "img")
