"""The detector stage and the camera stage as state machines: messages in, messages out, no transport."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from pipeline.crop_sampler import CropSampler
from pipeline.detection_stage import DetectionStage
from pipeline.messages import (
    Assignment,
    CameraStarted,
    Crop,
    Detections,
    Frame,
    FramesEnded,
    StageStats,
    TrackEnded,
    Tracks,
)
from pipeline.tracking import InCameraTracker
from pipeline.worker import CameraStage

IMAGE = np.zeros((240, 320, 3), np.uint8)


def frame(camera: str, index: int) -> Frame:
    return Frame(camera, index, (index - 1) / 10.0, IMAGE)


class FakeDetector:
    """One person per frame, walking right; records the frames of each call."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def detect(self, frames, frame_indices=None):
        self.calls.append(list(frame_indices))
        return [Detections.from_arrays([[40 + 4 * i, 60, 80 + 4 * i, 200]], [0.9]) for i in frame_indices]


def stage(detector: FakeDetector) -> DetectionStage:
    return DetectionStage(
        detector_for=lambda camera_id: detector,
        tracker_for=lambda camera_id, fps: InCameraTracker(camera_id, frame_rate=fps),
    )


def test_frames_of_all_cameras_go_in_one_call_and_each_camera_is_tracked_on_its_own():
    detector = FakeDetector()
    detection = stage(detector)
    for camera in ("a", "b"):
        assert detection.update(CameraStarted(camera, 10.0)) == []
    out = []
    for index in range(1, 4):
        out += detection.update_batch([frame("a", index), frame("b", index)])
    assert detector.calls == [[1, 1], [2, 2], [3, 3]]
    tracks = [m for m in out if isinstance(m, Tracks)]
    assert [(t.camera_id, t.frame_index) for t in tracks] == [(c, i) for i in (1, 2, 3) for c in "ab"]
    assert all(t.track_id.tolist() == [1] for t in tracks)  # local ids are per camera
    assert detection.stats() == {"frames": 6, "batches": 3, "mean_batch_size": 2.0}

    ended = detection.update(FramesEnded("a", 3, 0.2))
    assert [type(m) for m in ended] == [TrackEnded, StageStats, FramesEnded]
    assert ended[0].track_id == 1 and set(ended[1].stats) == {"detect", "track"}
    with pytest.raises(ValueError, match="CameraStarted"):
        detection.update(frame("a", 4))  # camera a ended: its tracker is gone


def test_a_camera_that_starts_again_keeps_its_tracker_and_ids():
    detection = stage(FakeDetector())
    detection.update(CameraStarted("a", 10.0))
    first = detection.update(frame("a", 1))
    detection.update(CameraStarted("a", 10.0))  # a restarted camera worker
    again = detection.update(frame("a", 2))
    assert first[0].track_id.tolist() == again[0].track_id.tolist() == [1]


def test_the_camera_stage_holds_a_frame_until_its_tracks_and_samples_crops():
    camera = CameraStage("a", sampler=CropSampler(min_height=32, every_k=1), video=None)
    assert camera.update(frame("a", 1)) == [] and camera.held == 1
    tracks = Tracks(
        "a",
        1,
        0.0,
        np.array([[40, 40, 100, 200]], np.float32),
        np.array([0.9], np.float32),
        np.array([7], np.int64),
    )
    out = camera.update(tracks)
    assert out[0] is tracks and [type(m) for m in out[1:]] == [Crop]
    assert camera.held == 0 and camera.frames == 1
    assert camera.update(Assignment("a", 7, 3, 0.9)) == [] and camera.labels == {7: 3}
    ended = TrackEnded("a", 7, 1, 0.0)
    assert camera.update(ended) == [ended] and camera.labels == {}
    with pytest.raises(ValueError, match="never given"):
        camera.update(
            Tracks("a", 5, 0.4, np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))
        )
    with pytest.raises(TypeError):
        camera.update(CameraStarted("a", 10.0))
    assert camera.finish() == []


def test_a_camera_worker_loads_no_model_library():
    """With the shared detector, what a camera worker process imports holds neither torch nor ultralytics."""
    modules = (
        "pipeline.cli pipeline.runtime.local_camera pipeline.worker pipeline.crop_sampler pipeline.thumbnails "
        "pipeline.sinks.video pipeline.sources.file pipeline.sources.live pipeline.build pipeline.config"
    )
    code = (
        f"import importlib, sys\nfor m in {modules.split()!r}: importlib.import_module(m)\n"
        "print(sorted(m for m in ('torch', 'ultralytics', 'onnxruntime') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
