"""The Ray runtime: the same stages as Ray actors, on one machine or a cluster (`runner.engine: ray`).

Camera actors (CPU) read their sources and run their CameraStage; one detector actor and one re-ID actor
take a share of a GPU where the cluster has any (both fit on one); one matcher actor owns the identity
store and writes the exports. The run's output folder must be reachable by the camera and matcher actors
(the same machine, or a shared file system).

A camera actor that dies is restarted (`max_restarts`) and its `run` call retried: it resumes a file
source at the frame after the last one whose tracks reached the matcher, and the detector actor keeps its
tracker, so its track ids stay unique. The other cameras lose nothing. The annotated video of a restarted
camera holds the frames from its restart on.

Ray is imported only here: the local runtime does not need it.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import warnings
from pathlib import Path

import ray

from pipeline import build
from pipeline.batching import MicroBatcher
from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.messages import (
    Assignment,
    CameraFinished,
    CameraStarted,
    Crop,
    Frame,
    FramesEnded,
    SourceState,
    StageFailed,
    StageReady,
    StageStats,
    Tracks,
)
from pipeline.runtime.results import RunResult, StageResults, salvage
from pipeline.runtime.serving import serve_batches

log = logging.getLogger(__name__)

CAMERA_MAX_RESTARTS = 3
CAMERA_CPUS = 0.25  # camera actors decode, sample and draw: light, so several share a core
SERVICE_CPUS = 0.25
GPU_SHARE = 0.5  # the detector and re-ID actors share one GPU


@ray.remote
class MatcherActor:
    """Owns the identity store: takes every camera's tracks and the embeddings, writes the exports."""

    def __init__(self, config: RunConfig, out_dir: Path, fps: dict[str, float]) -> None:
        self.args = (config, out_dir, fps)
        self.session = None
        self.pending: dict[str, list[Assignment]] = {}

    def start(self, dim: int) -> None:
        from pipeline.runtime.matching import MatchSession

        self.session = MatchSession(*self.args, dim)

    def update(self, camera_id: str | None, messages: list) -> list[Assignment]:
        """Take messages; return the Assignments waiting for `camera_id` (its video's labels)."""
        for message in messages:
            for assignment in self.session.update(message):
                self.pending.setdefault(assignment.camera_id, []).append(assignment)
        return self.pending.pop(camera_id, []) if camera_id is not None else []

    def last_frame(self, camera_id: str) -> int:
        """The newest frame of `camera_id` whose tracks arrived (0: none): where a restarted camera resumes."""
        return self.session.last_frame.get(camera_id, 0)

    def finish(self) -> dict:
        try:
            return self.session.finish()
        finally:
            self.session.close()


@ray.remote
class DetectorActor:
    """Owns the detector and every camera's tracker (a DetectionStage); batches the frames of all cameras.

    Camera actors call `update` concurrently (a threaded actor); their frames meet in one MicroBatcher that
    one thread serves, so each camera's tracker sees its frames in order.
    """

    def __init__(self, config: RunConfig, device: str) -> None:
        self.error: str | None = None
        self.inbox: queue.Queue = queue.Queue()
        self.replies = {c.id: queue.Queue() for c in config.cameras}
        try:
            self.stage = build.build_detection_stage(config, device)
            self.stage.detector_for(config.cameras[0].id)  # load the model now: a bad one fails here
        except PipelineError as e:
            self.error = str(e)
            return
        batcher = MicroBatcher(config.detector.max_batch, config.detector.max_wait_ms)
        threading.Thread(target=self._serve, args=(batcher,), daemon=True).start()

    def update(self, camera_id: str, messages: list) -> list:
        """Frames, CameraStarted or FramesEnded of one camera; returns what they give once all is done."""
        if self.error is not None:
            return [StageFailed("detector", self.error)]
        last = max((m.index for m in messages if isinstance(m, Frame)), default=None)
        ending = any(isinstance(m, FramesEnded) for m in messages)
        for message in messages:
            self.inbox.put(message)
        out: list = []
        while last is not None or ending:
            for message in self.replies[camera_id].get():
                out.append(message)
                if isinstance(message, StageFailed):
                    return out
                if isinstance(message, Tracks) and message.frame_index == last:
                    last = None
                ending = ending and not isinstance(message, FramesEnded)
        return out

    def stats(self) -> dict:
        return {} if self.error is not None else self.stage.stats()

    def _serve(self, batcher: MicroBatcher) -> None:
        def run_batch(frames: list[Frame]) -> None:
            if not frames:
                return
            try:
                outputs = self.stage.update_batch(frames)
            except Exception:  # one camera's bad frame must not cost the others: retry frame by frame
                if len(frames) > 1:
                    for frame in frames:
                        run_batch([frame])
                    return
                frame = frames[0]
                why = f"camera {frame.camera_id}: detection failed on frame {frame.index}"
                self.replies[frame.camera_id].put([StageFailed("detector", why)])
                return
            by_camera: dict[str, list] = {}
            for message in outputs:
                by_camera.setdefault(message.camera_id, []).append(message)
            for camera_id, messages in by_camera.items():
                self.replies[camera_id].put(messages)

        def take(message) -> bool:
            if isinstance(message, Frame):
                return True
            if isinstance(message, FramesEnded):  # the camera's frames held here go first
                run_batch(batcher.take())
                self.replies[message.camera_id].put(self.stage.update(message))
            else:
                self.stage.update(message)
            return False

        serve_batches(self.inbox, batcher, run_batch, take)


