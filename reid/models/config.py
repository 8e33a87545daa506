"""VPM-Net variant configuration: a typed, frozen dataclass loaded from one YAML file per variant."""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pipeline.errors import ConfigError

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
MODES = ("prompt", "full")


@dataclass(frozen=True)
class VPMConfig:
    """Architecture and ablation switches of one VPM-Net variant (see DESIGN.md, 'VPM-Net')."""

    name: str
    clip_model: str | None = "ViT-B-16"  # open_clip architecture name; None -> build from clip_cfg
    clip_cfg: dict | None = None  # open_clip model cfg (embed_dim, vision_cfg, text_cfg) for custom variants
    quick_gelu: bool = True  # OpenAI CLIP weights were trained with QuickGELU
    input_size: tuple[int, int] = (256, 128)  # (height, width)
    patch_stride: int | None = None  # None -> patch size (no overlap); e.g. 12 for overlapping 16x16 patches
    vpt: bool = True
    num_prompts: int = 8
    prompt_dropout: float = 0.0
    kan: bool = True
    kan_heads: int = 8
    kan_dim: int = 256
    attributes: tuple[str, ...] = ()
    attribute_template: str = "a photo of a person {}."
    identity_template: str = "a photo of a X X X X person."  # each X is one learnable context token
    num_classes: int = 751
    mode: str = "prompt"
    mean: tuple[float, float, float] = CLIP_MEAN
    std: tuple[float, float, float] = CLIP_STD
    description: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        problems = []
        if self.clip_model is None and self.clip_cfg is None:
            problems.append("one of clip_model or clip_cfg must be set")
        if self.mode not in MODES:
            problems.append(f"mode: expected one of {', '.join(MODES)}, got {self.mode!r}")
        if self.num_classes < 1:
            problems.append(f"num_classes: expected >= 1, got {self.num_classes}")
        if self.num_prompts < 0 or (self.vpt and self.num_prompts == 0):
            problems.append(f"num_prompts: expected >= 1 when vpt is on, got {self.num_prompts}")
        if min(self.input_size) < 1 or (self.patch_stride is not None and self.patch_stride < 1):
            problems.append(
                f"input_size/patch_stride must be positive, got {self.input_size}/{self.patch_stride}"
            )
        if "{}" not in self.attribute_template:
            problems.append(f"attribute_template must contain '{{}}', got {self.attribute_template!r}")
        if " X" not in f" {self.identity_template}":
            problems.append(f"identity_template must contain X placeholders, got {self.identity_template!r}")
        if problems:
            raise ConfigError(f"model config {self.name!r}: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        """Plain YAML/JSON-friendly dict (tuples as lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}


def _type_ok(value: Any, hint: Any) -> Any:
    """`value` coerced to `hint` (lists -> tuples, int -> float), or raises TypeError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            try:
                return _type_ok(value, option)
            except TypeError:
                continue
        raise TypeError
    if hint is type(None):
        if value is None:
            return None
        raise TypeError
    if origin is tuple:
        args = typing.get_args(hint)
        if not isinstance(value, list | tuple):
            raise TypeError
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_type_ok(v, args[0]) for v in value)
        if len(value) != len(args):
            raise TypeError
        return tuple(_type_ok(v, a) for v, a in zip(value, args, strict=True))
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is int and isinstance(value, bool):
        raise TypeError
    if isinstance(value, origin or hint):
        return value
    raise TypeError


def _hint_name(hint: Any) -> str:
    return str(hint).replace("typing.", "") if not isinstance(hint, type) else hint.__name__


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> VPMConfig:
    """A validated VPMConfig from a mapping; unknown keys and wrong types raise ConfigError naming `source`."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of model settings, got {type(data).__name__}")
    hints = typing.get_type_hints(VPMConfig)
    known = [f.name for f in dataclasses.fields(VPMConfig)]
    values = {}
    for key, value in data.items():
        if key not in hints:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(known)}"
            raise ConfigError(f"{source}: unknown model config key {key!r}{hint}")
        try:
            values[key] = _type_ok(value, hints[key])
        except TypeError:
            raise ConfigError(
                f"{source}: {key}: expected {_hint_name(hints[key])}, got {type(value).__name__} ({value!r})"
            ) from None
    if "name" not in values:
        raise ConfigError(f"{source}: missing required key 'name'")
    return VPMConfig(**values)


def load_model_config(path: str | Path) -> VPMConfig:
    """Read one variant YAML file into a VPMConfig."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"model config not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    return config_from_dict(data, source=str(path))


def apply_overrides(config: VPMConfig, overrides: dict[str, Any]) -> VPMConfig:
    """`config` with some fields replaced, validated like the YAML file."""
    if not overrides:
        return config
    merged = {f.name: getattr(config, f.name) for f in dataclasses.fields(VPMConfig)}
    merged.update(overrides)
    return config_from_dict(merged, source=f"model {config.name!r} overrides")
