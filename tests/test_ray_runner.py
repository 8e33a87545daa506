"""The Ray runtime: the local runtime's outputs and accuracy on the same set, camera actors that die and
come back, and a simulated two-node cluster. Skips where Ray (the [ray] extra) is not installed."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray", reason="ray is not installed (pip install 'reid-pipeline[ray]')")

from cli_runner import check_outputs, run_cli  # noqa: E402
from pets_cameras import write_pets_cameras  # noqa: E402

from pipeline import config as config_module  # noqa: E402
from pipeline import runner  # noqa: E402
from pipeline.evaluation import evaluate_run  # noqa: E402
from pipeline.motchallenge import read_mot_txt  # noqa: E402

FRAMES = 40
MAX_IDF1_GAP = 0.01


@pytest.fixture(scope="module")
def pets_set(assets: Path, tmp_path_factory) -> tuple[Path, Path]:
    """The end-to-end two-camera set (PETS09-S2L1 overlap split), cut short; returns its folder and manifest."""
    root = tmp_path_factory.mktemp("ray")
    manifest = write_pets_cameras(assets, root, FRAMES, runner={"progress": False})
    return root, manifest


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module's tests (the runtime joins it instead of starting its own)."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def run_ray(root: Path, out: str, *overrides: str) -> runner.RunResult:
    config = config_module.load(root / "cameras.yaml", ["runner.engine=ray", *overrides])
    return runner.run(config, root / out, device="cpu")


def test_ray_gives_the_local_runtime_outputs_and_accuracy(pets_set, local_ray):
    root, manifest = pets_set
    local = run_cli("run", "cameras.yaml", "-o", "out_local", "--device", "cpu", cwd=root, timeout=600)
    assert local.returncode == 0, local.stderr[-2000:]
    result = run_ray(root, "out_ray")
    assert result.status == "complete", result.stages
    info = check_outputs(root / "out_ray", FRAMES)
    assert {c: s["frames_processed"] for c, s in info["cameras"].items()} == {"left": FRAMES, "right": FRAMES}
    assert info["stages"]["reid"]["crops"] > 0 and info["stages"]["detector"]["frames"] == 2 * FRAMES
    scores = {
        engine: evaluate_run(root / f"out_{engine}", manifest)["cross_camera"]["IDF1"]
        for engine in ("local", "ray")
    }
    print(scores)
    assert abs(scores["ray"] - scores["local"]) <= MAX_IDF1_GAP, scores


def test_a_killed_camera_actor_is_restarted_and_its_camera_completes(pets_set, local_ray):
    root, _ = pets_set
    outcome: dict = {}
    thread = threading.Thread(target=lambda: outcome.update(result=run_ray(root, "out_kill")), daemon=True)
    thread.start()
    killed_at = None
    deadline = time.monotonic() + 300
    while killed_at is None and thread.is_alive() and time.monotonic() < deadline:
        try:
            matcher = ray.get_actor("matcher")
            camera = ray.get_actor("camera-left")
            done = ray.get(matcher.last_frame.remote("left"))
        except (ValueError, ray.exceptions.RayError):  # not started yet
            done = 0
        if 5 <= done < FRAMES - 5:
            ray.kill(camera, no_restart=False)
            killed_at = done
        time.sleep(0.2)
    thread.join(timeout=600)
    assert killed_at is not None, "the run ended before the camera actor could be killed"
    result = outcome["result"]
    assert result.status == "complete", result.stages
    left, right = result.cameras["left"], result.cameras["right"]
    assert left["restarted"] is True and right["restarted"] is False
    assert left["frames_processed"] == FRAMES and right["frames_processed"] == FRAMES
    tracks = json.loads((root / "out_kill" / "tracks.json").read_text())
    assert {c["id"]: c["frames"] for c in tracks["cameras"]} == {"left": FRAMES, "right": FRAMES}
    boxes = read_mot_txt(root / "out_kill" / "mot" / "left.txt")
    frames = set(boxes[:, 0].astype(int).tolist())
    assert min(frames) <= killed_at < max(frames) and max(frames) >= FRAMES - 2  # before and after the kill
    assert len(frames) >= FRAMES - 4  # the frames around the restart are not lost


def test_a_two_node_cluster(pets_set, local_ray):
    """Two nodes of one CPU each: the actors (1.25 CPUs in all) cannot fit on one, so both nodes work."""
    from ray.cluster_utils import Cluster

    root, _ = pets_set
    ray.shutdown()  # the runtime joins the cluster itself, from its address
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        result = run_ray(
            root, "out_cluster", f"runner.address={cluster.address}", "cameras.left.max_frames=10"
        )
        assert result.status == "complete", result.stages
        assert not ray.is_initialized()  # a runtime that joined a cluster leaves it when done
        info = check_outputs(root / "out_cluster", FRAMES)
        assert info["cameras"]["left"]["frames_processed"] == 10
        assert info["cameras"]["right"]["frames_processed"] == FRAMES
    finally:
        cluster.shutdown()