@ray.remote
class ReIDActor:
    """Owns the re-ID model; batches the crops of all cameras and hands the embeddings to the matcher.

    `embed` only queues crops (a threaded actor); one thread runs the MicroBatcher's batches. `sync(camera)`
    returns once every crop that camera queued has been embedded and delivered to the matcher.
    """

    def __init__(self, config: RunConfig, device: str, matcher) -> None:
        from pipeline.reid_stage import ReIDStage

        self.matcher = matcher
        self.inbox: queue.Queue = queue.Queue()
        self.queued = {c.id: 0 for c in config.cameras}
        self.done = dict(self.queued)
        self.progress = threading.Condition()
        try:
            embedder = build.build_embedder(config, device)
        except PipelineError as e:
            self.ready = StageFailed("reid", str(e))
            return
        self.ready = StageReady("reid", embedder.dim)
        self.stage = ReIDStage(embedder, max_batch=config.reid.max_batch, max_wait_ms=config.reid.max_wait_ms)
        batcher = MicroBatcher(self.stage.max_batch, self.stage.max_wait_ms)
        threading.Thread(
            target=serve_batches, args=(self.inbox, batcher, self._run_batch, self._take), daemon=True
        ).start()

    def hello(self) -> StageReady | StageFailed:
        return self.ready

    def embed(self, crops: list[Crop]) -> None:
        with self.progress:
            for crop in crops:
                self.queued[crop.camera_id] += 1
                self.inbox.put(crop)

    def sync(self, camera_id: str) -> None:
        with self.progress:
            self.progress.wait_for(lambda: self.done[camera_id] >= self.queued[camera_id])

    def stats(self) -> dict:
        return self.stage.stats() if isinstance(self.ready, StageReady) else {}

    def _take(self, message) -> bool:
        if isinstance(message, Crop):
            return True
        raise TypeError(f"the re-ID actor got a {type(message).__name__} message")

    def _run_batch(self, crops: list[Crop]) -> None:
        if not crops:
            return
        try:
            embeddings = self.stage.update_batch(crops)
            if embeddings:
                ray.get(self.matcher.update.remote(None, embeddings))
        except Exception:  # the matcher's failure is reported when it finishes; keep serving the cameras
            log.exception("embeddings of %d crops did not reach the matcher", len(crops))
        finally:
            with self.progress:
                for crop in crops:
                    self.done[crop.camera_id] += 1
                self.progress.notify_all()


