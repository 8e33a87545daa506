"""Malformed configs and CLI calls, through the real CLI: one line naming the path, exit 2, nothing touched.

Each case breaks a valid two-camera config (or the command line) in one way. Every case must end with exit
code 2, exactly one line on stderr that names the dotted path or file, no traceback, no password, nothing
written outside OUT, and an existing OUT (a marker, a store and events.jsonl) left byte for byte as it was.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_runner import run_cli

from pipeline import config as config_module

SECRET = "s3cret"
DELETE = object()  # patch value: remove the key

BASE = """\
cameras:
  - id: cam_a
    source: video.avi
  - id: cam_b
    source: rtsp://admin:{secret}@127.0.0.1:8554/lobby
    fps: 5
    reconnect: false
detector:
  name: yolo
  weights: {assets}/models/yolov8n_int8.onnx
reid:
  weights: {assets}/models/osnet_x0_25_msmt17.onnx
"""

OUT_FILES = {
    "marker.txt": b"an earlier run's output\n",
    "store/gallery.sqlite": b"SQLite format 3\x00" + bytes(range(256)) * 4,
    "events.jsonl": b'{"event": "new_identity", "global_id": 1}\n',
}


@dataclass(frozen=True)
class Edit:
    """One way of breaking the base run: a YAML patch, a text replacement, a whole file, extra arguments."""

    patch: dict[str, Any] = field(default_factory=dict)  # dotted path -> value (DELETE removes the key)
    replace: tuple[str, str] | None = None  # applied to the YAML text after the patch
    text: str | bytes | None = None  # the whole config file
    args: tuple[str, ...] = ()  # after `run cameras.yaml -o OUT`
    command: tuple[str, ...] | None = None  # instead of `run cameras.yaml -o OUT`
    env: dict[str, str] = field(default_factory=dict)


# Short constructors keep the table one case a line.
def P(*pairs: Any) -> Edit:
    """Set (or DELETE) dotted paths in the parsed YAML: P("cameras[0].fps", 0, "detector.iou", 2)."""
    return Edit(patch=dict(zip(pairs[::2], pairs[1::2])))


def T(old: str, new: str) -> Edit:
    """Replace text in the YAML file (for what a parsed patch cannot express: duplicates, aliases)."""
    return Edit(replace=(old, new))


def FILE(text: str | bytes) -> Edit:
    """The whole config file."""
    return Edit(text=text)


def ARGS(*args: str, **env: str) -> Edit:
    """Extra arguments after `run cameras.yaml -o OUT`, and environment variables for the command."""
    return Edit(args=args, env=env)


def CMD(*command: str) -> Edit:
    """A whole command line instead of `run cameras.yaml -o OUT`."""
    return Edit(command=command)


def _bomb() -> str:
    levels = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    return "\ntracker:\n  params:\n" + "".join(f"    {line}\n" for line in levels)


LONG_ID = "c" * 65

# (id, edit, expected substring of the one stderr line); one case a line, so the formatter is off here.
# fmt: off
CASES = [
    # cameras
    ("cam-fps-zero", P("cameras[0].fps", 0), "cameras[0].fps: must be > 0"),
    ("cam-fps-negative", P("cameras[0].fps", -5), "cameras[0].fps: must be > 0"),
    ("cam-fps-nan", P("cameras[0].fps", float("nan")), "cameras[0].fps: expected a finite number"),
    ("cam-fps-inf", P("cameras[1].fps", float("inf")), "cameras[1].fps: expected a finite number"),
    ("cam-fps-huge-int", T("fps: 5", "fps: 1" + "0" * 400), "cameras[1].fps: number too large"),
    ("cam-fps-text", P("cameras[0].fps", "fast"), "cameras[0].fps: expected float or null, got str"),
    ("cam-start-frame-zero", P("cameras[0].start_frame", 0), "cameras[0].start_frame: must be >= 1"),
    ("cam-start-frame-float", P("cameras[0].start_frame", 1.5), "cameras[0].start_frame: expected int"),
    ("cam-max-frames-zero", P("cameras[0].max_frames", 0), "cameras[0].max_frames: must be >= 1"),
    ("cam-max-frames-negative", P("cameras[0].max_frames", -10), "cameras[0].max_frames: must be >= 1"),
    ("cam-read-timeout-zero", P("cameras[1].read_timeout_s", 0), "cameras[1].read_timeout_s: must be in (0, 86400]"),
    ("cam-read-timeout-huge", P("cameras[1].read_timeout_s", 1e9), "cameras[1].read_timeout_s: must be in (0, 86400]"),
    ("cam-max-retries-negative", P("cameras[1].max_retries", -1), "cameras[1].max_retries: must be >= 0"),
    ("cam-time-offset-nan", P("cameras[0].time_offset_s", float("nan")), "cameras[0].time_offset_s: expected a finite"),
    ("cam-transport", P("cameras[1].transport", "sctp"), "cameras[1].transport: expected one of tcp, udp"),
    ("cam-frame-policy", P("cameras[1].frame_policy", "newest"), "cameras[1].frame_policy: expected one of"),
    ("cam-loop-text", P("cameras[0].loop", "forever"), "cameras[0].loop: expected bool, got str"),
    ("cam-reconnect-int", P("cameras[1].reconnect", 1), "cameras[1].reconnect: expected bool, got int"),
    ("cam-webcam-negative", P("cameras[0].source", -1), "cameras[0].source: a webcam index must be >= 0"),
    ("cam-source-empty", P("cameras[0].source", ""), "cameras[0].source: empty"),
    ("cam-source-list", P("cameras[0].source", [1]), "cameras[0].source: expected str or int, got list"),
    ("cam-source-bool", P("cameras[0].source", True), "cameras[0].source: expected str or int, got bool"),
    ("cam-source-missing", P("cameras[0].source", DELETE), "cameras[0].source: required key is missing"),
    ("cam-id-dot", P("cameras[0].id", "."), "cameras[0].id: '.' is not a usable name"),
    ("cam-id-dotdot", P("cameras[1].id", ".."), "cameras[1].id: '..' is not a usable name"),
    ("cam-id-long", P("cameras[0].id", LONG_ID), "cameras[0].id: 'cccccccccccccccccccc'... is 65 characters"),
    ("cam-id-traversal", P("cameras[0].id", "../evil"), "cameras[0].id: '../evil' may use only letters"),
    ("cam-id-slash", P("cameras[0].id", "a/b"), "cameras[0].id: 'a/b' may use only letters"),
    ("cam-id-space", P("cameras[0].id", "cam a"), "cameras[0].id: 'cam a' may use only letters"),
    ("cam-id-empty", P("cameras[0].id", ""), "cameras[0].id: the id is empty"),
    ("cam-id-int", P("cameras[0].id", 5), "cameras[0].id: expected str, got int"),
    ("cam-id-missing", P("cameras[1].id", DELETE), "cameras[1].id: required key is missing"),
    ("cam-id-duplicate", P("cameras[1].id", "cam_a"), "cameras[1].id: duplicate camera id 'cam_a'"),
    ("cam-unknown-key", P("cameras[0].fsp", 5), "cameras[0].fsp: unknown key; did you mean 'fps'?"),
    ("cam-not-a-mapping", P("cameras", ["video.avi"]), "cameras[0]: expected a mapping, got str"),
    ("cameras-empty", P("cameras", []), "cameras: at least one camera is required"),
    ("cameras-mapping", P("cameras", {"cam_a": "video.avi"}), "cameras: expected a list, got mapping"),
    ("cameras-missing", P("cameras", DELETE), "cameras: required key is missing"),
    # detector
    ("det-confidence-high", P("detector.confidence", 1.5), "detector.confidence: must be in [0, 1]"),
    ("det-confidence-negative", P("detector.confidence", -0.1), "detector.confidence: must be in [0, 1]"),
    ("det-iou-high", P("detector.iou", 2), "detector.iou: must be in [0, 1]"),
    ("det-iou-nan", P("detector.iou", float("nan")), "detector.iou: expected a finite number"),
    ("det-iou-text", P("detector.iou", "high"), "detector.iou: expected float, got str"),
    ("det-imgsz-not-32", P("detector.imgsz", 100), "detector.imgsz: must be a multiple of 32"),
    ("det-imgsz-zero", P("detector.imgsz", 0), "detector.imgsz: must be > 0"),
    ("det-imgsz-negative", P("detector.imgsz", -64), "detector.imgsz: must be > 0"),
    ("det-imgsz-float", P("detector.imgsz", 640.0), "detector.imgsz: expected int, got float"),
    ("det-tiles-zero", P("detector.tiles", 0), "detector.tiles: must be in [1, 4], got 0"),
    ("det-tiles-many", P("detector.tiles", 5), "detector.tiles: must be in [1, 4], got 5"),
    ("det-batch-zero", P("detector.batch", 0), "detector.batch: must be >= 1"),
    ("det-name", P("detector.name", "yolov8"), "detector.name: expected one of yolo, hog, mot"),
    ("det-weights-unset", P("detector.weights", DELETE), "detector.weights: the yolo detector needs a weights file"),
    ("det-weights-not-found", P("detector.weights", "models/none.onnx"), "detector.weights"),
    ("det-mot-no-detections", P("detector.name", "mot"), "cameras[0].detections: the mot detector needs a det.txt"),
    ("det-mot-detections-not-found", P("detector.name", "mot", "cameras[0].detections", "det_a.txt", "cameras[1].detections", "det_b.txt"), "cameras[0].detections: no such file"),
    ("det-not-a-mapping", P("detector", "yolo"), "detector: expected a mapping, got str"),
    # tracker
    ("trk-method", P("tracker.method", "sort"), "tracker.method: expected one of bytetrack, botsort"),
    ("trk-param-unknown", P("tracker.params", {"track_bufer": 60}), "tracker.params.track_bufer: unknown key; did you mean 'track_buffer'?"),
    ("trk-param-type", P("tracker.params", {"track_buffer": "sixty"}), "tracker.params.track_buffer: expected int, got str"),
    ("trk-param-range", P("tracker.params", {"match_thresh": 2}), "tracker.params.match_thresh: must be in [0, 1]"),
    ("trk-param-buffer-zero", P("tracker.params", {"track_buffer": 0}), "tracker.params.track_buffer: must be >= 1"),
    ("trk-param-bool", P("tracker.params", {"fuse_score": 1}), "tracker.params.fuse_score: expected bool, got int"),
    ("trk-param-nan", P("tracker.params", {"track_high_thresh": float("nan")}), "tracker.params.track_high_thresh: expected a finite"),
    ("trk-param-botsort-only", P("tracker.method", "bytetrack", "tracker.params", {"gmc_method": "orb"}), "tracker.params.gmc_method: unknown key"),
    ("trk-botsort-gmc", P("tracker.method", "botsort", "tracker.params", {"gmc_method": "optflow"}), "tracker.params.gmc_method: expected one of none, sparseOptFlow"),
    ("trk-botsort-with-reid", P("tracker.method", "botsort", "tracker.params", {"with_reid": True}), "tracker.params.with_reid: unknown key"),
    ("trk-params-list", P("tracker.params", [1]), "tracker.params: expected a mapping, got list"),
    # sampler
    ("smp-every-k-zero", P("sampler.every_k", 0), "sampler.every_k: must be >= 1"),
    ("smp-max-per-track-zero", P("sampler.max_per_track", 0), "sampler.max_per_track: must be >= 1"),
    ("smp-min-height-negative", P("sampler.min_height", -1), "sampler.min_height: must be >= 0"),
    ("smp-min-confidence-high", P("sampler.min_confidence", 1.2), "sampler.min_confidence: must be in [0, 1]"),
    ("smp-max-overlap-negative", P("sampler.max_overlap", -0.5), "sampler.max_overlap: must be in [0, 1]"),
    ("smp-edge-margin-negative", P("sampler.edge_margin", -4), "sampler.edge_margin: must be >= 0"),
    # reid
    ("reid-max-batch-zero", P("reid.max_batch", 0), "reid.max_batch: must be >= 1"),
    ("reid-max-batch-bool", P("reid.max_batch", True), "reid.max_batch: expected int, got bool"),
    ("reid-max-wait-negative", P("reid.max_wait_ms", -1), "reid.max_wait_ms: must be >= 0"),
    ("reid-std-zero", P("reid.std", [0.2, 0, 0.2]), "reid.std[1]: must not be 0"),
    ("reid-input-size-zero", P("reid.input_size", [256, 0]), "reid.input_size[1]: must be > 0"),
    ("reid-input-size-three", P("reid.input_size", [256, 128, 3]), "reid.input_size: expected a list of 2 items"),
    ("reid-mean-nan", P("reid.mean", [float("nan"), 0.4, 0.4]), "reid.mean[0]: expected a finite number"),
    ("reid-scale-zero", P("reid.scale", 0), "reid.scale: must be > 0"),
    ("reid-embedder", P("reid.embedder", "torch"), "reid.embedder: expected one of onnx, vpm"),
    ("reid-channel-order", P("reid.channel_order", "rbg"), "reid.channel_order: expected one of rgb, bgr"),
    ("reid-weights-unset", P("reid.weights", DELETE), "reid.weights: the onnx embedder needs a model file"),
    ("reid-weights-not-found", P("reid.weights", "missing_reid.onnx"), "reid.weights"),
    # matcher
    ("m-threshold-high", P("matcher.threshold", 1.5), "matcher.threshold: must be in [-1, 1]"),
    ("m-threshold-low", P("matcher.threshold", -1.5), "matcher.threshold: must be in [-1, 1]"),
    ("m-threshold-inf", P("matcher.threshold", float("-inf")), "matcher.threshold: expected a finite number"),
    ("m-min-embeddings-zero", P("matcher.min_embeddings", 0), "matcher.min_embeddings: must be >= 1"),
    ("m-revise-every-zero", P("matcher.revise_every", 0), "matcher.revise_every: must be >= 1"),
    ("m-top-k-zero", P("matcher.top_k", 0), "matcher.top_k: must be >= 1"),
    ("m-unknown-key", P("matcher.treshold", 0.5), "matcher.treshold: unknown key; did you mean 'threshold'?"),
    # topology
    ("topo-overlap-unknown", P("topology.overlaps", [["cam_a", "cam_z"]]), "topology.overlaps[0]: unknown camera 'cam_z'"),
    ("topo-overlap-three", P("topology.overlaps", [["cam_a", "cam_b", "cam_a"]]), "topology.overlaps[0]: expected a list of 2 items"),
    ("topo-transition-unknown", P("topology.transitions", [{"from": "cam_a", "to": "cam_z"}]), "topology.transitions[0]: unknown camera 'cam_z'"),
    ("topo-transition-min-negative", P("topology.transitions", [{"from": "cam_a", "to": "cam_b", "min_s": -1}]), "topology.transitions[0].min_s: must be >= 0"),
    ("topo-transition-max-negative", P("topology.transitions", [{"from": "cam_a", "to": "cam_b", "min_s": 0, "max_s": -5}]), "topology.transitions[0].max_s: must be >= 0"),
    ("topo-transition-min-over-max", P("topology.transitions", [{"from": "cam_a", "to": "cam_b", "min_s": 9, "max_s": 3}]), "topology.transitions[0]: min_s must not exceed max_s"),
    ("topo-transition-no-target", P("topology.transitions", [{"from": "cam_a"}]), "topology.transitions[0].target: required key is missing"),
    ("topo-learned-missing", P("topology.learned", "gone.json"), "topology.learned: "),
    ("topo-learned-not-json", P("topology.learned", "notes.txt"), "topology.learned: "),
    ("topo-learned-folder", P("topology.learned", "a_folder"), "topology.learned: "),
    ("topo-learned-not-topology", P("topology.learned", "cameras.yaml"), "topology.learned: "),
    # store
    ("store-max-prototypes-zero", P("store.max_prototypes", 0), "store.max_prototypes: must be in [1, 100000]"),
    ("store-retention-negative", P("store.retention_days", -1), "store.retention_days: must be >= 0"),
    ("store-approximate-negative", P("store.approximate_threshold", -1), "store.approximate_threshold: must be >= 0"),
    ("store-commit-interval-zero", P("store.commit_interval_s", 0), "store.commit_interval_s: must be in (0, 3600]"),
    ("store-commit-interval-huge", P("store.commit_interval_s", 1e12), "store.commit_interval_s: must be in (0, 3600]"),
    ("store-index", P("store.index", "annoy"), "store.index: expected one of auto, flat, ivf, hnsw"),
    ("store-max-prototypes-huge", P("store.max_prototypes", 2**21), "store.max_prototypes: must be in [1, 100000]"),
    ("store-path-folder", P("store.path", "a_folder"), "a_folder is a folder; give the SQLite file"),
    ("store-path-under-a-file", P("store.path", "a_file/gallery.sqlite"), "a_file is not a folder"),
    ("store-path-name-too-long", P("store.path", "x" * 300 + "/g.sqlite"), "store.path: "),
    # output
    ("out-codec-short", P("output.codec", "h26"), "output.codec: a FourCC is exactly 4 ASCII characters"),
    ("out-codec-long", P("output.codec", "mp4vv"), "output.codec: a FourCC is exactly 4 ASCII characters"),
    ("out-codec-unknown", P("output.codec", "zzzz"), "output.codec: this OpenCV build cannot write 'zzzz'"),
    ("out-codec-unknown-mkv", P("output.container", "mkv", "output.codec", "qqqq"), "output.codec: this OpenCV build cannot write 'qqqq' into .mkv"),
    ("out-codec-int", P("output.codec", 1234), "output.codec: expected str, got int"),
    ("out-container", P("output.container", "mov"), "output.container: expected one of avi, mp4, mkv"),
    ("out-trail-negative", P("output.trail", -1), "output.trail: must be >= 0"),
    ("out-video-text", P("output.video", "sometimes"), "output.video: expected bool, got str"),
    # runner and top level
    ("run-queue-size-zero", P("runner.queue_size", 0), "runner.queue_size: must be in [1, 100000]"),
    ("run-queue-size-huge", P("runner.queue_size", 10**9), "runner.queue_size: must be in [1, 100000]"),
    ("run-progress-interval-zero", P("runner.progress_interval_s", 0), "runner.progress_interval_s: must be > 0"),
    ("device", P("device", "gpu"), "device: expected one of auto, cpu, cuda"),
    ("top-unknown-key", P("detectr", {}), "detectr: unknown key; did you mean 'detector'?"),
    ("top-list", FILE("- a\n- b\n"), "cameras.yaml: expected a mapping at the top level, got list"),
    ("top-empty", FILE(""), "cameras.yaml: the config is empty"),
    # YAML
    ("yaml-malformed", T("cameras:", "cameras: ["), "cameras.yaml: line"),
    ("yaml-duplicate-key", T("    fps: 5", "    fps: 5\n    fps: 6"), "cameras.yaml: line 7, column 5: duplicate key 'fps' (first on line 6)"),
    ("yaml-duplicate-section", T("reid:", "detector: {name: hog}\nreid:"), "cameras.yaml: line 11, column 1: duplicate key 'detector' (first on line 8)"),
    ("yaml-alias-bomb", T("reid:", _bomb().lstrip("\n") + "reid:"), "cameras.yaml: line 13, column 9: anchors and aliases"),
    ("yaml-alias", T("    fps: 5", "    fps: &f 5\n    start_frame: *f"), "cameras.yaml: line 6, column 10: anchors and aliases"),
    ("yaml-python-tag", T("    fps: 5", "    fps: !!python/object/apply:os.system [echo]"), "cameras.yaml: line 6"),
    ("yaml-deep", T("    fps: 5", "    fps: " + "[" * 100 + "]" * 100), "cameras.yaml: line 6"),
    ("yaml-two-documents", T("reid:", "---\nreid:"), "cameras.yaml: line"),
    ("yaml-binary", FILE(b"\xff\xfe\x00cameras\x00\xff"), "cameras.yaml: not a text file"),
    # ${VAR}
    ("env-unset", P("cameras[0].source", "${NO_SUCH_VAR}/video.avi"), "cameras.yaml: cameras[0].source: environment variable NO_SUCH_VAR is not set"),
    ("env-unset-password", T(SECRET, "${NO_SUCH_PASSWORD}"), "cameras.yaml: cameras[1].source: environment variable NO_SUCH_PASSWORD is not set"),
    # --set
    ("set-malformed-value", ARGS("--set", "detector.iou=[1"), "--set detector.iou: the value is not valid YAML"),
    ("set-no-key", ARGS("--set", "=3"), "--set: an argument has no key before '='"),
    ("set-no-equals", ARGS("--set", "detector.iou"), "--set detector.iou: expected KEY=VALUE"),
    ("set-no-equals-secret", ARGS("--set", f"rtsp://admin:{SECRET}@host/x"), "expected KEY=VALUE"),
    ("set-scalar-into-mapping", ARGS("--set", "detector=5"), "--set detector: detector is a mapping, got int"),
    ("set-scalar-into-list", ARGS("--set", "cameras=cam_a"), "--set cameras: cameras is a list, got str"),
    ("set-into-a-scalar", ARGS("--set", "detector.name.x=1"), "--set detector.name.x: detector.name holds a single value"),
    ("set-into-a-default-scalar", ARGS("--set", "detector.iou.x=1"), "detector.iou: expected float, got mapping"),
    ("set-empty-name", ARGS("--set", "detector..iou=1"), "--set detector..iou: empty name in the key"),
    ("set-unknown-camera", ARGS("--set", "cameras.cam_z.fps=1"), "--set cameras.cam_z: no list item 'cam_z'"),
    ("set-index-out-of-range", ARGS("--set", "cameras.9.fps=1"), "--set cameras.9: no list item '9'"),
    ("set-unknown-key", ARGS("--set", "reid.max_btch=64"), "reid.max_btch: unknown key; did you mean 'max_batch'?"),
    ("set-out-of-range", ARGS("--set", "detector.iou=2"), "detector.iou: must be in [0, 1]"),
    ("set-nan", ARGS("--set", "cameras.cam_b.fps=.nan"), "cameras[1].fps: expected a finite number"),
    ("set-alias", ARGS("--set", "reid.max_batch=*a"), "--set reid.max_batch: the value is not valid YAML"),
    ("set-duplicate-key", ARGS("--set", "matcher={top_k: 1, top_k: 2}"), "--set matcher: the value is not valid YAML"),
    ("set-bad-secret-source", ARGS("--set", f"cameras.cam_b.source=rtps://admin:{SECRET}@10.0.0.9/x"), "camera cam_b"),
    # other command-line arguments
    ("cli-max-frames-zero", ARGS("--max-frames", "0"), "--max-frames"),
    ("cli-max-frames-negative", ARGS("--max-frames", "-3"), "--max-frames"),
    ("cli-device-cuda", ARGS("--device", "cuda", CUDA_VISIBLE_DEVICES=""), "device: cuda requested but no CUDA device is visible"),
    ("cfg-device-cuda", Edit(patch={"device": "cuda"}, env={"CUDA_VISIBLE_DEVICES": ""}), "device: cuda requested but no CUDA device is visible"),
    ("cli-config-not-found", CMD("run", "missing.yaml", "-o", "OUT"), "missing.yaml: config file not found"),
    ("cli-config-folder", CMD("run", "a_folder", "-o", "OUT"), "a_folder: is a folder, not a config file"),
    ("cli-config-is-video", CMD("run", "video.avi", "-o", "OUT"), "video.avi: not a text file"),
    ("cli-resume-not-a-run", CMD("run", "--resume", "OUT"), "OUT"),
    # sources and weights checked before any process starts
    ("src-missing-file", P("cameras[0].source", "missing.avi"), "camera cam_a"),
    ("src-scheme-typo", T("rtsp://", "rtps://"), "camera cam_b"),
    ("src-single-slash", T("rtsp://", "rtsp:/"), "camera cam_b"),
    ("src-ftp", T("rtsp://", "ftp://"), "camera cam_b"),
    ("weights-text-file", P("detector.weights", "notes.txt"), "detector.weights"),
    ("weights-text-named-onnx", P("detector.weights", "notes.onnx"), "detector.weights"),
    ("weights-detector-is-reid", T("yolov8n_int8.onnx", "osnet_x0_25_msmt17.onnx"), "detector.weights"),
    ("weights-reid-is-detector", T("osnet_x0_25_msmt17.onnx", "yolov8n_int8.onnx"), "reid.weights"),
]
# fmt: on


def _set(data: Any, dotted: str, value: Any) -> None:
    keys = [int(k) if k.isdigit() else k for k in re.split(r"\.|\[(\d+)\]\.?", dotted) if k]
    node = data
    for key in keys[:-1]:
        if isinstance(node, dict) and key not in node:
            node[key] = {}
        node = node[key]
    if value is DELETE:
        del node[keys[-1]]
    else:
        node[keys[-1]] = value


@pytest.fixture
def workspace(tmp_path: Path, assets: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A valid two-camera config over a real video and a camera URL with a password, and an earlier OUT."""
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    monkeypatch.delenv("NO_SUCH_PASSWORD", raising=False)
    (tmp_path / "video.avi").symlink_to(assets / "data/PETS09-S2L1/vtest.avi")
    (tmp_path / "cameras.yaml").write_text(BASE.format(assets=assets, secret=SECRET))
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "a_file").write_text("not a folder\n")
    (tmp_path / "notes.txt").write_text("this is not a detector\n" * 10)
    (tmp_path / "notes.onnx").write_text("this is not a detector\n" * 10)
    for name, data in OUT_FILES.items():
        (tmp_path / "OUT" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "OUT" / name).write_bytes(data)
    return tmp_path


