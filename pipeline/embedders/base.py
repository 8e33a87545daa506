"""The Embedder protocol every re-ID model implements, and its registry."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import cv2
import numpy as np

from pipeline.registry import Registry


@runtime_checkable
class Embedder(Protocol):
    """Maps a batch of BGR person crops (any sizes) to L2-normalised float32 features (N, dim)."""

    dim: int

    def embed(self, crops: list[np.ndarray]) -> np.ndarray: ...


EMBEDDERS: Registry[Embedder] = Registry("embedder")


def register_embedder(name: str) -> Callable:
    """Register an embedder factory under `name` (a decorator)."""
    return EMBEDDERS.register(name)


def list_embedders() -> list[str]:
    """Names of the registered embedders, the lazily imported ones included."""
    return EMBEDDERS.names()


def create_embedder(name: str, **kwargs) -> Embedder:
    """Build the embedder registered under `name` with its keyword arguments."""
    return EMBEDDERS.create(name, **kwargs)


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)


def crops_to_batch(
    crops: list[np.ndarray],
    input_size: tuple[int, int],
    mean: Sequence[float],
    std: Sequence[float],
    scale: float = 1 / 255,
    rgb: bool = True,
) -> np.ndarray:
    """BGR uint8 crops of any size -> the normalised model input (N, 3, H, W) float32.

    Each crop is resized to `input_size` (height, width), put in RGB order when `rgb`, then mapped to
    (pixel * scale - mean) / std as one multiply-add per pixel.
    """
    height, width = input_size
    gain = (scale / np.asarray(std, np.float32)).astype(np.float32)
    offset = (-np.asarray(mean, np.float32) / np.asarray(std, np.float32)).astype(np.float32)
    batch = np.empty((len(crops), height, width, 3), np.float32)  # (N, H, W, C)
    for i, crop in enumerate(crops):
        if crop.ndim != 3 or crop.shape[2] != 3 or crop.shape[0] == 0 or crop.shape[1] == 0:
            raise ValueError(f"crop {i} must be a non-empty (h, w, 3) image, but got shape {crop.shape}")
        resized = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
        batch[i] = resized[..., ::-1] if rgb else resized
    batch *= gain
    batch += offset
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2))  # (N, 3, H, W)
