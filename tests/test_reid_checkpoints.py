"""Checkpoints hold tensors and plain data only: a file that would run code when unpickled is refused unread."""

from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_runner import run_cli

from pipeline.errors import WeightsError
from reid.engine import Trainer, load_checkpoint, save_checkpoint, warmup_cosine
from reid.models import config_from_dict as model_config_from_dict
from reid.models import create_model
from reid.models.weights import plain_data
from reid.models.weights import save_checkpoint as save_model_checkpoint
from reid.objective import TrainingObjective
from reid.train_config import config_from_dict
from reid.training import build_model, build_optimizer, model_from_checkpoint

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "reid" / "vpm_tiny_pets.yaml"


class _RunsCode:
    """Unpickles into a call of `exec`: what a hostile checkpoint does."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').write('code ran')",))


def _hostile_checkpoint(path: Path, marker: Path) -> Path:
    """A file shaped like a training checkpoint whose 'model' entry runs code when unpickled."""
    torch.save({"model": _RunsCode(marker), "config": {"name": "vpm_tiny"}, "train_config": {},
                "num_classes": 4}, path)  # fmt: skip
    return path


@pytest.fixture
def hostile(tmp_path: Path) -> tuple[Path, Path]:
    """(checkpoint, marker): the marker file appears if anything unpickles the checkpoint unsafely."""
    marker = tmp_path / "marker"
    path = _hostile_checkpoint(tmp_path / "evil.pt", marker)
    # The payload is live: an unsafe load really runs it (checked on a copy, with its own marker).
    probe = tmp_path / "probe"
    torch.load(_hostile_checkpoint(tmp_path / "probe.pt", probe), weights_only=False)
    assert probe.read_text() == "code ran"
    return path, marker


@pytest.mark.parametrize(
    "command",
    [
        ["reid", "export", "{evil}", "-o", "{tmp}/out.onnx"],
        ["reid", "eval", "{evil}"],
        ["reid", "train", str(CONFIG), "--resume", "{evil}", "-o", "{tmp}/train", "--set", "data.root={tmp}"],
    ],
    ids=["export", "eval", "train-resume"],
)
def test_cli_refuses_a_checkpoint_that_would_run_code(hostile, tmp_path: Path, command: list[str]) -> None:
    evil, marker = hostile
    args = [part.format(evil=evil, tmp=tmp_path) for part in command]
    result = run_cli(*args, cwd=tmp_path)
    assert not marker.exists(), "code from the checkpoint ran"
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert str(evil) in lines[0] and "refusing to load it" in lines[0] and "exec" in lines[0]
    assert not (tmp_path / "out.onnx").exists()


def test_create_model_refuses_a_checkpoint_that_would_run_code(hostile) -> None:
    evil, marker = hostile
    with pytest.raises(WeightsError, match="refusing to load it"):
        create_model("vpm_tiny", pretrained=evil)
    assert not marker.exists()


def _trainer(num_classes: int = 4):
    config = config_from_dict({
        "data": {"root": "unused", "p": 2, "k": 2, "num_workers": 0},
        "model": {"name": "vpm_tiny", "mode": "full", "overrides": {"input_size": [64, 32]}},
        "optim": {"epochs": 2, "warmup_epochs": 1},
        "run": {"device": "cpu", "progress": False},
    })  # fmt: skip
    model = build_model(config, num_classes)
    optimizer = build_optimizer(config, model)
    scheduler = warmup_cosine(optimizer, total_iters=4, warmup_iters=1, warmup_factor=0.1, min_lr_ratio=0.01)
    trainer = Trainer(model=model, objective=TrainingObjective(class_counts=[2] * num_classes),
                      optimizer=optimizer, scheduler=scheduler, device=torch.device("cpu"), progress=False)  # fmt: skip
    trainer.train_step(torch.randn(4, 3, 64, 32), torch.tensor([0, 0, 1, 1]))
    return trainer, config


def test_a_checkpoint_written_by_the_previous_writer_still_loads_and_exports(tmp_path: Path) -> None:
    trainer, config = _trainer()
    # Exactly what training wrote before checkpoints were converted to plain data: a bare torch.save.
    legacy = {**trainer.state_dict(), "epoch": 1, "config": trainer.model.config.to_dict(),
              "train_config": config.to_dict(), "num_classes": 4}  # fmt: skip
    torch.save(legacy, tmp_path / "checkpoint.pt")
    model, loaded_config = model_from_checkpoint(load_checkpoint(tmp_path / "checkpoint.pt"))
    assert loaded_config == config
    images = torch.randn(2, 3, 64, 32)
    with torch.no_grad():
        assert torch.allclose(model.encode(images), trainer.model.eval().encode(images))
    result = run_cli("reid", "export", "checkpoint.pt", "-o", "tiny.onnx", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "tiny.onnx").stat().st_size > 0


def test_checkpoint_writers_store_plain_data_that_loads_without_unpickling_code(tmp_path: Path) -> None:
    trainer, config = _trainer()
    state = {**trainer.state_dict(), "epoch": np.int64(1), "train_config": config.to_dict(),
             "config": trainer.model.config, "num_classes": 4, "root": tmp_path, "when": datetime.date(2024, 5, 1),
             "counts": np.arange(3), "best": {"mAP": np.float32(0.5)}}  # fmt: skip
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    loaded = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert loaded["epoch"] == 1 and type(loaded["epoch"]) is int
    assert model_config_from_dict(loaded["config"]) == trainer.model.config
    assert loaded["root"] == str(tmp_path) and loaded["when"] == "2024-05-01"
    assert torch.equal(loaded["counts"], torch.arange(3)) and loaded["best"] == {"mAP": 0.5}
    path = save_model_checkpoint(
        create_model("vpm_tiny", num_classes=4), tmp_path / "model.pt", epoch=np.int32(3)
    )
    assert torch.load(path, weights_only=True)["epoch"] == 3


def test_a_checkpoint_writer_refuses_objects_that_would_need_unpickling(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match=r"checkpoint\['extra'\]: cannot store a _RunsCode"):
        plain_data({"extra": _RunsCode(tmp_path / "marker")})


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ([1, 2, 3], "is not a VPM-Net training checkpoint"),
        ({"model": {}, "train_config": {}, "num_classes": "four"}, "num_classes: expected a positive integer"),
        ({"model": "weights", "train_config": {}, "num_classes": 4}, "model: expected a state dict of tensors"),
        ({"model": {}, "train_config": 7, "num_classes": 4}, "checkpoint train_config"),
        (
            {"model": {"x": torch.zeros(1)}, "train_config": {"data": {"root": "x"}, "model": {"name": "vpm_tiny"}},
             "num_classes": 4},
            "does not fit model 'vpm_tiny'",
        ),
    ],
    ids=["list", "num-classes", "model", "train-config", "state-dict"],
)  # fmt: skip
def test_cli_export_of_a_malformed_checkpoint_is_one_line(tmp_path: Path, state, expected: str) -> None:
    torch.save(state, tmp_path / "bad.pt")
    result = run_cli("reid", "export", "bad.pt", "-o", "bad.onnx", cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr
