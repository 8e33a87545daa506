"""What the stages of a run reported, the run's status from it and what it produced; the same for every
engine. After a hard stop, `salvage` keeps what was written."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import build
from pipeline.config import RunConfig
from pipeline.messages import CameraFinished, StageFailed, StageStats

log = logging.getLogger(__name__)


def failed_cameras(cameras: dict[str, dict]) -> list[str]:
    """The cameras whose reason for ending is an error."""
    return [c for c, s in cameras.items() if str(s.get("reason", "")).startswith("error")]


class StageResults:
    """Per-camera outcomes and each stage's stats or its error, from the messages the stages sent."""

    def __init__(self) -> None:
        self.cameras: dict[str, dict] = {}
        self.stages: dict[str, dict] = {}

    @property
    def failed_cameras(self) -> list[str]:
        return failed_cameras(self.cameras)

    def add(self, message: CameraFinished | StageStats | StageFailed) -> None:
        if isinstance(message, CameraFinished):
            self.cameras[message.camera_id] = {"reason": message.reason, **message.stats}
            if message.reason.startswith("error"):
                log.error("%s", message.reason.removeprefix("error: "))  # the reason names the camera
        elif isinstance(message, StageStats):
            self.stages.setdefault(message.stage, message.stats)
        elif isinstance(message, StageFailed):
            self.fail(message.message)  # the first error is the cause; later ones follow from it
        else:
            raise TypeError(f"not a result message: {type(message).__name__}")

    def fail(self, message: str) -> None:
        self.stages.setdefault("error", {"message": message})

    def camera_failed(self, camera_id: str, why: str) -> None:
        reason = f"error: camera {camera_id}: {why}"
        self.cameras[camera_id] = {"reason": reason}
        log.error("%s", reason.removeprefix("error: "))

    def status(self, hard_stop: bool, stopped: bool, n_cameras: int) -> str:
        """How the run ended: a failed stage or every camera failed is a failure."""
        if "error" in self.stages:
            return "failed"
        if hard_stop:
            return "killed"
        if len(self.failed_cameras) == n_cameras:
            return "failed"
        return "stopped" if stopped else "complete"


@dataclass
class RunResult:
    """What a run produced: the output folder, per-camera stats and how it ended."""

    out_dir: Path
    status: str
    cameras: dict[str, dict] = field(default_factory=dict)
    stages: dict[str, dict] = field(default_factory=dict)

    @property
    def error(self) -> str | None:
        """Why a stage (not a camera) stopped the run, if one did."""
        return self.stages.get("error", {}).get("message")

    @property
    def failed_cameras(self) -> list[str]:
        return failed_cameras(self.cameras)


def cameras_meta(config: RunConfig, fps: dict[str, float], frames: dict[str, int]) -> list[dict]:
    """The `cameras` entries of tracks.json."""
    from pipeline.sources.urls import redact_url

    return [
        {
            "id": c.id,
            "source": redact_url(str(c.source)),
            "fps": fps.get(c.id, 0.0),
            "frames": frames.get(c.id, 0),
        }
        for c in config.cameras
    ]


def salvage(config: RunConfig, out_dir: Path, fps: dict[str, float], frames: dict[str, int]) -> None:
    """After a hard stop: keep the videos written so far and export what the store had committed."""
    import cv2

    from pipeline.sinks.exports import write_exports
    from pipeline.store import EmbeddingStore

    for partial in (out_dir / "videos").glob("*.partial.*"):
        capture = cv2.VideoCapture(str(partial))  # an mp4, or any file cut very short, may not be readable
        readable = capture.read()[0]
        capture.release()
        if readable:
            partial.replace(partial.with_name(partial.name.replace(".partial", "")))
    path = build.store_path(config, out_dir)
    dim = EmbeddingStore.stored_dim(path)
    if dim is None:
        return
    store = build.build_store(config, out_dir, dim)
    try:
        session = store.latest_session()
        if session is not None:
            write_exports(store, session, cameras_meta(config, fps, frames), out_dir)
    finally:
        store.close()
