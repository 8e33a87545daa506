"""Weights are opened before any camera starts: a file that is not the model its key needs is one line, exit 2."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch
import yaml
from cli_runner import COMMAND, run_cli

from pipeline import build
from pipeline import config as config_module
from pipeline.errors import WeightsError
from reid.models import create_model, save_checkpoint


class _RunsCode:
    """Unpickles into a call of `exec`: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


@pytest.fixture
def workspace(tmp_path: Path, assets: Path) -> Path:
    """A folder with a valid one-camera config over real footage and real weights."""
    (tmp_path / "cameras.yaml").write_text(
        yaml.safe_dump({
            "cameras": [{"id": "cam", "source": str(assets / "data/PETS09-S2L1/vtest.avi"), "max_frames": 3}],
            "detector": {"name": "yolo", "weights": str(assets / "models/yolov8n_int8.onnx"), "imgsz": 320},
            "reid": {"embedder": "onnx", "weights": str(assets / "models/osnet_x0_25_msmt17.onnx")},
            "runner": {"progress": False},
        })
    )  # fmt: skip
    return tmp_path


def _set(workspace: Path, section: str, **values) -> None:
    path = workspace / "cameras.yaml"
    raw = yaml.safe_load(path.read_text())
    raw[section] = {**raw[section], **values}
    path.write_text(yaml.safe_dump(raw))


def _one_line_error(workspace: Path) -> str:
    """Run the config; it must fail as a user error, in one line, before any camera processed a frame."""
    result = run_cli("run", "cameras.yaml", "-o", "out", "--device", "cpu", cwd=workspace)
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    out = workspace / "out"
    assert not list(out.glob("mot/*.txt")) and not list(out.glob("videos/*")), "a camera started"
    return lines[0]


def _tiny_checkpoint(folder: Path) -> Path:
    return save_checkpoint(create_model("vpm_tiny", num_classes=4), folder / "vpm_tiny.pt")


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("text.onnx", "are not a loadable ONNX model"),
        ("text.pt", "not a torch zip archive"),
        ("{assets}/models/osnet_x0_25_msmt17.onnx", "are not a detector: output 'output' has shape ['batch', 512]"),
        ("{assets}/models/yolox_nano.onnx", "are not an Ultralytics YOLO export: output shape [1, 3549, 85]"),
        ("{tmp}/vpm_tiny.pt", "holds no Ultralytics model"),
    ],
    ids=["text-onnx", "text-pt", "reid-onnx", "foreign-detector", "reid-checkpoint"],
)  # fmt: skip
def test_detector_weights_that_are_not_a_detector(workspace: Path, assets: Path, weights: str, expected: str):
    (workspace / "text.onnx").write_text("this is not a model\n")
    (workspace / "text.pt").write_text("this is not a model\n")
    _tiny_checkpoint(workspace)
    path = weights.format(assets=assets, tmp=workspace)
    _set(workspace, "detector", weights=path)
    line = _one_line_error(workspace)
    assert line.startswith("reid-pipeline: error: detector.weights: ") and Path(path).name in line
    assert expected in line


@pytest.mark.parametrize(
    ("weights", "expected"),
    [
        ("{assets}/models/yolov8n_int8.onnx", "is not a re-ID model: its output 'output0' has shape [1, 84, 8400]"),
        ("text.onnx", "could not be loaded"),
    ],
    ids=["detector-onnx", "text-onnx"],
)  # fmt: skip
def test_reid_weights_that_are_not_a_reid_model(workspace: Path, assets: Path, weights: str, expected: str):
    (workspace / "text.onnx").write_text("this is not a model\n")
    path = weights.format(assets=assets)
    _set(workspace, "reid", weights=path)
    line = _one_line_error(workspace)
    assert line.startswith("reid-pipeline: error: reid.weights: ") and Path(path).name in line
    assert expected in line


def test_vpm_checkpoint_that_cannot_load_fails_before_the_cameras(workspace: Path):
    (workspace / "junk.pt").write_bytes(b"not a checkpoint" * 10)
    _set(workspace, "reid", embedder="vpm", model="vpm_tiny", weights=str(workspace / "junk.pt"))
    line = _one_line_error(workspace)
    assert "reid.weights: cannot read weights file" in line and "junk.pt" in line


def test_vpm_checkpoint_of_another_model_fails_before_the_cameras(workspace: Path):
    checkpoint = _tiny_checkpoint(workspace)
    _set(workspace, "reid", embedder="vpm", model="vpm_vit_b32", weights=str(checkpoint))
    line = _one_line_error(workspace)
    assert "holds a 'vpm_tiny' model, not 'vpm_vit_b32'" in line


def test_vpm_checkpoint_that_would_run_code_is_refused_unread(workspace: Path):
    marker = workspace / "marker"
    torch.save({"model": _RunsCode(marker), "config": {"name": "vpm_tiny"}}, workspace / "evil.pt")
    _set(workspace, "reid", embedder="vpm", model="vpm_tiny", weights=str(workspace / "evil.pt"))
    line = _one_line_error(workspace)
    assert "refusing to load it" in line and "evil.pt" in line
    assert not marker.exists()


def test_vpm_unknown_model_fails_before_the_cameras(workspace: Path):
    _set(workspace, "reid", embedder="vpm", model="vpm_tiyn")
    assert "unknown model 'vpm_tiyn'; did you mean vpm_tiny" in _one_line_error(workspace)


def test_weights_under_home_written_with_a_tilde(workspace: Path, assets: Path):
    home = workspace / "home"
    (home / "w").mkdir(parents=True)
    for name in ("yolov8n_int8.onnx", "osnet_x0_25_msmt17.onnx"):
        (home / "w" / name).symlink_to(assets / "models" / name)
    _set(workspace, "detector", weights="~/w/yolov8n_int8.onnx")
    _set(workspace, "reid", weights="~/w/osnet_x0_25_msmt17.onnx")
    env = {**os.environ, "HOME": str(home)}
    args = ["run", "cameras.yaml", "-o", "out", "--device", "cpu", "--max-frames", "2"]
    result = subprocess.run(
        [*COMMAND, *args], cwd=workspace, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (workspace / "out" / "mot" / "cam.txt").is_file()


def test_check_weights_accepts_the_real_models_and_a_tiny_vpm_checkpoint(workspace: Path, tmp_path: Path):
    config = config_module.load(workspace / "cameras.yaml")
    build.check_weights(config)
    checkpoint = _tiny_checkpoint(tmp_path)
    vpm = config_module.load(
        workspace / "cameras.yaml", ["reid.embedder=vpm", "reid.model=vpm_tiny", f"reid.weights={checkpoint}"]
    )
    build.check_weights(vpm)
    with pytest.raises(WeightsError, match=r"^reid\.weights: weights file .*nothing\.pt not found"):
        build.check_weights(
            config_module.load(workspace / "cameras.yaml", [f"reid.weights={tmp_path}/nothing.pt"])
        )
