"""What the stages of a run reported, and the run's status from it; the same for every engine."""

from __future__ import annotations

import logging

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
