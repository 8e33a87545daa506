"""run.json: the resolved config (credentials redacted), versions, timings and per-camera counts."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path

from pipeline.config import RunConfig, to_dict
from pipeline.sinks.atomic import write_json

_PACKAGES = ("reid-pipeline", "numpy", "opencv-python", "torch", "ultralytics", "onnxruntime", "faiss-cpu")


def versions() -> dict[str, str]:
    """Versions of Python and of the packages that shape the results."""
    found = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return found


class RunInfo:
    """Writes run.json at start ("running") and again when the run ends."""

    def __init__(self, path: Path, config: RunConfig, device: str, invocation: dict | None = None) -> None:
        self.path = path
        self.started = time.time()
        self.base = {
            **(invocation or {}),
            "config": to_dict(config),
            "device": device,
            "versions": versions(),
        }

    def write(self, status: str, cameras: dict | None = None, stages: dict | None = None) -> None:
        now = time.time()
        write_json(
            self.path,
            {
                "schema_version": 1,
                "status": status,
                "started_at": self.started,
                "finished_at": None if status == "running" else now,
                "wall_seconds": round(now - self.started, 3),
                **self.base,
                "cameras": cameras or {},
                "stages": stages or {},
            },
        )
