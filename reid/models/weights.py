"""Weights in and out of VPM-Net: our checkpoints, open_clip weight files, and clear errors for the wrong file."""

from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import pickle
import re
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import nn

from pipeline.atomic import atomic_open
from pipeline.errors import WeightsError

logger = logging.getLogger(__name__)

_WEIGHT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def looks_like_path(pretrained: str | os.PathLike) -> bool:
    """True when `pretrained` names a file rather than an open_clip tag such as 'openai'."""
    text = os.fspath(pretrained)
    return Path(text).exists() or os.sep in text or "/" in text or text.lower().endswith(_WEIGHT_SUFFIXES)


def load_torch_file(path: Path, what: str = "weights file", map_location: Any = "cpu") -> Any:
    """`torch.load(path, weights_only=True)`: tensors and plain data only, so no code in the file can run.

    A file that pickles anything else (a class, a function) or cannot be read is a WeightsError naming it.
    """
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        text = str(exc)
        found = re.search(r"GLOBAL (\S+)", text)
        if found:  # the file names a class or function: unpickling it could run code
            raise WeightsError(
                f"{what} {path} holds Python objects other than tensors and plain data (it names "
                f"{found.group(1)}); refusing to load it, since unpickling them could run code from the file"
            ) from None
        reason = text.partition("WeightsUnpickler error:")[2].strip() or text.strip()
        reason = reason.splitlines()[0] if reason else ""
        raise WeightsError(f"cannot read {what} {path} (not a torch file: {reason[:200]})") from None
    except Exception as exc:  # torch raises many types for foreign or damaged files
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise WeightsError(f"cannot read {what} {path} ({exc.__class__.__name__}: {first[:200]})") from None


def save_torch_file(obj: Any, path: str | os.PathLike) -> Path:
    """torch.save `obj` as plain data under a temporary name, then rename: it loads with weights_only=True."""
    path = Path(path)
    plain = plain_data(obj)
    with atomic_open(path, "wb") as f:
        torch.save(plain, f)
    return path


def plain_data(value: Any, where: str = "checkpoint") -> Any:
    """`value` with dataclasses, paths, numpy values and dates turned into tensors and plain types.

    What comes back holds only tensors, dicts, lists, tuples, str, int, float, bool and None: the types
    `torch.load(weights_only=True)` reads. Anything else is a TypeError naming where it was found.
    """
    if value is None or isinstance(value, bool | int | float | str | torch.Tensor):
        return value
    if isinstance(value, dict):
        return {plain_data(k, where): plain_data(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, list):
        return [plain_data(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, tuple):
        return tuple(plain_data(v, f"{where}[{i}]") for i, v in enumerate(value))
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return plain_data(dataclasses.asdict(value), where)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    if isinstance(value, torch.Size):
        return list(value)
    raise TypeError(f"{where}: cannot store a {type(value).__name__} in a checkpoint; use plain data")


def read_weights(path: str | os.PathLike) -> dict[str, Any]:
    """The object stored in a weights file (a dict), or WeightsError naming the file."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise WeightsError(
            f"weights file not found: {path}; pass a VPM-Net checkpoint or open_clip weights file, "
            "or an open_clip tag such as pretrained='openai'"
        )
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        except Exception as exc:  # safetensors raises its own types for foreign or damaged files
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise WeightsError(
                f"cannot read weights file {path} ({exc.__class__.__name__}: {first[:200]})"
            ) from None
    else:
        obj = load_torch_file(path)
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
    return save_torch_file({"model": model.state_dict(), "config": config.to_dict(), **extra}, path)


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
