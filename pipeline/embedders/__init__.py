"""Re-ID embedders: the registry API, with each embedder's module imported only when it is created."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable

from pipeline.embedders.base import (
    _REGISTRY,
    Embedder,
    create_embedder,
    l2_normalize,
    list_embedders,
    register_embedder,
)

__all__ = ["Embedder", "create_embedder", "l2_normalize", "list_embedders", "register_embedder"]

# name -> module that registers it; the module (and its heavy libraries) loads on first create_embedder(name).
_LAZY_MODULES = {
    "onnx": "pipeline.embedders.onnx",
    "vpm": "pipeline.embedders.vpm",
}


def _lazy_factory(name: str, module: str) -> Callable[..., Embedder]:
    """A placeholder factory that imports `module`, which registers the real factory under `name`."""

    def factory(**kwargs) -> Embedder:
        importlib.import_module(module)
        real = _REGISTRY.get(name)
        if real is None or real is factory:
            raise KeyError(f"module {module} does not register an embedder named {name!r}")
        return real(**kwargs)

    return factory


def _register_lazy() -> None:
    for name, module in _LAZY_MODULES.items():
        if name not in _REGISTRY and importlib.util.find_spec(module) is not None:
            _REGISTRY[name] = _lazy_factory(name, module)


_register_lazy()
