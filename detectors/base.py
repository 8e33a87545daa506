"""The detector protocol and registry."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.messages import Detections

PERSON_CLASS_ID = 0


@runtime_checkable
class Detector(Protocol):
    """Finds people in a batch of BGR frames; returns one Detections per frame.

    `frame_indices`, when given, are the 1-based source frame indices of `frames` (same length); detectors
    that read precomputed detections (`mot`) need them, image detectors ignore them.
    """

    def detect(
        self, frames: list[np.ndarray], frame_indices: list[int] | None = None
    ) -> list[Detections]: ...


_REGISTRY: dict[str, Callable[..., Detector]] = {}


def register_detector(name: str) -> Callable:
    """Register a detector factory under `name`."""

    def wrap(factory: Callable[..., Detector]) -> Callable[..., Detector]:
        _REGISTRY[name] = factory
        return factory

    return wrap


def list_detectors() -> list[str]:
    return sorted(_REGISTRY)


def create_detector(name: str, **kwargs) -> Detector:
    """Build the detector registered under `name` with its keyword arguments."""
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, list(_REGISTRY), n=3)
        hint = (
            f"; did you mean {', '.join(close)}?" if close else f"; choose from {', '.join(list_detectors())}"
        )
        raise KeyError(f"unknown detector {name!r}{hint}")
    return _REGISTRY[name](**kwargs)
