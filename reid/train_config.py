"""VPM-Net training configuration: typed, frozen dataclasses loaded from YAML; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pipeline.errors import ConfigError
from pipeline.typed_config import apply_override, build, read_yaml


@dataclass(frozen=True)
class ModelSection:
    """Which registered model to build and how."""

    name: str = "vpm_vit_b16"
    pretrained: str | None = None  # open_clip tag ("openai") or a local weights path
    mode: Literal["prompt", "full"] = "full"
    overrides: dict = field(default_factory=dict)  # extra create_model keyword arguments


@dataclass(frozen=True)
class DataSection:
    """Dataset, PK batches and augmentation."""

    root: str
    format: str = "market1501"
    p: int = 16
    k: int = 4
    num_workers: int = 4
    flip_prob: float = 0.5
    pad: int = 10
    erasing_prob: float = 0.5
    eval_batch_size: int = 128


@dataclass(frozen=True)
class OptimSection:
    """Optimizer and learning-rate schedule (linear warmup, then cosine decay), stepped per iteration."""

    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = 5e-6
    prompt_lr_scale: float = 10.0  # prompts, KAN and heads learn this much faster than the backbone
    weight_decay: float = 1e-4
    momentum: float = 0.9  # sgd only
    epochs: int = 60
    warmup_epochs: float = 10.0
    warmup_factor: float = 0.1  # lr multiplier at the first iteration
    min_lr_ratio: float = 0.01  # cosine floor, relative to lr
    grad_clip: float | None = None


@dataclass(frozen=True)
class LossSection:
    """Weights and settings of the loss terms; a zero weight switches a term off."""

    id_weight: float = 1.0
    label_smoothing: float = 0.1
    minp_weight: float = 1.0
    minp_k: int = 3
    minp_tau: float = 0.1
    minp_margin: float = 0.3
    minp_class_weights: bool = True
    triplet_weight: float = 0.0
    triplet_margin: float = 0.3
    i2t_weight: float = 0.0
    i2t_temperature: float = 0.07


@dataclass(frozen=True)
class RunSection:
    """Seeds, device, precision, evaluation cadence."""

    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: Literal["auto", "bf16", "fp16", "off"] = "auto"  # auto: bf16 where supported on CUDA, off on CPU
    eval_every: int = 10  # epochs; 0 evaluates only after the last epoch
    eval_at_start: bool = False  # also evaluate the untrained model (logged as epoch 0)
    rerank: bool = False
    progress: bool = True
    cpu_threads: int | None = None  # torch intra-op threads while training; 1 is fastest on a busy small CPU


@dataclass(frozen=True)
class TrainConfig:
    """A whole training run."""

    data: DataSection
    model: ModelSection = field(default_factory=ModelSection)
    optim: OptimSection = field(default_factory=OptimSection)
    loss: LossSection = field(default_factory=LossSection)
    run: RunSection = field(default_factory=RunSection)

    def __post_init__(self) -> None:
        checks = [
            ("data.p", self.data.p >= 2, "at least 2 identities per batch"),
            ("data.k", self.data.k >= 2, "at least 2 images per identity"),
            ("optim.epochs", self.optim.epochs >= 1, "at least 1"),
            ("optim.lr", self.optim.lr > 0, "positive"),
            ("optim.warmup_epochs", 0 <= self.optim.warmup_epochs <= self.optim.epochs, "within [0, epochs]"),
            ("run.eval_every", self.run.eval_every >= 0, "0 or more"),
        ]
        for path, ok, expected in checks:
            if not ok:
                raise ConfigError(f"{path}: expected {expected}")

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly mapping (tuples as lists) that `config_from_dict` reads back."""
        return _plain(dataclasses.asdict(self))


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def config_from_dict(raw: Any, source: str = "<dict>") -> TrainConfig:
    """Validate a mapping into a TrainConfig; errors name `source` and the dotted key."""
    try:
        return build(TrainConfig, raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_train_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML file, apply `section.key=value` overrides and validate it."""
    raw = read_yaml(path) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    return config_from_dict(raw, source=str(path))
