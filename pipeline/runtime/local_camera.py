"""The camera worker process of the local runtime: the source loop around a camera's CameraStage."""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import defaultdict
from pathlib import Path

from pipeline import build
from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.messages import (
    CameraFinished,
    CameraStarted,
    CameraStatus,
    Crop,
    Frame,
    FramesEnded,
    SourceState,
    StageFailed,
    StageStats,
    Tracks,
)
from pipeline.runtime.local_stages import ChildSignals, child_setup

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.5


def camera_main(config: RunConfig, camera_id: str, out_dir: Path, device: str, max_frames, channels, parent):
    child_setup(parent)
    CameraLoop(config, camera_id, out_dir, device, max_frames, channels).run()


class CameraLoop:
    """Runs one camera: reads its source, has its frames detected and tracked, feeds its CameraStage.

    Detection runs in the shared detector process (frames out, Tracks back on the camera's inbox, at most
    `window` frames in flight) or, without one, in this process through a DetectionStage of its own.
    Crops go to the re-ID stage; Tracks, TrackEnded, SourceState and CameraFinished to the matcher.
    """

    def __init__(self, config: RunConfig, camera_id: str, out_dir: Path, device: str, max_frames, channels):
        self.config = config
        self.camera = config.camera(camera_id)
        self.camera_id = camera_id
        self.out_dir = out_dir
        self.device = device
        self.channels = channels
        self.inbox = channels.cameras[camera_id]
        self.limit = build.min_limit(self.camera.max_frames, max_frames)
        self.source = build.build_source(self.camera, max_frames)
        self.window = max(2, config.detector.max_batch)
        self.detection = None  # this worker's own DetectionStage, without a shared detector
        self.batch: list[Frame] = []
        self.sent = 0
        self.error: str | None = None
        self.ended = False
        self.seconds: dict[str, float] = defaultdict(float)

    def should_stop(self) -> bool:
        return ChildSignals.received or self.channels.stop.is_set()

    def run(self) -> None:
        from pipeline.sinks.video import AnnotatedVideoWriter
        from pipeline.worker import CameraStage, video_path

        config = self.config
        try:
            self.source.open()
            fps = self.source.fps or 25.0
            self.stage = CameraStage(
                self.camera_id,
                sampler=build.build_sampler(config, self.out_dir / "thumbnails" / self.camera_id),
                video=(
                    AnnotatedVideoWriter(
                        video_path(self.out_dir, self.camera_id, config.output.container),
                        fps,
                        config.output.codec,
                        config.output.trail,
                    )
                    if config.output.video
                    else None
                ),
            )
            started = CameraStarted(self.camera_id, fps)
            if self.channels.frames is None:
                self.detection = build.build_detection_stage(config, self.device)
                self.detection.detector_for(self.camera_id)  # load the model now: a bad one fails here
                self.detection.update(started)
            else:
                self.channels.frames.put(started)
        except PipelineError as e:  # reported once, by the runner, from the CameraFinished reason
            self.source.close()
            self.channels.matcher.put(CameraFinished(self.camera_id, 0, f"error: {e}"))
            return
        self._run_source()

    def _run_source(self) -> None:
        reason = "end"
        last_index, last_time = 1, 0.0  # where the camera stopped, for the tracks still open
        done = threading.Event()
        monitor = threading.Thread(target=self._monitor, args=(done,), daemon=True)
        monitor.start()
        try:
            for frame in self.source.frames():
                self._send(frame)
                last_index, last_time = frame.index, frame.timestamp
                if self.error or self.should_stop() or (self.limit and self.sent >= self.limit):
                    break
            self._detect_held()
            if self.error:
                reason = f"error: {self.error}"
            elif self.should_stop():
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
        self._end_frames(FramesEnded(self.camera_id, last_index, last_time))
        try:
            self.stage.finish()
        except PipelineError as e:
            self.error = self.error or str(e)
        if self.error and not reason.startswith("error"):
            reason = f"error: {self.error}"
        finished = CameraFinished(self.camera_id, self.stage.frames, reason, self.stats())
        self.channels.matcher.put(finished)
        state = "ended" if reason in ("end", "stopped") else "failed"
        self._report(self._status(0.0, state=state))

    def _send(self, frame: Frame) -> None:
        """Hand a frame to detection; handle what came back meanwhile."""
        self.stage.update(frame)
        self.sent += 1
        if self.detection is not None:
            self.batch.append(frame)
            if len(self.batch) >= self.config.detector.max_batch:
                self._detect_held()
            return
        self.channels.frames.put(frame)
        self._read_inbox(block=False)
        while self.stage.held >= self.window and not self.error:
            self._read_inbox(block=True)

    def _detect_held(self) -> None:
        """Without a shared detector: detect and track the frames held for this worker's batch."""
        if self.detection is None or not self.batch:
            return
        frames, self.batch = self.batch, []
        for message in self.detection.update_batch(frames):
            if isinstance(message, Tracks):
                self._read_inbox(block=False)  # the newest global ids label this frame
            self._handle(message)

    def _end_frames(self, ended: FramesEnded) -> None:
        """Close the camera's tracks: wait for the tracks of the frames in flight and the tracks ended."""
        if self.detection is not None:
            for message in self.detection.update(ended):
                self._handle(message)
            return
        self.channels.frames.put(ended)
        while not self.ended:
            self._read_inbox(block=True)

    def _read_inbox(self, block: bool) -> None:
        while True:
            try:
                message = self.inbox.get(timeout=1.0) if block else self.inbox.get_nowait()
            except queue.Empty:
                if block:
                    continue
                return
            self._handle(message)
            if block:
                return

    def _handle(self, message) -> None:
        if isinstance(message, StageFailed):
            self.error = self.error or message.message
        elif isinstance(message, StageStats):
            for name, seconds in message.stats.items():
                self.seconds[name] += seconds
        elif isinstance(message, FramesEnded):
            self.ended = True
        elif isinstance(message, Tracks) and self.error:
            return  # after a failure nothing more is drawn, sampled or matched
        else:
            try:
                outputs = self.stage.update(message)
            except PipelineError as e:
                self.error = self.error or str(e)
                return
            for output in outputs:
                (self.channels.crops if isinstance(output, Crop) else self.channels.matcher).put(output)

    def _monitor(self, done: threading.Event) -> None:
        """Report progress and forward source state changes, also while the source blocks reconnecting."""
        started = time.perf_counter()
        while True:
            finished = done.wait(MONITOR_INTERVAL_S)
            for change in getattr(self.source, "state_changes", list)():
                self.channels.matcher.put(
                    SourceState(self.camera_id, change.state, change.timestamp, change.detail)
                )
            self._report(self._status(self.stage.frames / max(time.perf_counter() - started, 1e-6)))
            if finished:
                return

    def _report(self, status: CameraStatus) -> None:
        with contextlib.suppress(queue.Full):
            self.channels.status.put_nowait(status)

    def _status(self, fps: float, state: str | None = None) -> CameraStatus:
        return CameraStatus(
            self.camera_id,
            self.stage.frames,
            fps,
            state or self.source.state,
            self.source.frames_dropped,
            self.source.frames_failed,
        )

    def stats(self) -> dict:
        """Frames processed, skipped, dropped and failed, and seconds per step."""
        seconds = {**self.seconds}
        for name, value in self.stage.timer.seconds.items():
            seconds[name] = seconds.get(name, 0.0) + value
        return {
            "frames_processed": self.stage.frames,
            "frames_skipped": getattr(self.source, "frames_skipped", 0),
            "frames_dropped": self.source.frames_dropped,
            "frames_failed": self.source.frames_failed,
            "reconnects": getattr(self.source, "reconnects", 0),
            "fps": self.source.fps,
            "seconds": {k: round(v, 3) for k, v in seconds.items()},
        }
