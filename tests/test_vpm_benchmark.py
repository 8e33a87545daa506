"""The GPU benchmark script imports, exits cleanly without CUDA, and its code runs on a CPU with the tiny model."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "vpm_gpu.py"


def _load():
    spec = importlib.util.spec_from_file_location("vpm_gpu", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exits_cleanly_without_cuda(monkeypatch, caplog):
    module = _load()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with caplog.at_level("INFO", logger="vpm_gpu"):
        assert module.main([]) == 0
    assert "no CUDA device" in caplog.text


def test_cpu_smoke_run(tmp_path):
    module = _load()
    out = tmp_path / "figures.json"
    argv = ["--device", "cpu", "--model", "vpm_tiny", "--batches", "2", "--train-batch", "4"]
    assert module.main([*argv, "--iters", "1", "--warmup", "0", "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures["encode_crops_per_s"]["2"] > 0 and figures["embedder_crops_per_s"]["2"] > 0
    assert set(figures["train_step"]) == {"prompt", "full"}
    assert (
        figures["train_step"]["full"]["trainable_params"]
        > figures["train_step"]["prompt"]["trainable_params"]
    )
