"""What each process of the local runtime runs: the loop around its stage, between its queues."""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
from pathlib import Path

from pipeline import build
from pipeline.batching import MicroBatcher
from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.messages import (
    CameraFinished,
    Crop,
    EndOfStream,
    Frame,
    FramesEnded,
    StageFailed,
    StageReady,
    StageStats,
)
from pipeline.runtime.serving import serve_batches

log = logging.getLogger(__name__)

MONITOR_INTERVAL_S = 0.5


class ChildSignals:
    """In a stage process, SIGINT and SIGTERM (a signal to the whole process group) mean "drain and finish".

    The handler only sets a flag: the parent coordinates the stop through the shared event, and a lock
    taken in a signal handler could deadlock the code it interrupted.
    """

    received = False

    @classmethod
    def install(cls) -> None:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, cls._handle)

    @classmethod
    def _handle(cls, signum, frame) -> None:
        cls.received = True


def child_setup(parent: tuple[int, int]) -> None:
    parent_pid, log_level = parent
    ChildSignals.install()
    _die_with_parent(parent_pid)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(processName)s: %(message)s")
    for package in ("pipeline", "detectors", "reid"):
        logging.getLogger(package).setLevel(log_level)
    os.environ.setdefault("YOLO_AUTOINSTALL", "false")
    os.environ.setdefault("YOLO_OFFLINE", "true")


def _die_with_parent(parent_pid: int) -> None:
    """A stage whose runner was killed (kill -9) dies too, instead of writing into an unlocked OUT."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the parent died before the request above took effect
        os._exit(1)


def drain(inbox) -> None:
    """Read and drop messages until end of stream, so the stages upstream can finish."""
    while not isinstance(inbox.get(), EndOfStream):
        pass


# -- the detector, re-ID and matcher processes ---------------------------------------------------------


def detector_main(config: RunConfig, device: str, channels, parent) -> None:
    """Detect and track the frames of every camera, batched; send each camera its tracks."""
    child_setup(parent)
    failed: str | None = None
    try:
        stage = build.build_detection_stage(config, device)
        stage.detector_for(config.cameras[0].id)  # load the model before the first frame arrives
    except PipelineError as e:  # every camera reports it as its reason for ending
        failed = str(e)

    def reply(camera_id: str, messages: list) -> None:
        for message in messages:
            channels.cameras[camera_id].put(message)

    def run_batch(frames: list[Frame]) -> None:
        try:
            outputs = stage.update_batch(frames)
        except Exception:  # one camera's bad frame must not cost the others: retry frame by frame
            if len(frames) > 1:
                for frame in frames:
                    run_batch([frame])
                return
            log.debug("detection failed", exc_info=True)
            frame = frames[0]
            why = f"camera {frame.camera_id}: detection failed on frame {frame.index} ({frame.image.shape[1]}x{frame.image.shape[0]})"
            outputs = [StageFailed("detector", why)]
            reply(frame.camera_id, outputs)
            return
        for message in outputs:
            channels.cameras[message.camera_id].put(message)

    def take(message) -> bool:
        if failed is not None:
            if isinstance(message, Frame):
                reply(message.camera_id, [StageFailed("detector", failed)])
            elif isinstance(message, FramesEnded):
                reply(message.camera_id, [message])
            return False
        if isinstance(message, Frame):
            return True
        if isinstance(message, FramesEnded):  # the camera's frames held here go first
            run_batch(batcher.take())
        reply(getattr(message, "camera_id", ""), stage.update(message))
        return False

    batcher = MicroBatcher(config.detector.max_batch, config.detector.max_wait_ms)
    serve_batches(channels.frames, batcher, run_batch, take)
    if failed is None:
        channels.results.put(StageStats("detector", stage.stats()))


def reid_main(config: RunConfig, device: str, channels, parent) -> None:
    """Embed the crops of every camera in dynamic micro-batches; send the embeddings to the matcher."""
    from pipeline.reid_stage import ReIDStage

    child_setup(parent)
    try:
        embedder = build.build_embedder(config, device)
    except PipelineError as e:  # reported once, by the CLI, from the stage error
        failed = StageFailed("reid", str(e))
        channels.results.put(failed)
        channels.stop.set()
        channels.matcher.put(failed)
        drain(channels.crops)
        channels.matcher.put(EndOfStream("reid"))
        return
    channels.matcher.put(StageReady("reid", embedder.dim))
    stage = ReIDStage(embedder, max_batch=config.reid.max_batch, max_wait_ms=config.reid.max_wait_ms)

    def run_batch(crops: list[Crop]) -> None:
        for embedding in stage.update_batch(crops):
            channels.matcher.put(embedding)

    def take(message) -> bool:
        if isinstance(message, Crop):
            return True
        raise TypeError(f"the re-ID stage got a {type(message).__name__} message")

    serve_batches(channels.crops, MicroBatcher(stage.max_batch, stage.max_wait_ms), run_batch, take)
    for embedding in stage.finish():
        channels.matcher.put(embedding)
    channels.matcher.put(EndOfStream("reid"))
    channels.results.put(StageStats("reid", stage.stats()))


def matcher_main(config: RunConfig, out_dir: Path, fps: dict[str, float], channels, parent) -> None:
    child_setup(parent)
    early: list = []  # camera messages that came before the re-ID stage said its feature size
    while True:
        message = channels.matcher.get()
        if isinstance(message, StageReady):
            break
        if isinstance(message, StageFailed):  # no re-ID model: the run stops, there is nothing to match
            drain(channels.matcher)
            return
        early.append(message)
    try:
        stats = match(config, out_dir, fps, message.dim, early, channels)
    except Exception as e:  # any failure, writing exports included, fails the run instead of passing silently
        log.debug("matcher failed", exc_info=True)
        text = str(e) if isinstance(e, PipelineError) else f"matcher: {type(e).__name__}: {e}"
        channels.results.put(StageFailed("matcher", text))
        channels.stop.set()
        drain(channels.matcher)
        return
    channels.results.put(StageStats("matcher", stats))


def match(config: RunConfig, out_dir: Path, fps: dict[str, float], dim: int, early: list, channels) -> dict:
    """Link every track of the run, then write the exports; returns the matcher's stats."""
    from pipeline.runtime.matching import MatchSession

    session = MatchSession(config, out_dir, fps, dim)
    try:
        while True:
            if early:
                message = early.pop(0)
            else:
                try:
                    message = channels.matcher.get(timeout=config.store.commit_interval_s)
                except queue.Empty:
                    session.idle()
                    continue
            if isinstance(message, EndOfStream):
                break
            if isinstance(message, CameraFinished):
                channels.results.put(message)
            for assignment in session.update(message):
                try:
                    channels.cameras[assignment.camera_id].put_nowait(assignment)
                except queue.Full:
                    log.debug("assignment queue of %s is full; its video labels lag", assignment.camera_id)
        return session.finish()
    finally:
        session.close()
