"""Config loading: typed dataclasses, dotted-path errors, did-you-mean, ${ENV}, --set, redaction."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import yaml

from pipeline import build, config
from pipeline.errors import ConfigError
from pipeline.typed_config import expand_env

MINIMAL = """
cameras:
  - id: cam_a
    source: a.mp4
  - id: cam_b
    source: rtsp://user:secret@10.0.0.5/stream
    fps: 5
detector: {name: hog}
reid: {weights: osnet.onnx}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cameras.yaml"
    path.write_text(text)
    return path


def test_loads_typed_frozen_config(tmp_path):
    cfg = config.load(write(tmp_path, MINIMAL))
    assert [c.id for c in cfg.cameras] == ["cam_a", "cam_b"]
    assert cfg.cameras[1].fps == 5.0 and isinstance(cfg.cameras[1].fps, float)
    assert cfg.reid.input_size == (256, 128)
    with pytest.raises(AttributeError):
        cfg.device = "cpu"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("cameras: [\n  - id: a\n", "malformed YAML"),
        (MINIMAL + "matcher: {treshold: 0.4}\n", "matcher.treshold: unknown key; did you mean 'threshold'?"),
        (MINIMAL + "detectr: {}\n", "detectr: unknown key; did you mean 'detector'?"),
        (MINIMAL.replace("fps: 5", "fps: fast"), "cameras[1].fps: expected float or null, got str"),
        (MINIMAL.replace("source: a.mp4", "source: [1]"), "cameras[0].source: expected str or int, got list"),
        (MINIMAL.replace("id: cam_b", "id: cam_a"), "cameras[1].id: duplicate camera id 'cam_a'"),
        (MINIMAL.replace("{name: hog}", "{name: yolov8}"), "detector.name: expected one of yolo, hog, mot"),
        (
            MINIMAL.replace("{weights: osnet.onnx}", "{weights: osnet.onnx, max_batch: true}"),
            "reid.max_batch: expected int, got bool",
        ),
        ("cameras: []\nreid: {weights: x}\n", "cameras: at least one camera is required"),
        ("- a\n- b\n", "expected a mapping at the top level"),
        (
            MINIMAL + "topology: {overlaps: [[cam_a, cam_c]]}\n",
            "topology.overlaps[0]: unknown camera 'cam_c'",
        ),
        ("cameras:\n  - source: a.mp4\nreid: {weights: x}\n", "cameras[0].id: required key is missing"),
    ],
)
def test_bad_config_names_the_path(tmp_path, text, message):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, text))
    assert message in str(err.value)
    assert str(tmp_path) in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        config.load(tmp_path / "nope.yaml")


def test_env_expansion_and_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("CAM_PASSWORD", "hunter2")
    text = MINIMAL.replace("user:secret", "user:${CAM_PASSWORD}").replace("a.mp4", "${VIDEOS:-videos}/a.mp4")
    cfg = config.load(write(tmp_path, text))
    assert cfg.cameras[1].source == "rtsp://user:hunter2@10.0.0.5/stream"
    assert cfg.cameras[0].source == str(tmp_path / "videos/a.mp4")  # relative to the config file
    monkeypatch.delenv("CAM_PASSWORD")
    with pytest.raises(
        ConfigError, match=r"cameras\[1\].source: environment variable CAM_PASSWORD is not set"
    ):
        config.load(write(tmp_path, text))


def test_overrides(tmp_path):
    cfg = config.load(
        write(tmp_path, MINIMAL),
        [
            "reid.max_batch=64",
            "cameras.cam_b.fps=2.5",
            "cameras[0].max_frames=10",
            "topology.overlaps=[[cam_a, cam_b]]",
        ],
    )
    assert cfg.reid.max_batch == 64
    assert cfg.cameras[1].fps == 2.5
    assert cfg.cameras[0].max_frames == 10
    assert cfg.topology.overlaps == (("cam_a", "cam_b"),)
    with pytest.raises(ConfigError, match="no list item 'cam_z'"):
        config.load(write(tmp_path, MINIMAL), ["cameras.cam_z.fps=1"])
    with pytest.raises(ConfigError, match=r"reid\.max_btch: unknown key; did you mean 'max_batch'"):
        config.load(write(tmp_path, MINIMAL), ["reid.max_btch=1"])


def test_transitions_accept_from_to(tmp_path):
    text = MINIMAL + "topology:\n  transitions:\n    - {from: cam_a, to: cam_b, min_s: 2, max_s: 20}\n"
    cfg = config.load(write(tmp_path, text))
    assert cfg.topology.transitions[0].source == "cam_a"
    assert cfg.topology.transitions[0].max_s == 20.0


def test_resolved_config_redacts_credentials(tmp_path):
    data = config.to_dict(config.load(write(tmp_path, MINIMAL)))
    assert "secret" not in str(data)
    assert data["cameras"][1]["source"].startswith("rtsp://***@10.0.0.5")


