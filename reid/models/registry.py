"""Model registry: `create_model(name, pretrained=...)` builds a registered VPM-Net variant (timm style)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.errors import WeightsError
from pipeline.registry import Registry
from reid.models.backbone import ImageEncoder, TextEncoder, build_clip
from reid.models.config import VPMConfig, apply_overrides, config_from_dict, load_model_config
from reid.models.vpm import VPMNet
from reid.models.weights import (
    is_vpm_checkpoint,
    load_open_clip_weights,
    load_vpm_state,
    looks_like_path,
    read_weights,
)

logger = logging.getLogger(__name__)

# Variant YAMLs ship inside the package, so a plain (non-editable) install finds them.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"

MODELS: Registry[VPMNet] = Registry("model")


def register_model(fn: Callable[..., VPMNet]) -> Callable[..., VPMNet]:
    """Register a model entrypoint `fn(pretrained=None, **overrides) -> VPMNet` under its function name."""
    return MODELS.register(fn.__name__, fn)


def list_models() -> list[str]:
    """Names of the registered models."""
    return MODELS.names()


def create_model(name: str, pretrained: str | os.PathLike | None = None, **overrides: Any) -> VPMNet:
    """Build a registered model; `pretrained` is an open_clip tag, a checkpoint path, or None (random init)."""
    return MODELS.create(name, pretrained=pretrained, **overrides)


def check_model_name(name: str) -> None:
    """UnknownNameError (a KeyError) listing the close matches when no model is registered under `name`."""
    MODELS.get(name)


def build_vpm(config: VPMConfig, pretrained: str | os.PathLike | None = None, **overrides: Any) -> VPMNet:
    """Build VPM-Net from a config; load CLIP weights (tag or file) or a VPM-Net checkpoint when given."""
    checkpoint = None
    clip_file = None
    tag = None
    if pretrained is not None:
        if looks_like_path(pretrained):
            obj = read_weights(pretrained)
            if is_vpm_checkpoint(obj):
                checkpoint = obj
            else:
                clip_file = pretrained
        else:
            tag = str(pretrained)
    if checkpoint is not None:
        saved = config_from_dict(checkpoint["config"], source=f"checkpoint {pretrained}")
        if saved.name != config.name:
            raise WeightsError(
                f"checkpoint {pretrained} holds a {saved.name!r} model, not {config.name!r}; "
                f"create it with model {saved.name!r}"
            )
        # the saved architecture wins; explicit overrides (e.g. mode) still apply on top
        config = saved
    config = apply_overrides(config, overrides)
    if tag and config.clip_model is None:
        raise WeightsError(
            f"model {config.name!r} is a custom architecture with no published CLIP weights; pretrained must be "
            f"a VPM-Net checkpoint or an open_clip weights file of that architecture, got {tag!r}"
        )
    try:
        clip = build_clip(
            clip_model=config.clip_model,
            clip_cfg=config.clip_cfg,
            quick_gelu=config.quick_gelu,
            pretrained_tag=tag,
        )
    except RuntimeError as exc:  # open_clip: unknown tag or failed download
        raise WeightsError(
            f"cannot load CLIP weights {tag!r} for {config.clip_model}: {str(exc).splitlines()[0]}; "
            "pass a local open_clip weights file or VPM-Net checkpoint instead"
        ) from None
    if clip_file is not None:
        load_open_clip_weights(clip, clip_file, config.clip_model or config.name)
    model = VPMNet(
        image_encoder=ImageEncoder(
            visual=clip.visual, input_size=config.input_size, patch_stride=config.patch_stride
        ),
        text_encoder=TextEncoder(clip=clip),
        num_classes=config.num_classes,
        vpt=config.vpt,
        num_prompts=config.num_prompts,
        prompt_dropout=config.prompt_dropout,
        kan=config.kan,
        kan_heads=config.kan_heads,
        kan_dim=config.kan_dim,
        attributes=config.attributes,
        attribute_template=config.attribute_template,
        identity_template=config.identity_template,
        mode=config.mode,
        mean=config.mean,
        std=config.std,
    )
    model.config = config
    if checkpoint is not None:
        load_vpm_state(model, checkpoint["model"], pretrained)
        logger.info("loaded VPM-Net checkpoint %s", pretrained)
    return model


def _from_yaml(filename: str) -> Callable[..., VPMNet]:
    def entry(pretrained: str | os.PathLike | None = None, **overrides: Any) -> VPMNet:
        return build_vpm(load_model_config(CONFIG_DIR / filename), pretrained, **overrides)

    return entry


@register_model
def vpm_vit_b16(pretrained: str | os.PathLike | None = None, **overrides: Any) -> VPMNet:
    """VPM-Net on CLIP ViT-B/16 (pretrained='openai' for the paper's setting), 256x128."""
    return _from_yaml("vpm_vit_b16.yaml")(pretrained, **overrides)


@register_model
def vpm_vit_b32(pretrained: str | os.PathLike | None = None, **overrides: Any) -> VPMNet:
    """VPM-Net on CLIP ViT-B/32: about 4x fewer tokens than B/16, for faster runs."""
    return _from_yaml("vpm_vit_b32.yaml")(pretrained, **overrides)


@register_model
def vpm_tiny(pretrained: str | os.PathLike | None = None, **overrides: Any) -> VPMNet:
    """A tiny random-init VPM-Net (width 64, 2 layers) that trains on a CPU in seconds; for tests."""
    return _from_yaml("vpm_tiny.yaml")(pretrained, **overrides)
