"""Person detectors behind one protocol; `create_detector(name, **kwargs)` builds one by name.

The built-in detectors register lazily: importing this package does not import ultralytics.
"""

from __future__ import annotations

from detectors.base import PERSON_CLASS_ID, Detector, create_detector, list_detectors, register_detector

__all__ = ["PERSON_CLASS_ID", "Detector", "create_detector", "list_detectors", "register_detector"]


@register_detector("yolo")
def _yolo(**kwargs) -> Detector:
    """Ultralytics YOLO from a local .pt/.onnx/.engine file: `weights=...`, see YoloDetector."""
    from detectors.yolo import YoloDetector

    return YoloDetector(**kwargs)


@register_detector("hog")
def _hog(**kwargs) -> Detector:
    """OpenCV's HOG people detector, no weights: see HogDetector."""
    from detectors.hog import HogDetector

    return HogDetector(**kwargs)


@register_detector("mot")
def _mot(**kwargs) -> Detector:
    """Precomputed MOTChallenge detections: `path=...det.txt`, see MotFileDetector."""
    from detectors.mot import MotFileDetector

    return MotFileDetector(**kwargs)
