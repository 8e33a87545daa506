"""The Embedder protocol every re-ID model implements, and its registry."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Embedder(Protocol):
    """Maps a batch of BGR person crops (any sizes) to L2-normalised float32 features (N, dim)."""

    dim: int

    def embed(self, crops: list[np.ndarray]) -> np.ndarray: ...


_REGISTRY: dict[str, Callable[..., Embedder]] = {}


def register_embedder(name: str) -> Callable:
    """Register an embedder factory under `name`."""

    def wrap(factory: Callable[..., Embedder]) -> Callable[..., Embedder]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_embedders() -> list[str]:
    return sorted(_REGISTRY)


def create_embedder(name: str, **kwargs) -> Embedder:
    """Build the embedder registered under `name` with its keyword arguments."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else f"; choose from {', '.join(list_embedders())}"
        )
        raise KeyError(f"unknown embedder {name!r}{hint}")
    return _REGISTRY[name](**kwargs)


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)
