"""VPM-Net behind the pipeline: `reid.embedder: vpm` in cameras.yaml runs a VPM-Net checkpoint end to end."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from cli_runner import run_cli, run_vpm_tiny

from reid.models import create_model
from reid.models.weights import save_checkpoint


def test_run_with_a_vpm_checkpoint(assets: Path, tmp_path: Path):
    _, result = run_vpm_tiny(assets, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    info = json.loads((tmp_path / "out/run.json").read_text())
    assert info["stages"]["reid"]["crops"] > 0
    assert json.loads((tmp_path / "out/tracks.json").read_text())["identities"]


def test_vpm_checkpoint_of_another_model_is_one_line(assets: Path, tmp_path: Path):
    checkpoint = save_checkpoint(create_model("vpm_tiny", num_classes=4), tmp_path / "vpm_tiny.pt")
    config = {
        "cameras": [{"id": "cam", "source": str(assets / "data/PETS09-S2L1/vtest.avi"), "max_frames": 3}],
        "detector": {"name": "hog"},
        "reid": {"embedder": "vpm", "weights": str(checkpoint), "model": "vpm_vit_b32"},
        "runner": {"progress": False},
    }
    (tmp_path / "cameras.yaml").write_text(yaml.safe_dump(config))
    result = run_cli("run", "cameras.yaml", "-o", "out", cwd=tmp_path)
    assert result.returncode != 0
    assert "vpm_tiny" in result.stderr and "Traceback" not in result.stderr
