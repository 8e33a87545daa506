"""The detector stage: detects people in frames of any number of cameras, batched, and tracks them per camera."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable

from detectors.base import Detector
from pipeline.messages import CameraStarted, Frame, FramesEnded, StageStats, TrackEnded, Tracks
from pipeline.tracking import InCameraTracker


class DetectionStage:
    """Frames in, each camera's confirmed tracks out: one detector call per batch, a tracker per camera.

    `update(CameraStarted)` builds the camera's tracker for its frame rate (a camera restarted after a
    failure keeps the tracker it had, so its local track ids stay unique). `update_batch(frames)` detects
    in frames of any cameras at once (frames sharing a detector go in one call) and advances each
    camera's tracker in frame order: the output is, per frame, its `Tracks` then the `TrackEnded`s of
    that frame. `update(FramesEnded)` ends the camera's open tracks and returns them, then the camera's
    share of the stage's seconds (`StageStats("detector", {...})`), then the FramesEnded itself.

    `detector_for(camera_id)` gives the detector of a camera: the same instance for every camera where
    the model is shared, one per camera where detections are per camera (MOTChallenge files).
    """

    def __init__(
        self,
        *,
        detector_for: Callable[[str], Detector],
        tracker_for: Callable[[str, float], InCameraTracker],
    ) -> None:
        self.detector_for = detector_for
        self.tracker_for = tracker_for
        self._trackers: dict[str, InCameraTracker] = {}
        self._seconds: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._frames = 0
        self._batches = 0

    def update(self, message: CameraStarted | Frame | FramesEnded) -> list[Tracks | TrackEnded | StageStats]:
        if isinstance(message, CameraStarted):  # a camera that starts again keeps its tracker and its ids
            if message.camera_id not in self._trackers:
                self._trackers[message.camera_id] = self.tracker_for(message.camera_id, message.fps)
            return []
        if isinstance(message, Frame):
            return self.update_batch([message])
        if isinstance(message, FramesEnded):
            tracker = self._trackers.pop(message.camera_id, None)
            ended = [] if tracker is None else tracker.finish(message.frame_index, message.timestamp)
            seconds = self._seconds.pop(message.camera_id, {})
            share = StageStats("detector", {k: round(v, 3) for k, v in seconds.items()})
            return [*ended, share, message]
        raise TypeError(f"DetectionStage cannot take a {type(message).__name__} message")

    def update_batch(self, frames: list[Frame]) -> list[Tracks | TrackEnded]:
        """Each frame's Tracks then its TrackEnded messages, in the order the frames were given."""
        if not frames:
            return []
        groups: dict[int, tuple[Detector, list[int]]] = {}
        for i, frame in enumerate(frames):
            detector = self.detector_for(frame.camera_id)
            groups.setdefault(id(detector), (detector, []))[1].append(i)
        detections: list = [None] * len(frames)
        for detector, members in groups.values():
            start = time.perf_counter()
            found = detector.detect(
                [frames[i].image for i in members], frame_indices=[frames[i].index for i in members]
            )
            share = (time.perf_counter() - start) / len(members)
            for i, result in zip(members, found, strict=True):
                detections[i] = result
                self._seconds[frames[i].camera_id]["detect"] += share
        out: list[Tracks | TrackEnded] = []
        for frame, found in zip(frames, detections, strict=True):
            tracker = self._trackers.get(frame.camera_id)
            if tracker is None:
                raise ValueError(f"camera {frame.camera_id}: a frame before its CameraStarted")
            start = time.perf_counter()
            tracks, ended = tracker.update(found, frame)
            self._seconds[frame.camera_id]["track"] += time.perf_counter() - start
            out.append(tracks)
            out.extend(ended)
        self._frames += len(frames)
        self._batches += len(groups)
        return out

    def finish(self) -> list:
        return []

    def stats(self) -> dict[str, float]:
        """Frames detected, detector calls and the mean frames per call."""
        return {
            "frames": self._frames,
            "batches": self._batches,
            "mean_batch_size": self._frames / self._batches if self._batches else 0.0,
        }
