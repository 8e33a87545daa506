"""run.json: the resolved config (credentials redacted), versions, timings and per-camera counts."""

from __future__ import annotations

import importlib.metadata
import platform
import time
from pathlib import Path

from pipeline.atomic import write_json
from pipeline.config import RunConfig, to_dict
from pipeline.sources.urls import redact_url

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


def redact_override(item: str) -> str:
    """A `--set key=value` with any credentials in its value hidden (`cameras.a.source=rtsp://***@h/x`)."""
    key, sep, value = item.partition("=")
    return f"{key}{sep}{redact_url(value)}" if sep else redact_url(item)


class RunInfo:
    """Writes run.json at start ("running") and again when the run ends.

    Credentials never reach the file: camera URLs in the config and the values of `--set` overrides are
    redacted. `--resume` reads the overrides back, so a password typed into an override is lost to it;
    keep passwords in `${ENV}` variables: an override such as `source=rtsp://admin:${CAM_PW}@cam/x` is
    stored unexpanded, and the config file itself is read again.
    """

    def __init__(self, path: Path, config: RunConfig, device: str, invocation: dict | None = None) -> None:
        self.path = path
        self.started = time.time()
        invocation = dict(invocation or {})
        if "overrides" in invocation:
            invocation["overrides"] = [redact_override(str(o)) for o in invocation["overrides"]]
        self.base = {
            **invocation,
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