@ray.remote
class CameraActor:
    """One camera: its source and CameraStage; detection, embedding and matching through the other actors."""

    def __init__(self, config: RunConfig, camera_id: str, out_dir: Path, max_frames, detector, reid, matcher):
        self.config = config
        self.camera_id = camera_id
        self.out_dir = out_dir
        self.max_frames = max_frames
        self.detector, self.reid, self.matcher = detector, reid, matcher
        with warnings.catch_warnings():  # the property reads a deprecated one inside Ray
            warnings.simplefilter("ignore", DeprecationWarning)
            self.restarted = ray.get_runtime_context().was_current_actor_reconstructed

    def run(self) -> CameraFinished:
        """Process the camera to its end (from where it was, after a restart); returns CameraFinished."""
        from pipeline.sinks.video import AnnotatedVideoWriter
        from pipeline.worker import CameraStage, video_path

        config, camera_id = self.config, self.camera_id
        camera = config.camera(camera_id)
        limit = build.min_limit(camera.max_frames, self.max_frames)
        done = ray.get(self.matcher.last_frame.remote(camera_id)) - camera.start_frame + 1
        if done > 0:  # a restarted actor: resume after the last frame the matcher has
            log.warning("camera %s: restarted; resuming at frame %d", camera_id, camera.start_frame + done)
            limit = None if limit is None else max(limit - done, 0)
            camera = dataclasses.replace(camera, start_frame=camera.start_frame + done, max_frames=limit)
        done = max(done, 0)
        source = build.build_source(camera, limit)
        try:
            source.open()
            fps = source.fps or 25.0
            stage = CameraStage(
                camera_id,
                sampler=build.build_sampler(config, self.out_dir / "thumbnails" / camera_id),
                video=(
                    AnnotatedVideoWriter(
                        video_path(self.out_dir, camera_id, config.output.container),
                        fps,
                        config.output.codec,
                        config.output.trail,
                    )
                    if config.output.video
                    else None
                ),
            )
        except PipelineError as e:
            source.close()
            return self._finish([], CameraFinished(camera_id, 0, f"error: {e}"))
        loop = _CameraLoop(stage, self.detector, self.reid, self.matcher, config.detector.max_batch)
        loop.send([CameraStarted(camera_id, fps)])
        reason, last = "end", (camera.start_frame, 0.0)
        try:
            batch: list[Frame] = []
            for frame in source.frames():
                stage.update(frame)
                batch.append(frame)
                last = frame.index, frame.timestamp
                if len(batch) >= loop.max_batch:
                    loop.send(batch)
                    batch = []
                if loop.error:
                    break
            loop.send(batch)
            if getattr(source, "error", None) is not None:
                reason = f"error: {source.error}"
        except PipelineError as e:
            reason = f"error: {e}"
        finally:
            source.close()
        loop.send([FramesEnded(camera_id, *last)])
        try:
            stage.finish()
        except PipelineError as e:
            loop.error = loop.error or str(e)
        if loop.error and not reason.startswith("error"):
            reason = f"error: {loop.error}"
        stats = {
            "frames_processed": done + stage.frames,
            "frames_skipped": getattr(source, "frames_skipped", 0),
            "frames_dropped": source.frames_dropped,
            "frames_failed": source.frames_failed,
            "reconnects": getattr(source, "reconnects", 0),
            "fps": source.fps,
            "restarted": self.restarted,
            "seconds": {k: round(v, 3) for k, v in {**loop.seconds, **stage.timer.seconds}.items()},
        }
        return self._finish(
            loop.states(source), CameraFinished(camera_id, done + stage.frames, reason, stats)
        )

    def _finish(self, messages: list, finished: CameraFinished) -> CameraFinished:
        # Every crop this camera sent is embedded and at the matcher before the camera's end.
        ray.get(self.reid.sync.remote(self.camera_id))
        ray.get(self.matcher.update.remote(self.camera_id, [*messages, finished]))
        return finished


