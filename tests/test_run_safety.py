"""A run never destroys or corrupts what exists: checks before writing, one run per OUT, signals to the
whole process group, kill -9, and a run status that comes from every stage's outcome."""

from __future__ import annotations

import json
import os
import random
import resource
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import cv2
import pytest
import yaml
from cli_runner import COMMAND, check_outputs, finished_videos, run_cli, start_cli, wait_for
from pets_cameras import write_pets_cameras

FRAMES = 80
COMMIT_INTERVAL_S = 1.0


@pytest.fixture(scope="module")
def workspace(assets: Path, tmp_path_factory) -> Path:
    """Two short cameras cut from PETS09-S2L1 and a config over them."""
    root = tmp_path_factory.mktemp("safety")
    write_pets_cameras(
        assets, root, FRAMES, runner={"progress": False}, store={"commit_interval_s": COMMIT_INTERVAL_S}
    )
    return root


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(workspace: Path) -> Path:
    """A complete short run, copied by tests that need an OUT holding an earlier run."""
    result = run_cli("run", "cameras.yaml", "-o", "out_done", "--max-frames", "20", cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    return workspace / "out_done"


def copy_run(source: Path, target: Path) -> Path:
    subprocess.run(["cp", "-a", str(source), str(target)], check=True)
    (target / ".lock").unlink(missing_ok=True)
    return target


def test_a_run_that_fails_its_checks_leaves_the_earlier_run_untouched(workspace, finished_run):
    out = copy_run(finished_run, workspace / "out_checks")
    before = snapshot(out)
    result = run_cli(
        "run", "cameras.yaml", "-o", str(out), "--set", "detector.weights=models/missing.onnx", cwd=workspace
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "detector.weights" in result.stderr
    assert snapshot(out) == before


def test_checks_come_before_the_output_folder_is_created(workspace):
    result = run_cli(
        "run", "cameras.yaml", "-o", "out_never", "--set", "reid.weights=models/missing.onnx", cwd=workspace
    )
    assert result.returncode == 2 and "reid.weights" in result.stderr
    assert not (workspace / "out_never").exists()


def test_a_fresh_run_moves_the_earlier_run_aside_and_overwrite_replaces_it(workspace, finished_run):
    out = copy_run(finished_run, workspace / "out_again")
    earlier = snapshot(out)
    result = run_cli("run", "cameras.yaml", "-o", str(out), "--max-frames", "5", cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    archived = snapshot(out / "previous/1")
    assert {k: v for k, v in earlier.items() if k != ".lock"} == archived
    assert json.loads((out / "tracks.json").read_text())["cameras"][0]["frames"] == 5

    result = run_cli("run", "cameras.yaml", "-o", str(out), "--max-frames", "5", "--overwrite", cwd=workspace)
    assert result.returncode == 0, result.stderr[-2000:]
    assert sorted(p.name for p in (out / "previous").iterdir()) == ["1"]  # nothing new archived


def test_a_second_run_on_the_same_output_is_refused_and_the_first_is_unharmed(workspace):
    first = start_cli("run", "cameras.yaml", "-o", "out_shared", cwd=workspace)
    wait_for(workspace / "out_shared/run.json")
    second = run_cli("run", "cameras.yaml", "-o", "out_shared", cwd=workspace)
    assert second.returncode == 2
    assert second.stderr.strip().count("\n") == 0
    assert f"PID {first.pid}" in second.stderr and "in use" in second.stderr
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 0, stderr[-2000:]
    info = check_outputs(workspace / "out_shared", FRAMES)
    assert info["status"] == "complete" and info["cameras"]["left"]["frames_processed"] == FRAMES


def test_a_shared_store_is_locked_too(workspace, tmp_path):
    store = tmp_path / "shared.sqlite"
    first = start_cli(
        "run", "cameras.yaml", "-o", "out_store_a", "--set", f"store.path={store}", cwd=workspace
    )
    wait_for(workspace / "out_store_a/run.json")
    second = run_cli(
        "run", "cameras.yaml", "-o", "out_store_b", "--set", f"store.path={store}", cwd=workspace
    )
    first.communicate(timeout=300)
    assert second.returncode == 2 and f"PID {first.pid}" in second.stderr and "store" in second.stderr
    assert first.returncode == 0


@pytest.mark.parametrize("seed", [0, 1])
def test_sigterm_to_the_process_group_drains_and_keeps_every_identity(workspace, seed):
    out = workspace / f"out_group_{seed}"
    process = start_cli("run", "cameras.yaml", "-o", out.name, cwd=workspace, new_session=True)
    wait_for(out / "videos/left.partial.avi")
    time.sleep(random.Random(seed).uniform(3.0, 8.0))
    os.killpg(process.pid, signal.SIGTERM)  # what systemd, Docker and Kubernetes send
    _, stderr = process.communicate(timeout=180)
    info = check_outputs(out, FRAMES)
    assert "Traceback" not in stderr
    if info["status"] == "complete":  # the run ended before the signal
        assert process.returncode == 0
        return
    assert process.returncode == 130, stderr[-2000:]
    assert info["status"] == "stopped"
    tracks = json.loads((out / "tracks.json").read_text())
    assert tracks["identities"], "a drained run keeps the identities it decided"
    assert any((out / "mot" / f"{c}.txt").read_text() for c in ("left", "right"))


def test_docker_stop_term_then_kill_leaves_readable_outputs(workspace):
    out = workspace / "out_docker"
    process = start_cli("run", "cameras.yaml", "-o", out.name, cwd=workspace, new_session=True)
    wait_for(out / "videos/left.partial.avi")
    time.sleep(4.0)
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=1.0)  # a grace period shorter than the drain
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
    if (out / "tracks.json").exists():
        assert json.loads((out / "tracks.json").read_text())["schema_version"] == 1
    for video in finished_videos(out):
        assert cv2.VideoCapture(str(video)).read()[0], video
    with sqlite3.connect(out / "store/gallery.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


@pytest.mark.parametrize("seed", [0, 1])
def test_kill_9_loses_at_most_the_commit_interval(workspace, seed):
    out = workspace / f"out_kill9_{seed}"
    process = start_cli("run", "cameras.yaml", "-o", out.name, cwd=workspace, new_session=True)
    deadline = time.monotonic() + 240
    while not identity_events(out) and process.poll() is None:
        assert time.monotonic() < deadline, "no identity was decided"
        time.sleep(0.2)
    time.sleep(random.Random(seed).uniform(COMMIT_INTERVAL_S + 1.0, 6.0))
    killed_at = time.time()
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    decided = {
        (e["camera_id"], e["track_id"])
        for e in identity_events(out)
        if e["emitted_at"] < killed_at - COMMIT_INTERVAL_S - 0.5
    }
    assert decided, "the run decided nothing long enough before the kill"
    with sqlite3.connect(out / "store/gallery.sqlite") as db:
        stored = set(db.execute("SELECT camera, track_id FROM tracklets WHERE global_id IS NOT NULL"))
    assert decided <= stored, f"lost: {sorted(decided - stored)}"


def identity_events(out: Path) -> list[dict]:
    """The identity decisions events.jsonl holds so far (each line is flushed as it is written)."""
    path = out / "events.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    events = [json.loads(line) for line in lines[:-1] if line.strip()]  # the last may be half written
    return [e for e in events if e["kind"] in ("appeared", "matched")]


def test_a_run_whose_runner_is_killed_takes_its_stages_with_it(workspace):
    out = workspace / "out_orphans"
    process = start_cli("run", "cameras.yaml", "-o", out.name, cwd=workspace)
    wait_for(out / "videos/left.partial.avi")
    children = subprocess.run(["pgrep", "-P", str(process.pid)], capture_output=True, text=True)
    pids = [int(p) for p in children.stdout.split()]
    assert pids
    process.kill()
    process.wait(timeout=30)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.1)
    assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    state = Path(f"/proc/{pid}/stat").read_text().split()[2] if Path(f"/proc/{pid}/stat").exists() else "X"
    return state not in ("Z", "X")


def test_a_stage_that_fails_while_writing_fails_the_run(workspace):
    """A matcher that cannot write (here: a file-size limit) makes the run fail with one line, exit 2."""
    config = yaml.safe_load((workspace / "cameras.yaml").read_text())
    config["output"] = {"video": False, "events": False}
    (workspace / "no_video.yaml").write_text(yaml.safe_dump(config))

    def limit_file_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (400_000, 400_000))

    result = subprocess.run(
        [*COMMAND, "-q", "run", "no_video.yaml", "-o", "out_full"],
        cwd=workspace,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=limit_file_size,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().count("\n") == 0 and "matcher" in result.stderr
    assert json.loads((workspace / "out_full/run.json").read_text())["status"] == "failed"


def test_every_camera_failing_fails_the_run(workspace):
    dead = {"max_retries": 0, "read_timeout_s": 1.0}
    config = yaml.safe_load((workspace / "cameras.yaml").read_text())
    config["cameras"] = [
        {"id": "a", "source": "rtsp://127.0.0.1:9/a", **dead},
        {"id": "b", "source": "rtsp://127.0.0.1:9/b", **dead},
    ]
    config.pop("topology")
    (workspace / "dead.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("-q", "run", "dead.yaml", "-o", "out_dead", cwd=workspace)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and all("camera" in line for line in lines)
    assert json.loads((workspace / "out_dead/run.json").read_text())["status"] == "failed"
