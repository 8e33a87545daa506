"""The per-camera stage: source -> detector -> in-camera tracker -> crop sampler, plus the annotated video."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from detectors.base import Detector
from pipeline.crop_sampler import CropSampler
from pipeline.errors import PipelineError
from pipeline.messages import Assignment, CameraFinished, Frame, SourceState
from pipeline.sinks.video import AnnotatedVideoWriter
from pipeline.sources.base import Source
from pipeline.tracking import InCameraTracker

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.5


@dataclass(frozen=True)
class CameraStatus:
    """A worker's progress report for the display: counts so far and the source's state."""

    camera_id: str
    frames: int
    fps: float
    state: str
    dropped: int
    failed: int


@dataclass
class StageTimer:
    """Accumulates seconds spent per named step."""

    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, name: str, start: float) -> float:
        now = time.perf_counter()
        self.seconds[name] += now - start
        return now


class CameraWorker:
    """Runs one camera: reads frames, detects, tracks, samples crops and writes the annotated video.

    Messages go to `outbox` in the order the matcher needs them: a frame's `Tracks`, then its `Crop`s,
    then the `TrackEnded`s of that frame; a `CameraFinished` closes the stream. Global ids for the video
    labels arrive on `inbox` as `Assignment`s.
    """

    def __init__(
        self,
        *,
        source: Source,
        detector: Detector,
        tracker: InCameraTracker,
        sampler: CropSampler,
        video: AnnotatedVideoWriter | None,
        batch: int = 1,
        max_frames: int | None = None,
    ) -> None:
        self.source = source
        self.detector = detector
        self.tracker = tracker
        self.sampler = sampler
        self.video = video
        self.batch = max(1, batch)
        self.max_frames = max_frames
        self.camera_id = source.camera_id
        self.labels: dict[int, int] = {}
        self.frames = 0
        self.timer = StageTimer()

    def run(
        self,
        outbox,
        inbox=None,
        should_stop: Callable[[], bool] = lambda: False,
        report: Callable[[CameraStatus], None] | None = None,
    ) -> CameraFinished:
        """Process the opened source to its end (or until `should_stop`); send and return CameraFinished."""
        reason = "end"
        last_index, last_time = 1, 0.0  # where the camera stopped, for the tracks still open
        done = threading.Event()
        monitor = threading.Thread(target=self._monitor, args=(outbox, report, done), daemon=True)
        monitor.start()
        try:
            for frames in self._batches(should_stop):
                self._process(frames, outbox, inbox)
                last_index, last_time = frames[-1].index, frames[-1].timestamp
            if should_stop():
                reason = "stopped"
            elif getattr(self.source, "error", None) is not None:  # a live source that gave up
                reason = f"error: {self.source.error}"
        except PipelineError as e:  # reported once, by whoever reads the CameraFinished reason
            log.debug("camera %s stopped: %s", self.camera_id, e)
            reason = f"error: {e}"
        finally:
            self.source.close()
            done.set()
            monitor.join()
        for ended in self.tracker.finish(last_index, last_time):
            outbox.put(ended)
        if self.video is not None:
            try:
                self.video.close()
            except PipelineError as e:
                if not reason.startswith("error"):
                    reason = f"error: camera {self.camera_id}: {e}"
        finished = CameraFinished(self.camera_id, self.frames, reason, self.stats())
        outbox.put(finished)
        if report is not None:
            report(self._status(0.0, state="ended" if reason in ("end", "stopped") else "failed"))
        return finished

    def _monitor(self, outbox, report: Callable[[CameraStatus], None] | None, done: threading.Event) -> None:
        """Report progress and forward source state changes, also while the source blocks reconnecting."""
        started = time.perf_counter()
        while True:
            finished = done.wait(MONITOR_INTERVAL_S)
            for change in getattr(self.source, "state_changes", list)():
                outbox.put(SourceState(self.camera_id, change.state, change.timestamp, change.detail))
            if report is not None:
                report(self._status(self.frames / max(time.perf_counter() - started, 1e-6)))
            if finished:
                return

    def _batches(self, should_stop: Callable[[], bool]) -> Iterator[list[Frame]]:
        batch: list[Frame] = []
        for frame in self.source.frames():
            batch.append(frame)
            if len(batch) == self.batch:
                yield batch
                batch = []
            if should_stop() or (self.max_frames and self.frames + len(batch) >= self.max_frames):
                break
        if batch:
            yield batch

    def _process(self, frames: list[Frame], outbox, inbox) -> None:
        t = time.perf_counter()
        detections = self.detector.detect([f.image for f in frames], frame_indices=[f.index for f in frames])
        t = self.timer.add("detect", t)
        for frame, found in zip(frames, detections):
            tracks, ended = self.tracker.update(found, frame)
            t = self.timer.add("track", t)
            crops = self.sampler.update(frame, tracks)
            t = self.timer.add("sample", t)
            outbox.put(tracks)
            for crop in crops:
                outbox.put(crop)
            for track in ended:
                outbox.put(track)
                self.sampler.forget(track.track_id)
                self.labels.pop(track.track_id, None)
            t = self.timer.add("send", t)
            self._read_assignments(inbox)
            if self.video is not None:
                try:
                    self.video.write(frame, tracks, self.labels)
                except PipelineError as e:
                    raise PipelineError(f"camera {self.camera_id}: {e}") from None
                t = self.timer.add("video", t)
            self.frames += 1

    def _read_assignments(self, inbox) -> None:
        while inbox is not None:
            try:
                message = inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(message, Assignment):
                self.labels[message.track_id] = message.global_id

    def _status(self, fps: float, state: str | None = None) -> CameraStatus:
        return CameraStatus(
            self.camera_id,
            self.frames,
            fps,
            state or self.source.state,
            self.source.frames_dropped,
            self.source.frames_failed,
        )

    def stats(self) -> dict:
        """Frames processed, skipped, dropped and failed, and seconds per step."""
        return {
            "frames_processed": self.frames,
            "frames_skipped": getattr(self.source, "frames_skipped", 0),
            "frames_dropped": self.source.frames_dropped,
            "frames_failed": self.source.frames_failed,
            "reconnects": getattr(self.source, "reconnects", 0),
            "fps": self.source.fps,
            "seconds": {k: round(v, 3) for k, v in self.timer.seconds.items()},
        }


def video_path(out_dir: Path, camera_id: str, container: str = "avi") -> Path:
    return out_dir / "videos" / f"{camera_id}.{container}"
