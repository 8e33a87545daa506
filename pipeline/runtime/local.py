"""The local runtime: a process per camera, one detector, one re-ID and one matcher process, bounded queues.

The stages (`CameraStage`, `DetectionStage`, `ReIDStage`, `Matcher`) know nothing of this module: it owns
their loops, the queues between them, signals, draining and the run's status. Every queue carries only
the message types of `pipeline.messages`; `EndOfStream` closes a channel.

    camera workers --Frame, CameraStarted, FramesEnded--> detector --Tracks, TrackEnded--> camera workers
    camera workers --Crop--> re-ID --Embedding--> matcher
    camera workers --Tracks, TrackEnded, CameraFinished, SourceState--> matcher --Assignment--> cameras
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config import RunConfig
from pipeline.messages import CameraStatus, EndOfStream
from pipeline.progress import ProgressDisplay
from pipeline.run_info import RunInfo
from pipeline.runtime import local_camera
from pipeline.runtime import local_stages as stages
from pipeline.runtime.results import RunResult, StageResults, salvage

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Channels:
    """The queues of one run; handed to every stage process when it is spawned."""

    frames: Any  # camera workers -> detector; None where each camera worker runs its own detector
    crops: Any  # camera workers -> re-ID
    matcher: Any  # camera workers and re-ID -> matcher
    cameras: dict[str, Any]  # detector and matcher -> each camera worker
    status: Any  # camera workers -> runner: CameraStatus for the progress display
    results: Any  # stages -> runner: CameraFinished, StageStats, StageFailed
    stop: Any  # an Event: stop reading sources and drain


def run(
    config: RunConfig, out_dir: Path, device: str, fps: dict[str, float], max_frames, log_level, invocation
):
    """Run the stages as local processes until every camera has ended; returns the RunResult."""
    info = RunInfo(out_dir / "run.json", config, device, invocation)
    info.write("running")
    ctx = mp.get_context("spawn")
    size, n = config.runner.queue_size, len(config.cameras)
    shared = config.runner.shared_detector
    channels = Channels(
        frames=ctx.Queue(maxsize=size * n) if shared else None,
        crops=ctx.Queue(maxsize=size * 8 * n),
        matcher=ctx.Queue(maxsize=size * 8 * n),
        cameras={c.id: ctx.Queue(maxsize=4096) for c in config.cameras},
        status=ctx.Queue(maxsize=1024),
        results=ctx.Queue(),
        stop=ctx.Event(),
    )
    parent = (os.getpid(), log_level)

    cameras = {
        c.id: ctx.Process(
            target=local_camera.camera_main,
            args=(config, c.id, out_dir, device, max_frames, channels, parent),
            name=f"camera-{c.id}",
        )
        for c in config.cameras
    }
    services = [
        *(
            [
                ctx.Process(
                    target=stages.detector_main, args=(config, device, channels, parent), name="detector"
                )
            ]
            if shared
            else []
        ),
        ctx.Process(target=stages.reid_main, args=(config, device, channels, parent), name="reid"),
    ]
    matcher = ctx.Process(
        target=stages.matcher_main, args=(config, out_dir, fps, channels, parent), name="matcher"
    )
    services.append(matcher)
    processes = [*cameras.values(), *services]
    progress = (
        ProgressDisplay(list(cameras), config.runner.progress_interval_s) if config.runner.progress else None
    )
    results = StageResults()
    signals = _SignalHandler(channels.stop, processes)
    with signals:
        for p in processes:
            p.start()
        end_sent = False
        crashed = None
        latest: dict[str, CameraStatus] = {}
        while matcher.is_alive() or not end_sent:
            _drain_status(channels.status, progress, latest)
            _drain_results(channels.results, results)
            if progress is not None:
                progress.render(_queue_depths(channels))
            if not end_sent and not any(p.is_alive() for p in cameras.values()):
                # every camera has sent CameraFinished: end of stream for the detector and re-ID stages
                for channel in (channels.frames, channels.crops):
                    if channel is not None:
                        channel.put(EndOfStream("runner"))
                end_sent = True
            if signals.hard_stop:
                break
            crashed = next((p for p in services if p.exitcode not in (None, 0)), None)
            if crashed is not None:  # nothing drains the queues any more: stop everything now
                channels.stop.set()
                signals.stop_now()
                break
            matcher.join(timeout=0.2)
        _drain_results(channels.results, results, timeout=0.5)
        for p in processes:
            p.join(timeout=0 if signals.hard_stop else JOIN_TIMEOUT_S)
            if p.is_alive():
                p.kill()
                p.join()
        if signals.hard_stop or crashed is not None:
            # what this process put on a queue no stage will read any more: exit without flushing it
            for channel in (channels.frames, channels.crops, channels.matcher, *channels.cameras.values()):
                if channel is not None:
                    channel.cancel_join_thread()
        if crashed is not None and "error" not in results.stages:
            results.fail(f"the {crashed.name} stage exited with code {crashed.exitcode}")
        elif not signals.hard_stop and "error" not in results.stages and "matcher" not in results.stages:
            results.fail(f"the matcher stage ended with code {matcher.exitcode} before writing the exports")
        for camera_id, p in cameras.items():
            if p.exitcode not in (None, 0) and camera_id not in results.cameras:
                results.camera_failed(camera_id, f"its worker exited with code {p.exitcode}")
    if progress is not None:
        progress.render({}, force=True)
        progress.close()
    if signals.hard_stop:
        frames = {c: s.frames for c, s in latest.items()}
        salvage(config, out_dir, fps, frames)
        for camera_id, count in frames.items():
            results.cameras.setdefault(camera_id, {"reason": "killed", "frames_processed": count})
    status = results.status(signals.hard_stop, channels.stop.is_set(), len(cameras))
    info.write(status, cameras=results.cameras, stages=results.stages)
    if config.output.report:
        from pipeline.sinks.report import write_report_logged

        write_report_logged(out_dir)
    return RunResult(out_dir, status, results.cameras, results.stages)


class _SignalHandler:
    """First SIGINT/SIGTERM: stop reading sources and drain. Second: stop at once."""

    def __init__(self, stop, processes: list) -> None:
        self.stop = stop
        self.processes = processes
        self.hard_stop = False
        self._previous: dict = {}

    def __enter__(self) -> _SignalHandler:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def _handle(self, signum, frame) -> None:
        if self.stop.is_set():
            log.warning("second stop signal: stopping now")
            self.stop_now()
            return
        log.warning("stopping: finishing queued work (signal again to stop at once)")
        self.stop.set()

    def stop_now(self) -> None:
        """Kill every stage at once (they take SIGTERM as "drain"); the caller salvages what they wrote."""
        self.hard_stop = True
        for p in self.processes:
            if p.is_alive():
                p.kill()


def _drain_status(status_q, progress: ProgressDisplay | None, latest: dict[str, CameraStatus]) -> None:
    while True:
        try:
            status = status_q.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        latest[status.camera_id] = status
        if progress is not None:
            progress.update(status)


def _drain_results(results_q, results: StageResults, timeout: float = 0.0) -> None:
    while True:
        try:
            message = results_q.get(timeout=timeout) if timeout else results_q.get_nowait()
        except (queue.Empty, OSError, ValueError):
            return
        results.add(message)


def _queue_depths(channels: Channels) -> dict[str, int]:
    named = {"frames": channels.frames, "crops": channels.crops, "matched": channels.matcher}
    return {name: _qsize(q) for name, q in named.items() if q is not None}


def _qsize(q) -> int:
    try:
        return q.qsize()
    except NotImplementedError:
        return -1
