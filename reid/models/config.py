"""VPM-Net variant configuration: a typed, frozen dataclass loaded from one YAML file per variant."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.errors import ConfigError
from pipeline.typed_config import build, read_yaml

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


def config_from_dict(data: dict[str, Any], source: str = "<dict>") -> VPMConfig:
    """A validated VPMConfig from a mapping; unknown keys and wrong types raise ConfigError naming `source`."""
    try:
        return build(VPMConfig, data)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None


def load_model_config(path: str | Path) -> VPMConfig:
    """Read one variant YAML file into a VPMConfig."""
    return config_from_dict(read_yaml(path), source=str(path))


def apply_overrides(config: VPMConfig, overrides: dict[str, Any]) -> VPMConfig:
    """`config` with some fields replaced, validated like the YAML file."""
    if not overrides:
        return config
    merged = {f.name: getattr(config, f.name) for f in dataclasses.fields(VPMConfig)}
    merged.update(overrides)
    return config_from_dict(merged, source=f"model {config.name!r} overrides")
