"""The per-camera stage: samples the crops worth embedding from a camera's tracks and draws its video."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.crop_sampler import CropSampler
from pipeline.errors import PipelineError
from pipeline.messages import Assignment, Crop, Frame, TrackEnded, Tracks
from pipeline.sinks.video import AnnotatedVideoWriter

log = logging.getLogger(__name__)


@dataclass
class StageTimer:
    """Accumulates seconds spent per named step."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[name] += now - start
        return now


class CameraStage:
    """One camera's light work, as a state machine: no queues, no source, no detector.

    `update(Frame)` holds the frame until its `Tracks` arrive; `update(Tracks)` samples the crops worth
    embedding, draws the frame into the annotated video and returns the Tracks and the Crops;
    `update(TrackEnded)` forgets the track and returns the message; `update(Assignment)` sets the global
    id the video shows for a track. `finish()` closes the video.
    """

    def __init__(self, camera_id: str, *, sampler: CropSampler, video: AnnotatedVideoWriter | None) -> None:
        self.camera_id = camera_id
        self.sampler = sampler
        self.video = video
        self.labels: dict[int, int] = {}
        self.frames = 0
        self.timer = StageTimer()
        self._held: dict[int, Frame] = {}

    @property
    def held(self) -> int:
        """Frames waiting for their tracks."""
        return len(self._held)

    def update(self, message: Frame | Tracks | TrackEnded | Assignment) -> list[Tracks | Crop | TrackEnded]:
        if isinstance(message, Frame):
            self._check_camera(message.camera_id)
            self._held[message.index] = message
            return []
        if isinstance(message, Tracks):
            return self._on_tracks(message)
        if isinstance(message, TrackEnded):
            self.sampler.forget(message.track_id)
            self.labels.pop(message.track_id, None)
            return [message]
        if isinstance(message, Assignment):
            self.labels[message.track_id] = message.global_id
            return []
        raise TypeError(f"CameraStage cannot take a {type(message).__name__} message")

    def finish(self) -> list:
        """Close the video; raises PipelineError, naming the camera, when it cannot be finished."""
        self._held.clear()
        if self.video is not None:
            try:
                self.video.close()
            except PipelineError as e:
                raise PipelineError(f"camera {self.camera_id}: {e}") from None
        return []

    def _on_tracks(self, tracks: Tracks) -> list[Tracks | Crop]:
        self._check_camera(tracks.camera_id)
        frame = self._held.pop(tracks.frame_index, None)
        if frame is None:
            raise ValueError(f"camera {self.camera_id}: tracks of frame {tracks.frame_index}, never given")
        t = time.perf_counter()
        crops = self.sampler.update(frame, tracks)
        t = self.timer.add("sample", t)
        if self.video is not None:
            try:
                self.video.write(frame, tracks, self.labels)
            except PipelineError as e:
                raise PipelineError(f"camera {self.camera_id}: {e}") from None
            self.timer.add("video", t)
        self.frames += 1
        return [tracks, *crops]

    def _check_camera(self, camera_id: str) -> None:
        if camera_id != self.camera_id:
            raise ValueError(f"the stage of camera {self.camera_id} got a message of camera {camera_id}")


def video_path(out_dir: Path, camera_id: str, container: str = "avi") -> Path:
    return out_dir / "videos" / f"{camera_id}.{container}"