def test_the_base_config_is_valid(workspace):
    config = config_module.load(workspace / "cameras.yaml")
    assert [c.id for c in config.cameras] == ["cam_a", "cam_b"]


def test_the_table_is_large_and_unique():
    assert len(CASES) >= 100
    assert len({case_id for case_id, _, _ in CASES}) == len(CASES)


def _apply(edit: Edit, workspace: Path) -> list[str]:
    path = workspace / "cameras.yaml"
    if edit.patch:
        data = yaml.safe_load(path.read_text())
        for dotted, value in edit.patch.items():
            _set(data, dotted, value)
        path.write_text(yaml.safe_dump(data, sort_keys=False))
    if edit.replace:
        old, new = edit.replace
        assert old in path.read_text(), f"the base config has no {old!r}"
        path.write_text(path.read_text().replace(old, new))
    if isinstance(edit.text, bytes):
        path.write_bytes(edit.text)
    elif edit.text is not None:
        path.write_text(edit.text)
    if edit.command is not None:
        return list(edit.command)
    return ["run", "cameras.yaml", "-o", "OUT", *edit.args]


def _snapshot(root: Path, skip: str | None = None) -> dict[str, tuple]:
    """Every entry under root but `skip`: a folder, a link and its target, or a file and its bytes."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) != str(root / (skip or "\0"))]
        for name in dirnames:
            entries[os.path.relpath(os.path.join(dirpath, name), root)] = ("dir",)
        for name in filenames:
            path = Path(dirpath) / name
            rel = os.path.relpath(path, root)
            entries[rel] = ("link", os.readlink(path)) if path.is_symlink() else ("file", path.read_bytes())
    return entries


@pytest.mark.parametrize(("edit", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_exit_2_and_touches_nothing(workspace, monkeypatch, edit, expected):
    for name, value in edit.env.items():
        monkeypatch.setenv(name, value)
    argv = _apply(edit, workspace)
    before = _snapshot(workspace, skip="OUT")
    out_before = _snapshot(workspace / "OUT")
    result = run_cli(*argv, cwd=workspace, timeout=60)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.stderr, result.stderr
    assert SECRET not in result.stderr + result.stdout, result.stderr
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    assert expected in lines[0], lines[0]
    assert result.returncode == 2, f"exit {result.returncode}: {lines[0]}"
    assert _snapshot(workspace / "OUT") == out_before, "the earlier run in OUT was changed"
    assert _snapshot(workspace, skip="OUT") == before, "files outside OUT were written, changed or removed"