@pytest.mark.parametrize(
    "path", sorted(Path(__file__).parents[1].glob("configs/*.yaml")), ids=lambda p: p.name
)
def test_example_configs_load(path, monkeypatch):
    monkeypatch.setenv("REID_ASSETS", "/assets")
    monkeypatch.setenv("RTSP_PASSWORD", "x")
    assert config.load(path).cameras


def test_commit_interval_default_and_range(tmp_path):
    assert config.load(write(tmp_path, MINIMAL)).store.commit_interval_s == 1.0
    with pytest.raises(ConfigError, match=r"store\.commit_interval_s: must be in \(0, 3600\], got 0"):
        config.load(write(tmp_path, MINIMAL), ["store.commit_interval_s=0"])


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("cameras.cam_b.fps", "0", "cameras[1].fps: must be > 0, got 0"),
        ("cameras.cam_b.fps", ".nan", "cameras[1].fps: expected a finite number, got nan"),
        ("cameras.cam_b.fps", "-.inf", "cameras[1].fps: expected a finite number, got -inf"),
        ("cameras.cam_b.fps", "1" + "0" * 400, "cameras[1].fps: number too large"),
        ("cameras.cam_a.start_frame", "0", "cameras[0].start_frame: must be >= 1, got 0"),
        ("cameras.cam_a.max_frames", "0", "cameras[0].max_frames: must be >= 1, got 0"),
        ("cameras.cam_b.read_timeout_s", "0", "cameras[1].read_timeout_s: must be in (0, 86400], got 0"),
        ("cameras.cam_b.max_retries", "-1", "cameras[1].max_retries: must be >= 0, got -1"),
        ("cameras.cam_a.time_offset_s", ".inf", "cameras[0].time_offset_s: expected a finite number"),
        ("cameras.cam_a.source", "-1", "cameras[0].source: a webcam index must be >= 0"),
        ("detector.confidence", "1.5", "detector.confidence: must be in [0, 1], got 1.5"),
        ("detector.iou", "-0.1", "detector.iou: must be in [0, 1], got -0.1"),
        ("detector.imgsz", "100", "detector.imgsz: must be a multiple of 32, got 100"),
        ("detector.imgsz", "0", "detector.imgsz: must be > 0, got 0"),
        ("detector.batch", "0", "detector.batch: must be >= 1, got 0"),
        ("sampler.every_k", "0", "sampler.every_k: must be >= 1, got 0"),
        ("sampler.max_per_track", "0", "sampler.max_per_track: must be >= 1, got 0"),
        ("sampler.min_height", "-1", "sampler.min_height: must be >= 0, got -1"),
        ("reid.std", "[0.2, 0, 0.2]", "reid.std[1]: must not be 0"),
        ("reid.input_size", "[256, 0]", "reid.input_size[1]: must be > 0, got 0"),
        ("reid.max_batch", "0", "reid.max_batch: must be >= 1, got 0"),
        ("reid.max_wait_ms", "-1", "reid.max_wait_ms: must be >= 0, got -1"),
        ("reid.mean", "[.nan, 0, 0]", "reid.mean[0]: expected a finite number, got nan"),
        ("matcher.threshold", "1.01", "matcher.threshold: must be in [-1, 1], got 1.01"),
        ("matcher.min_embeddings", "0", "matcher.min_embeddings: must be >= 1, got 0"),
        ("matcher.revise_every", "0", "matcher.revise_every: must be >= 1, got 0"),
        ("matcher.top_k", "0", "matcher.top_k: must be >= 1, got 0"),
        ("store.max_prototypes", "0", "store.max_prototypes: must be in [1, 100000], got 0"),
        ("store.retention_days", "-1", "store.retention_days: must be >= 0, got -1"),
        ("store.approximate_threshold", "-1", "store.approximate_threshold: must be >= 0, got -1"),
        ("runner.queue_size", "0", "runner.queue_size: must be in [1, 100000], got 0"),
        ("runner.progress_interval_s", "0", "runner.progress_interval_s: must be > 0, got 0"),
        ("output.trail", "-1", "output.trail: must be >= 0, got -1"),
        (
            "output.codec",
            "h26",
            "output.codec: a FourCC is exactly 4 ASCII characters (such as mp4v), got 'h26'",
        ),
        (
            "topology.transitions",
            "[{from: cam_a, to: cam_b, min_s: -1}]",
            "topology.transitions[0].min_s: must be >= 0",
        ),
    ],
)
def test_values_outside_their_range(tmp_path, key, value, message):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, MINIMAL), [f"{key}={value}"])
    assert message in str(err.value)
    assert str(err.value).startswith(str(tmp_path)) and "\n" not in str(err.value)


