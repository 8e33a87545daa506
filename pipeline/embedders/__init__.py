"""Re-ID embedders: the registry API, with each embedder's module imported only when it is created."""

from __future__ import annotations

from pipeline.embedders.base import (
    EMBEDDERS,
    Embedder,
    create_embedder,
    l2_normalize,
    list_embedders,
    register_embedder,
)

__all__ = ["Embedder", "create_embedder", "l2_normalize", "list_embedders", "register_embedder"]

# Each module registers its embedder when imported; it (and its heavy libraries) loads on first create.
EMBEDDERS.register_lazy("onnx", "pipeline.embedders.onnx")
EMBEDDERS.register_lazy("vpm", "pipeline.embedders.vpm")
