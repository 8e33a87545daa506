"""VPM-Net training configuration: typed, frozen dataclasses loaded from YAML; unknown keys are errors."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError


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
        return _build(TrainConfig, raw, "")
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_train_config(path: str | Path, overrides: typing.Sequence[str] = ()) -> TrainConfig:
    """Read a training YAML file, apply `section.key=value` overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"training config {path} not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key or not isinstance(raw, dict):
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {key}: {part} is not a section")
        node[parts[-1]] = yaml.safe_load(value)
    return config_from_dict(raw, source=str(path))


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {type(raw).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in raw.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid keys: {', '.join(fields)}"
            raise ConfigError(f"{path}: unknown key; {hint}")
        values[key] = _coerce(hints[key], value, path)
    for name, f in fields.items():
        if (
            name not in values
            and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING
        ):
            raise ConfigError(f"{where + '.' if where else ''}{name}: required key is missing")
    return cls(**values)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except ConfigError:
                continue
        raise ConfigError(f"{path}: expected {hint}, got {type(value).__name__} ({value!r})")
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, args))}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple) or len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} items, got {value!r}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
        return value
    raise ConfigError(f"{path}: expected {hint.__name__}, got {type(value).__name__} ({value!r})")