class _CameraLoop:
    """A camera actor's round trips: frames to the detector, crops to re-ID, tracks to the matcher."""

    def __init__(self, stage, detector, reid, matcher, max_batch: int) -> None:
        self.stage = stage
        self.detector, self.reid, self.matcher = detector, reid, matcher
        self.max_batch = max(1, max_batch // 2)  # frames per call: the detector's batches take two cameras
        self.error: str | None = None
        self.seconds: dict[str, float] = {}

    def send(self, messages: list) -> None:
        if not messages:
            return
        crops, lifecycle = [], []
        for message in ray.get(self.detector.update.remote(self.stage.camera_id, messages)):
            if isinstance(message, StageFailed):
                self.error = self.error or message.message
            elif isinstance(message, StageStats):
                self.seconds.update(message.stats)
            elif isinstance(message, FramesEnded) or (isinstance(message, Tracks) and self.error):
                continue
            else:
                try:
                    outputs = self.stage.update(message)
                except PipelineError as e:
                    self.error = self.error or str(e)
                    continue
                for output in outputs:
                    (crops if isinstance(output, Crop) else lifecycle).append(output)
        if crops:  # queued in order before anything this camera asks the re-ID actor later
            ray.get(self.reid.embed.remote(crops))
        for assignment in ray.get(self.matcher.update.remote(self.stage.camera_id, lifecycle)):
            self.stage.update(assignment)

    @staticmethod
    def states(source) -> list[SourceState]:
        return [
            SourceState(source.camera_id, c.state, c.timestamp, c.detail)
            for c in getattr(source, "state_changes", list)()
        ]


def run(
    config: RunConfig, out_dir: Path, device: str, fps: dict[str, float], max_frames, log_level, invocation
):
    """Run the stages as Ray actors until every camera has ended; returns the RunResult."""
    from pipeline.run_info import RunInfo

    started_here = not ray.is_initialized()
    if started_here:
        local = {"include_dashboard": False} if config.runner.address is None else {}  # a new instance only
        ray.init(
            address=config.runner.address,
            logging_level=log_level,
            log_to_driver=log_level <= logging.INFO,
            **local,
        )
    results = StageResults()
    actors = []
    info = None
    try:
        model_device, gpus = _model_device(device)
        info = RunInfo(out_dir / "run.json", config, model_device, invocation)
        info.write("running")
        matcher = MatcherActor.options(name="matcher", num_cpus=SERVICE_CPUS).remote(config, out_dir, fps)
        threads = len(config.cameras) + 2  # every camera may wait on these actors at once
        reid = ReIDActor.options(num_cpus=SERVICE_CPUS, num_gpus=gpus, max_concurrency=threads).remote(
            config, model_device, matcher
        )
        detector = DetectorActor.options(
            num_cpus=SERVICE_CPUS, num_gpus=gpus, max_concurrency=threads
        ).remote(config, model_device)
        actors += [matcher, reid, detector]
        hello = ray.get(reid.hello.remote())
        if isinstance(hello, StageFailed):
            results.add(hello)
            return _result(RunResult, info, config, out_dir, results)
        ray.get(matcher.start.remote(hello.dim))
        cameras = {
            c.id: CameraActor.options(
                name=f"camera-{c.id}",
                num_cpus=CAMERA_CPUS,
                max_restarts=CAMERA_MAX_RESTARTS,
                max_task_retries=CAMERA_MAX_RESTARTS,
            ).remote(config, c.id, out_dir, max_frames, detector, reid, matcher)
            for c in config.cameras
        }
        actors += list(cameras.values())
        calls = {camera_id: actor.run.remote() for camera_id, actor in cameras.items()}
        for camera_id, call in calls.items():
            try:
                results.add(ray.get(call))
            except ray.exceptions.RayError as e:
                results.camera_failed(camera_id, f"its actor failed: {type(e).__name__}")
                ray.get(matcher.update.remote(None, [CameraFinished(camera_id, 0, "error")]))
        results.add(StageStats("detector", ray.get(detector.stats.remote())))
        results.add(StageStats("reid", ray.get(reid.stats.remote())))
        try:
            results.add(StageStats("matcher", ray.get(matcher.finish.remote())))
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, Exception) else e
            text = (
                str(cause)
                if isinstance(cause, PipelineError)
                else f"matcher: {type(cause).__name__}: {cause}"
            )
            results.fail(text)
        return _result(RunResult, info, config, out_dir, results)
    except KeyboardInterrupt:  # a stop signal ends a Ray run at once: keep what the store had committed
        for actor in actors:
            ray.kill(actor, no_restart=True)
        salvage(config, out_dir, fps, {})
        if info is not None:
            info.write("killed", cameras=results.cameras, stages=results.stages)
        raise
    finally:
        for actor in actors:
            ray.kill(actor, no_restart=True)
        if started_here:
            ray.shutdown()


def _model_device(device: str) -> tuple[str, float]:
    """Where the detector and re-ID actors run, and the share of a GPU each takes.

    The cluster's GPUs count, not the driver's: "auto" takes them where there are any, "cuda" needs them.
    """
    if device == "cpu":
        return "cpu", 0
    if ray.cluster_resources().get("GPU", 0) > 0:
        return "cuda", GPU_SHARE
    if device == "auto":
        return "cpu", 0
    raise PipelineError(f"device: {device} requested but the Ray cluster has no GPU")


def _result(result_type, info, config: RunConfig, out_dir: Path, results: StageResults):
    status = results.status(False, False, len(config.cameras))
    info.write(status, cameras=results.cameras, stages=results.stages)
    if config.output.report and (out_dir / "tracks.json").exists():
        from pipeline.sinks.report import write_report_logged

        write_report_logged(out_dir)
    return result_type(out_dir, status, results.cameras, results.stages)
