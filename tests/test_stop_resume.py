"""Graceful stop (SIGTERM at random moments) leaves valid outputs; --resume continues the identity store."""

from __future__ import annotations

import json
import random
import signal
import time
from pathlib import Path

import cv2
import pytest
from cli_runner import check_outputs, finished_videos, start_cli, wait_for
from pets_cameras import write_pets_cameras

FRAMES = 80


@pytest.fixture(scope="module")
def workspace(assets: Path, tmp_path_factory) -> Path:
    """Two short cameras cut from PETS09-S2L1 and a config over them."""
    root = tmp_path_factory.mktemp("stop")
    write_pets_cameras(assets, root, FRAMES, runner={"progress": False})
    return root


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigterm_at_a_random_moment_leaves_valid_outputs(workspace, seed):
    out = f"out_stop_{seed}"
    process = start_cli("run", "cameras.yaml", "-o", out, cwd=workspace)
    wait_for(workspace / out / "run.json")
    time.sleep(random.Random(seed).uniform(0.0, 10.0))
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=180)
    info = check_outputs(workspace / out, FRAMES)
    if info["status"] == "stopped":
        assert process.returncode == 130
    else:  # the run finished before the signal arrived
        assert info["status"] == "complete" and process.returncode == 0, stderr[-2000:]
    assert "Traceback" not in stderr


def test_second_signal_stops_at_once_and_keeps_what_was_written(workspace):
    process = start_cli("run", "cameras.yaml", "-o", "out_kill", cwd=workspace)
    out = workspace / "out_kill"
    wait_for(out / "videos/left.partial.avi")
    time.sleep(3.0)
    process.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr[-2000:]
    assert json.loads((out / "run.json").read_text())["status"] in ("killed", "stopped")
    for video in finished_videos(out):
        assert cv2.VideoCapture(str(video)).read()[0], video
    if (out / "tracks.json").exists():
        assert json.loads((out / "tracks.json").read_text())["schema_version"] == 1
    for line in (out / "events.jsonl").read_text().splitlines():
        json.loads(line)


def test_resume_keeps_the_identity_store(workspace):
    first = start_cli("run", "cameras.yaml", "-o", "out_resume", "--max-frames", "40", cwd=workspace)
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    before = json.loads((workspace / "out_resume/tracks.json").read_text())
    first_ids = {i["global_id"] for i in before["identities"]}

    second = start_cli("run", "--resume", "out_resume", "--max-frames", "40", cwd=workspace)
    assert second.wait(timeout=300) == 0, second.stderr.read()[-2000:]
    after = json.loads((workspace / "out_resume/tracks.json").read_text())
    second_ids = {i["global_id"] for i in after["identities"]}
    assert json.loads((workspace / "out_resume/previous/1/tracks.json").read_text()) == before
    # The same people walk through the same frames again: identities from the first run are matched again,
    # and any new identity gets an id past the first run's.
    assert second_ids & first_ids
    assert all(i > max(first_ids) for i in second_ids - first_ids)
    info = json.loads((workspace / "out_resume/run.json").read_text())
    assert info["status"] == "complete"

    # With a retention of zero days the gallery forgets every stored feature: nobody is matched again.
    third = start_cli(
        "run",
        "--resume",
        "out_resume",
        "--max-frames",
        "20",
        "--set",
        "store.retention_days=0",
        cwd=workspace,
    )
    assert third.wait(timeout=300) == 0, third.stderr.read()[-2000:]
    latest = json.loads((workspace / "out_resume/tracks.json").read_text())
    known = first_ids | second_ids
    assert latest["identities"] and all(i["global_id"] > max(known) for i in latest["identities"])
