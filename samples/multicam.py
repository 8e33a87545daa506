"""make-multicam under its old import path, for callers not yet moved to `pipeline.tools`."""

from pipeline.tools.multicam import make_multicam, source_length
from pipeline.tools.virtual_cameras import CameraSpec, crop_ground_truth, preset_cameras, resolve_camera

__all__ = [
    "CameraSpec",
    "crop_ground_truth",
    "make_multicam",
    "preset_cameras",
    "resolve_camera",
    "source_length",
]
