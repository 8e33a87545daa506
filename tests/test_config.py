"""Config loading: typed dataclasses, dotted-path errors, did-you-mean, ${ENV}, --set, redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline import config
from pipeline.errors import ConfigError

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
        (MINIMAL + "reid: {max_batch: true}\n", "reid.max_batch: expected int, got bool"),
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
    assert cfg.cameras[0].source == "videos/a.mp4"
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
