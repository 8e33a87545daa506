"""The detector protocol and registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from pipeline.messages import Detections
from pipeline.registry import Registry

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


DETECTORS: Registry[Detector] = Registry("detector")


def register_detector(name: str) -> Callable:
    """Register a detector factory under `name` (a decorator)."""
    return DETECTORS.register(name)


def list_detectors() -> list[str]:
    """Names of the registered detectors."""
    return DETECTORS.names()


def create_detector(name: str, **kwargs) -> Detector:
    """Build the detector registered under `name` with its keyword arguments."""
    return DETECTORS.create(name, **kwargs)