def test_duplicate_keys_name_the_line(tmp_path):
    text = MINIMAL.replace("    fps: 5", "    fps: 5\n    transport: udp\n    fps: 6")
    with pytest.raises(ConfigError, match=r"line 9, column 5: duplicate key 'fps' \(first on line 7\)"):
        config.load(write(tmp_path, text))


def test_alias_bomb_fails_at_once(tmp_path):
    levels = ['a0: &a0 ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    text = MINIMAL + "tracker:\n  params:\n" + "".join(f"    {line}\n" for line in levels)
    started = time.monotonic()
    with pytest.raises(
        ConfigError, match=r"line 12, column 9: anchors and aliases \(&name, \*name\) are not allowed"
    ):
        config.load(write(tmp_path, text))
    assert time.monotonic() - started < 1.0


def test_expand_env_expands_shared_values_once():
    shared: list = ["${HOME}"]
    for _ in range(40):  # 2**40 paths through the tree, one node per level
        shared = [shared, shared]
    expanded = expand_env({"a": shared}, "")
    assert expanded["a"][0] is expanded["a"][1]


def test_unset_variable_names_the_config_file(tmp_path, monkeypatch):
    monkeypatch.delenv("NO_SUCH_VAR", raising=False)
    path = write(tmp_path, MINIMAL.replace("a.mp4", "${NO_SUCH_VAR}/a.mp4"))
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert str(err.value) == f"{path}: cameras[0].source: environment variable NO_SUCH_VAR is not set"


@pytest.mark.parametrize(
    ("camera_id", "message"),
    [
        (".", "cameras[0].id: '.' is not a usable name; ids may not be '.' or '..'"),
        ("..", "cameras[0].id: '..' is not a usable name"),
        ("a" * 65, "cameras[0].id: 'aaaaaaaaaaaaaaaaaaaa'... is 65 characters long; ids have at most 64"),
        ("../evil", "cameras[0].id: '../evil' may use only letters"),
        ("''", "cameras[0].id: the id is empty"),
    ],
)
def test_camera_ids_that_cannot_name_files(tmp_path, camera_id, message):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, MINIMAL.replace("id: cam_a", f"id: {camera_id}")))
    assert message in str(err.value)
    assert config.load(write(tmp_path, MINIMAL.replace("id: cam_a", f"id: {'a' * 64}"))).cameras[0].id


def test_paths_resolve_against_the_config_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    folder = tmp_path / "configs"
    folder.mkdir()
    (folder / "dets").mkdir()
    (folder / "dets" / "a.txt").write_text("")
    (folder / "dets" / "b.txt").write_text("")
    text = MINIMAL.replace("source: a.mp4", "source: videos/a.mp4\n    detections: dets/a.txt")
    text = text.replace("fps: 5", "fps: 5\n    detections: ~/b.txt")
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "b.txt").write_text("")
    text = text.replace("{name: hog}", "{name: mot}").replace("osnet.onnx", "~/m/osnet.onnx")
    text += "store: {path: gallery/store.sqlite}\n"
    cfg = config.load(write(folder, text), ["cameras.cam_a.source=~/x.mp4"])
    assert cfg.cameras[0].source == str(tmp_path / "home/x.mp4")
    assert cfg.cameras[0].detections == str(folder / "dets/a.txt")
    assert cfg.cameras[1].source == "rtsp://user:secret@10.0.0.5/stream"  # URLs stay as they are
    assert cfg.cameras[1].detections == str(tmp_path / "home/b.txt")
    assert cfg.reid.weights == str(tmp_path / "home/m/osnet.onnx")
    assert cfg.store.path == str(folder / "gallery/store.sqlite")
    cfg = config.load(write(folder, MINIMAL.replace("source: a.mp4", "source: 0")))
    assert cfg.cameras[0].source == 0
    cfg = config.load(write(folder, MINIMAL), ["cameras.cam_a.source='0'", "cameras.cam_a.id=cam_c"])
    assert cfg.cameras[0].source == "0"  # a webcam, for the source to decide


def test_detector_weights_by_name_are_left_to_ultralytics(tmp_path):
    text = MINIMAL.replace("{name: hog}", "{name: yolo, weights: yolov8n.pt}")
    assert config.load(write(tmp_path, text)).detector.weights == "yolov8n.pt"
    (tmp_path / "yolov8n.pt").write_bytes(b"")
    assert config.load(write(tmp_path, text)).detector.weights == str(tmp_path / "yolov8n.pt")
    text = MINIMAL.replace("{name: hog}", "{name: yolo, weights: w/det.onnx}")
    assert config.load(write(tmp_path, text)).detector.weights == str(tmp_path / "w/det.onnx")


