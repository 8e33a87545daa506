"""Smoke runs of the pipeline benchmarks (benchmarks/*.py) in their short modes, and their helpers."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import camera_scaling
import e2e_latency
import memory_soak
import mtmc_accuracy
import vs_ultralytics
from common import MIB, MemorySampler, label_processes, process_tree, rss_bytes, write_config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rtsp_server import perl_server_missing


def _number(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f"{pattern!r} not in:\n{text}"
    return float(match.group(1))


def test_process_tree_memory_counts_children_and_names_them():
    child = subprocess.Popen([sys.executable, "-c", "import time; b = bytearray(64 << 20); time.sleep(30)"])
    try:
        deadline = time.monotonic() + 10
        while rss_bytes(child.pid) < 60 * MIB and time.monotonic() < deadline:
            time.sleep(0.1)
        me = os.getpid()
        assert child.pid in process_tree(me)
        sampler = MemorySampler(me)
        per_process = sampler.sample()
        assert sampler.peak_bytes == sum(per_process.values()) > rss_bytes(me) + 60 * MIB
        assert label_processes(me, [me, child.pid], ["cam0"])[me] == "runner"
    finally:
        child.kill()
        child.wait()
    assert rss_bytes(child.pid) == 0


def test_event_latencies_groups(tmp_path):
    def event(kind, track, timestamp, emitted):
        return {"kind": kind, "global_id": 1, "camera_id": "live", "track_id": track, "timestamp": timestamp,
                "emitted_at": emitted}  # fmt: skip

    lines = [
        {"kind": "camera_state", "camera_id": "live", "state": "live", "timestamp": 10.0, "emitted_at": 10.5},
        event("appeared", 1, 100.0, 100.25),
        event("matched", 2, 101.0, 101.75),
        event("matched", 3, 101.0, 106.0),  # decided as track 3 ended
        event("left", 3, 101.0, 106.0),
        {
            "kind": "camera_state",
            "camera_id": "live",
            "state": "stopped",
            "timestamp": 107.0,
            "emitted_at": 107,
        },
        event("appeared", 4, 106.5, 107.5),  # the end-of-run flush
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    latencies = e2e_latency.event_latencies(path)
    assert latencies["open_track"] == pytest.approx([250.0, 750.0])
    assert latencies["track_end"] == pytest.approx([5000.0]) and latencies["left"] == pytest.approx([5000.0])


def test_growth_percent():
    assert memory_soak.growth_percent(200.0, 210.0) == pytest.approx(5.0)
    assert memory_soak.growth_percent(200.0, 190.0) == pytest.approx(-5.0)


def test_write_config_loads_with_the_pipeline(assets, tmp_path):
    from pipeline.config import load

    path = write_config(
        tmp_path / "c.yaml", assets, [{"id": "a", "source": "x.avi"}], output={"video": False}
    )
    config = load(path, [])
    assert config.output.video is False and config.detector.weights.endswith("yolov8n_int8.onnx")


def test_mtmc_suite_sets_build_and_their_configs_load(assets, tmp_path):
    from pipeline.config import load
    from pipeline.evaluation import load_gt_manifest

    lengths = {}
    for name, suite_set in mtmc_accuracy.SETS.items():
        manifest = suite_set.build(assets, tmp_path / name, 4)
        gt, lengths[name] = load_gt_manifest(manifest)
        config = load(mtmc_accuracy.write_set_config(tmp_path / name / "cameras.yaml", assets, manifest), [])
        assert [c.id for c in config.cameras] == list(gt), name
        assert config.detector.confidence == 0.3 and config.tracker.method == "botsort", name
        assert not config.topology.overlaps and not config.topology.transitions, name
        assert all(Path(c.source).exists() for c in config.cameras), name
    assert lengths["pets-three"] == {"left": 4, "middle": 4, "right": 4}
    assert lengths["tud-campus"] == {"left": 71, "right": 71}  # --frames cuts only the PETS sets
    assert lengths["multiviewx"] == {f"C{i}": 10 for i in range(1, 7)}
    relay = {c.id: c for c in load(tmp_path / "pets-relay" / "cameras.yaml", []).cameras}
    assert (relay["left"].time_offset_s, relay["right"].time_offset_s) == (0.0, pytest.approx(2 / 7))


def test_mtmc_table_format():
    row = {
        "set": "pets-overlap", "cameras": ["left", "right"], "frames": {"left": 795, "right": 795},
        "cross_idf1_linked": 0.573, "cross_hota_linked": 0.464, "cross_idf1_unlinked": 0.478, "gain": 0.095,
        "cross_idf1_perfect_links": 0.812,
        "camera_idf1_linked": {"left": 0.568, "right": 0.599}, "camera_idf1_unlinked": {"left": 0.6, "right": 0.61},
    }  # fmt: skip
    header, line = mtmc_accuracy.format_rows([row]).splitlines()
    assert header.split()[:5] == ["set", "cams", "frames", "xIDF1", "xHOTA"]
    assert line.split() == ["pets-overlap", "2", "795/795", "0.573", "0.464", "0.478", "+0.095", "0.812", "0.568",
                            "0.599", "0.600", "0.610"]  # fmt: skip


@pytest.mark.slow
def test_mtmc_accuracy_short(assets, capsys, tmp_path):
    args = ["--assets", str(assets), "--sets", "pets-overlap", "--frames", "6", "--out", str(tmp_path)]
    assert mtmc_accuracy.main([*args, "--json", str(tmp_path / "table.json")]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^pets-overlap\s+2\s+6/6\s+[\d.]+\s+[\d.]+\s+[\d.]+\s+[+-][\d.]+", out, re.MULTILINE), (
        out
    )
    row = json.loads((tmp_path / "table.json").read_text())["sets"][0]
    assert row["set"] == "pets-overlap" and row["frames"] == {"left": 6, "right": 6}
    for key in ("cross_idf1_linked", "cross_hota_linked", "cross_idf1_unlinked", "cross_idf1_perfect_links"):
        assert 0 < row[key] <= 1, (key, row)
    assert row["gain"] == pytest.approx(row["cross_idf1_linked"] - row["cross_idf1_unlinked"])
    assert set(row["camera_idf1_unlinked"]) == {"left", "right"}
    assert (tmp_path / "runs" / "pets-overlap" / "unlinked" / "mot" / "right.txt").is_file()


@pytest.mark.slow
def test_vs_ultralytics_short(assets, capsys):
    assert vs_ultralytics.main(["--assets", str(assets), "--frames", "3", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert _number(r"ultralytics: ([\d.]+) fps", out) > 0
    assert _number(r"pipeline: +([\d.]+) fps", out) > 0
    assert _number(r"ratio pipeline/ultralytics: ([\d.]+)x", out) > 0
    assert _number(r"ratio detector/raw model: .*, ([\d.]+)x with load", out) > 0  # 3 frames: one block


def test_vs_ultralytics_detector_stage_against_the_raw_model(assets, capsys):
    argv = ["--assets", str(assets), "--frames", "12", "--detector-only"]  # blocks of 5 frames
    assert vs_ultralytics.main(argv) == 0
    out = capsys.readouterr().out
    assert "detector stage, 12 frames" in out
    for row in ("raw model", "detector", "detector via ultralytics"):
        assert re.search(rf"^{row} +[\d.]+ +[\d.]+ +[\d.]+ +[\d.]+$", out, re.MULTILINE), out
    assert _number(r"ratio detector/raw model: ([\d.]+)x after the first block", out) > 0
    assert _number(r"ratio detector via ultralytics/raw model: ([\d.]+)x", out) > 0
    assert "ratio pipeline/ultralytics" not in out


@pytest.mark.slow
def test_camera_scaling_short(assets, capsys):
    assert camera_scaling.main(["--assets", str(assets), "--cameras", "1", "2", "--frames", "3"]) == 0
    out = capsys.readouterr().out
    rows = re.findall(
        r"^(per-camera|shared)\s+(\d+)\s+(\d+)\s+[\d.]+\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(\d+)", out, re.MULTILINE
    )
    assert [(d, int(c), int(f)) for d, c, f, *_ in rows] == [
        ("per-camera", 1, 3),
        ("shared", 1, 3),
        ("per-camera", 2, 6),
        ("shared", 2, 6),
    ]
    for design, _, _, fps, worker, detector, total in rows:
        assert float(fps) > 0 and int(worker) > 0 and int(total) > 200  # MiB: models are loaded
        assert int(detector) > 0 if design == "shared" else int(detector) == 0
    assert "cam1" in out and "detector" in out and "reid" in out and "matcher" in out


@pytest.mark.slow
def test_memory_soak_short_loops(assets, capsys, tmp_path):
    # Laps of 6 frames (790..795): more frames than one lap holds means the file looped.
    args = ["--assets", str(assets), "--cameras", "1", "--seconds", "25", "--interval", "2"]
    assert memory_soak.main([*args, "--start-frame", "790", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert _number(r"frames processed: \{'cam0': (\d+)\}", out) > 6
    assert re.search(r"growth after warm-up .*: \d+ -> \d+ MiB, [+-][\d.]+%", out)
    assert re.search(r"^\s+reid\s+[\d.]+\s+->\s+[\d.]+ MiB", out, re.MULTILINE)


@pytest.mark.slow
def test_e2e_latency_short(assets, capsys):
    if reason := perl_server_missing():
        pytest.skip(reason)
    quick = ["--set", "sampler.every_k=1", "--set", "matcher.min_embeddings=1"]
    args = ["--assets", str(assets), "--frames", "12", "--clip-frames", "40", *quick]
    assert e2e_latency.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["frames_processed"] == 12
    identity = report["latency_ms"]["open_track"]
    assert identity["count"] > 0 and 0 < identity["p50"] < 60_000
