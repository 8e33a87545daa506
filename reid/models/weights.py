"""Weights in and out of VPM-Net: our checkpoints, open_clip weight files, and clear errors for the wrong file."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from pipeline.errors import WeightsError
from pipeline.sinks.atomic import atomic_open

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def looks_like_path(pretrained: str | os.PathLike) -> bool:
    """True when `pretrained` names a file rather than an open_clip tag such as 'openai'."""
    text = os.fspath(pretrained)
    return Path(text).exists() or os.sep in text or "/" in text or text.lower().endswith(_WEIGHT_SUFFIXES)


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The object stored in a weights file (a dict), or WeightsError naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}; pass a VPM-Net checkpoint or open_clip weights file, "
            "or an open_clip tag such as pretrained='openai'"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsError(
            f"cannot read weights file {path} ({exc.__class__.__name__}: {first[:200]})"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsError(
            f"weights file {path} holds a {type(obj).__name__}, not a state dict or checkpoint"
        )
    return obj


def is_vpm_checkpoint(obj: dict[str, Any]) -> bool:
    return isinstance(obj.get("model"), dict) and isinstance(obj.get("config"), dict)


def save_checkpoint(model: nn.Module, path: str | os.PathLike, **extra: Any) -> Path:
    """Write {"model": state_dict, "config": config dict, **extra} (e.g. epoch, metrics); returns the path."""
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError("model has no .config; build it with reid.models.create_model")
    path = Path(path)
    with atomic_open(path, "wb") as f:
        torch.save({"model": model.state_dict(), "config": config.to_dict(), **extra}, f)
    return path


def mismatch_summary(model: nn.Module, state_dict: dict[str, torch.Tensor]) -> str | None:
    """A short description of how `state_dict` fails to fit `model`, or None when it fits exactly."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state_dict]
    unexpected = [k for k in state_dict if k not in expected]
    wrong = [
        f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state_dict
        and hasattr(state_dict[k], "shape")
        and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or wrong):
        return None
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong-shape", wrong)):
        if items:
            parts.append(f"{len(items)} {label} (e.g. {items[0]})")
    return ", ".join(parts)


def load_open_clip_weights(clip: nn.Module, path: str | os.PathLike, arch: str) -> None:
    """Load an open_clip/OpenAI CLIP state-dict file into `clip` (native resolution) or raise WeightsError."""
    from open_clip.model import resize_pos_embed, resize_text_pos_embed

    obj = read_weights(path)
    state_dict = obj.get("state_dict", obj)
    state_dict = {k.removeprefix("module."): v for k, v in state_dict.items()}
    if "logit_scale" in state_dict and state_dict["logit_scale"].ndim != clip.logit_scale.ndim:
        state_dict["logit_scale"] = state_dict["logit_scale"].reshape(clip.logit_scale.shape)
    try:
        resize_pos_embed(state_dict, clip)
        resize_text_pos_embed(state_dict, clip)
    except Exception:  # a foreign file: let the key/shape summary below explain it
        pass
    problem = mismatch_summary(clip, state_dict)
    if problem:
        raise WeightsError(
            f"{path} is not an open_clip {arch} weights file or VPM-Net checkpoint for this model: {problem}"
        )
    clip.load_state_dict(state_dict)
    logger.info("loaded CLIP weights from %s", path)


def load_vpm_state(model: nn.Module, state_dict: dict[str, torch.Tensor], path: str | os.PathLike) -> None:
    """Load our own checkpoint's state dict strictly, or raise WeightsError naming the file."""
    problem = mismatch_summary(model, state_dict)
    if problem:
        raise WeightsError(f"checkpoint {path} does not fit model {model.config.name!r}: {problem}")
    model.load_state_dict(state_dict)
