"""The atomic writes under their old import path; they live in `pipeline.atomic`."""

from pipeline.atomic import atomic_open, partial_path, write_json

__all__ = ["atomic_open", "partial_path", "write_json"]