def test_mot_detector_needs_its_detections(tmp_path):
    text = MINIMAL.replace("{name: hog}", "{name: mot}")
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detections: the mot detector needs a det.txt"):
        config.load(write(tmp_path, text))
    text = text.replace("source: a.mp4", "source: a.mp4\n    detections: det.txt")
    text = text.replace("fps: 5", "fps: 5\n    detections: det.txt")
    with pytest.raises(ConfigError, match=r"cameras\[0\]\.detections: no such file .*det\.txt"):
        config.load(write(tmp_path, text))


def test_store_path_must_be_a_writable_file(tmp_path):
    (tmp_path / "folder").mkdir()
    (tmp_path / "a_file").write_text("")
    with pytest.raises(ConfigError, match=r"store\.path: .*folder is a folder"):
        config.load(write(tmp_path, MINIMAL), ["store.path=folder"])
    with pytest.raises(ConfigError, match=r"store\.path: .*a_file is not a folder"):
        config.load(write(tmp_path, MINIMAL), ["store.path=a_file/store.sqlite"])


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ("{track_bufer: 60}", "tracker.params.track_bufer: unknown key; did you mean 'track_buffer'?"),
        ("{track_buffer: sixty}", "tracker.params.track_buffer: expected int, got str"),
        ("{track_buffer: 0}", "tracker.params.track_buffer: must be >= 1, got 0"),
        ("{match_thresh: 2}", "tracker.params.match_thresh: must be in [0, 1], got 2"),
        ("{fuse_score: 1}", "tracker.params.fuse_score: expected bool, got int"),
        ("{gmc_method: orb}", "tracker.params.gmc_method: unknown key"),  # BoT-SORT only
        ("[1]", "tracker.params: expected a mapping, got list"),
    ],
)
def test_tracker_params_are_checked(tmp_path, params, message):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, MINIMAL + f"tracker: {{method: bytetrack, params: {params}}}\n"))
    assert message in str(err.value)


def test_botsort_params(tmp_path):
    text = MINIMAL + "tracker: {method: botsort, params: {gmc_method: orb, track_buffer: 60}}\n"
    assert config.load(write(tmp_path, text)).tracker.params == {"gmc_method": "orb", "track_buffer": 60}
    with pytest.raises(
        ConfigError, match=r"tracker\.params\.gmc_method: expected one of none, sparseOptFlow"
    ):
        config.load(write(tmp_path, text.replace("orb", "optflow")))


@pytest.mark.parametrize("method", ["bytetrack", "botsort"])
def test_tracker_param_types_are_ultralytics_types(method):
    import dataclasses
    import typing

    import ultralytics

    from pipeline.tracking import TRACKER_PARAMS

    shipped = yaml.safe_load((Path(ultralytics.__file__).parent / f"cfg/trackers/{method}.yaml").read_text())
    hints = typing.get_type_hints(TRACKER_PARAMS[method])
    for param in dataclasses.fields(TRACKER_PARAMS[method]):
        assert isinstance(shipped[param.name], str if param.name == "gmc_method" else hints[param.name])


def test_codec_the_build_cannot_write(tmp_path):
    with pytest.raises(
        ConfigError, match=r"output\.codec: this OpenCV build cannot write 'zzzz' into \.avi files"
    ):
        config.load(write(tmp_path, MINIMAL), ["output.codec=zzzz"])
    assert config.load(write(tmp_path, MINIMAL), ["output.codec=zzzz", "output.video=false"])


@pytest.mark.parametrize(
    ("item", "message"),
    [
        ("detector.iou=[1", "--set detector.iou: the value is not valid YAML"),
        ("=3", "--set: an argument has no key before '='"),
        ("detector.iou", "--set detector.iou: expected KEY=VALUE"),
        ("rtsp://admin:pw@cam", "--set rtsp://***@cam: expected KEY=VALUE"),
        ("detector=5", "--set detector: detector is a mapping, got int; set one of its keys"),
        ("cameras=5", "--set cameras: cameras is a list, got int"),
        (
            "detector.name.x=1",
            "--set detector.name.x: detector.name holds a single value (str), not a mapping",
        ),
        ("detector..iou=1", "--set detector..iou: empty name in the key"),
        ("cameras.7.fps=1", "--set cameras.7: no list item '7' (give an index below 2 or a camera id)"),
        ("reid.max_batch=*a", "--set reid.max_batch: the value is not valid YAML (line 1, column 1: anchors"),
        ("matcher={a: 1, a: 2}", "duplicate key 'a'"),
    ],
)
def test_malformed_overrides(tmp_path, item, message):
    with pytest.raises(ConfigError) as err:
        config.load(write(tmp_path, MINIMAL), [item])
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "pw" not in str(err.value)


def test_cuda_without_a_gpu(monkeypatch):
    torch = pytest.importorskip("torch")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match=r"^device: cuda requested but no CUDA device is visible$"):
        build.resolve_device("cuda")
    assert build.resolve_device("auto") == "cpu"
    assert build.resolve_device("cpu") == "cpu"
