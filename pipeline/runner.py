"""The local runner: a process per camera, one re-ID process, one matcher process, bounded queues."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import multiprocessing as mp
import os
import queue
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from pipeline import build
from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.messages import Assignment, CameraFinished, IdentityEvent, SourceState, Tracks
from pipeline.progress import ProgressDisplay
from pipeline.run_info import RunInfo
from pipeline.run_lock import RunLock
from pipeline.worker import CameraStatus

log = logging.getLogger(__name__)

JOIN_TIMEOUT_S = 60.0
LOCK_NAME = ".lock"
# What a resumed run rewrites (and a fresh run moves to previous/<n>/).
EXPORTS = ("tracks.json", "mot", "videos", "run.json", "topology.json", "thumbnails", "report.html")


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
        return _failed(self.cameras)


def run(
    config: RunConfig,
    out_dir: Path,
    *,
    max_frames: int | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    log_level: int = logging.WARNING,
    invocation: dict | None = None,
) -> RunResult:
    """Run every camera of `config` to its end (or until SIGINT/SIGTERM) and write the outputs.

    Everything is checked before OUT is touched; then OUT (and a shared store) is locked for the run.
    A fresh run into an OUT that holds an earlier run moves that run to OUT/previous/<n>/, or removes it
    with `overwrite`.
    """
    out_dir = Path(out_dir)
    device = build.resolve_device(device or config.device)
    store = build.store_path(config, out_dir)
    _check_output(out_dir, store, resume)
    locks = [RunLock(out_dir / LOCK_NAME, f"output folder {out_dir}")]
    if config.store.path is not None:
        locks.append(RunLock(store.with_name(store.name + ".lock"), f"identity store {store}"))
    for lock in locks:
        lock.check()
    build.check_weights(config)
    fps = _preflight_sources(config)
    with contextlib.ExitStack() as held:
        for lock in locks:
            held.enter_context(lock)
        _prepare_output(config, out_dir, resume, overwrite)
        return _run_stages(config, out_dir, device, fps, max_frames, log_level, invocation)


def _run_stages(config, out_dir, device, fps, max_frames, log_level, invocation) -> RunResult:
    info = RunInfo(out_dir / "run.json", config, device, invocation)
    info.write("running")
    ctx = mp.get_context("spawn")
    stop = ctx.Event()
    crops_q = ctx.Queue(maxsize=config.runner.queue_size * 8 * len(config.cameras))
    matched_q = ctx.Queue(maxsize=config.runner.queue_size * 8 * len(config.cameras))
    status_q = ctx.Queue(maxsize=1024)
    result_q = ctx.Queue()
    assign_qs = {c.id: ctx.Queue(maxsize=4096) for c in config.cameras}
    parent = os.getpid()

    cameras = {
        c.id: ctx.Process(
            target=_camera_main,
            args=(
                config,
                c.id,
                out_dir,
                device,
                max_frames,
                crops_q,
                assign_qs[c.id],
                status_q,
                stop,
                (parent, log_level),
            ),
            name=f"camera-{c.id}",
        )
        for c in config.cameras
    }
    reid = ctx.Process(
        target=_reid_main,
        args=(config, device, crops_q, matched_q, result_q, stop, (parent, log_level)),
        name="reid",
    )
    matcher = ctx.Process(
        target=_matcher_main,
        args=(config, out_dir, fps, matched_q, assign_qs, result_q, stop, (parent, log_level)),
        name="matcher",
    )
    processes = [*cameras.values(), reid, matcher]
    progress = (
        ProgressDisplay(list(cameras), config.runner.progress_interval_s) if config.runner.progress else None
    )
    results = _Results()
    signals = _SignalHandler(stop, processes)
    with signals:
        for p in processes:
            p.start()
        end_sent = False
        crashed = None
        latest: dict[str, CameraStatus] = {}
        while matcher.is_alive() or not end_sent:
            _drain_status(status_q, progress, latest)
            results.drain(result_q)
            if progress is not None:
                progress.render({"crops": _qsize(crops_q), "matched": _qsize(matched_q)})
            if not end_sent and not any(p.is_alive() for p in cameras.values()):
                crops_q.put(None)  # every camera has sent CameraFinished: end of stream for the re-ID stage
                end_sent = True
            if signals.hard_stop:
                break
            crashed = next((p for p in (reid, matcher) if p.exitcode not in (None, 0)), None)
            if crashed is not None:  # nothing drains the queues any more: stop everything now
                stop.set()
                signals.stop_now()
                break
            matcher.join(timeout=0.2)
        results.drain(result_q, timeout=0.5)
        for p in processes:
            p.join(timeout=0 if signals.hard_stop else JOIN_TIMEOUT_S)
            if p.is_alive():
                p.kill()
                p.join()
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
        _salvage(config, out_dir, fps, frames)
        for camera_id, count in frames.items():
            results.cameras.setdefault(camera_id, {"reason": "killed", "frames_processed": count})
    status = _status(results, signals.hard_stop, stop.is_set(), len(cameras))
    info.write(status, cameras=results.cameras, stages=results.stages)
    if config.output.report:
        from pipeline.sinks.report import write_report_logged

        write_report_logged(out_dir)
    return RunResult(out_dir, status, results.cameras, results.stages)


def _failed(cameras: dict[str, dict]) -> list[str]:
    """The cameras whose reason for ending is an error."""
    return [c for c, s in cameras.items() if str(s.get("reason", "")).startswith("error")]


def _status(results: _Results, hard_stop: bool, stopped: bool, n_cameras: int) -> str:
    """How the run ended, from every stage's outcome: a failed stage or every camera failed is a failure."""
    if "error" in results.stages:
        return "failed"
    if hard_stop:
        return "killed"
    if len(results.failed_cameras) == n_cameras:
        return "failed"
    return "stopped" if stopped else "complete"


class _Results:
    """What the stages reported: per-camera outcomes, and each stage's stats or its error."""

    def __init__(self) -> None:
        self.cameras: dict[str, dict] = {}
        self.stages: dict[str, dict] = {}

    @property
    def failed_cameras(self) -> list[str]:
        return _failed(self.cameras)

    def drain(self, result_q, timeout: float = 0.0) -> None:
        while True:
            try:
                kind, name, data = result_q.get(timeout=timeout) if timeout else result_q.get_nowait()
            except (queue.Empty, OSError, ValueError):
                return
            if kind == "camera":
                self.cameras[name] = data
                if str(data.get("reason", "")).startswith("error"):
                    log.error("%s", data["reason"].removeprefix("error: "))  # the reason names the camera
            else:
                self.stages.setdefault(name, data)  # the first error is the cause; later ones follow from it

    def fail(self, message: str) -> None:
        self.stages.setdefault("error", {"message": message})

    def camera_failed(self, camera_id: str, why: str) -> None:
        reason = f"error: camera {camera_id}: {why}"
        self.cameras[camera_id] = {"reason": reason}
        log.error("%s", reason.removeprefix("error: "))


def _check_output(out_dir: Path, store: Path, resume: bool) -> None:
    """Refuse an output folder or store path the run cannot use, before anything is written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"output folder {out_dir} is a file; give a folder with -o")
    existing = next(p for p in (out_dir, *out_dir.resolve().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PipelineError(f"output folder {out_dir} is not writable ({existing}: permission denied)")
    if store.is_dir():
        raise PipelineError(f"store.path: {store} is a folder; give the path of a database file")
    if resume and not store.is_file():
        raise PipelineError(f"{out_dir}: nothing to resume (no identity store from an earlier run)")


def _prepare_output(config: RunConfig, out_dir: Path, resume: bool, overwrite: bool) -> None:
    try:
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PipelineError(f"output folder {out_dir} is not writable ({e.strerror})") from None
    if resume:
        _archive(out_dir, EXPORTS)
        return
    # A fresh run starts a fresh gallery and event log; an earlier run's are kept unless asked otherwise.
    names = [*EXPORTS, "events.jsonl", *(["store"] if config.store.path is None else [])]
    if overwrite:
        for name in names:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return
    archive = _archive(out_dir, names)
    if archive is not None:
        log.info("%s held an earlier run: moved its outputs to %s", out_dir, archive)


def _archive(out_dir: Path, names: list[str]) -> Path | None:
    """Move the outputs `names` of an earlier run to previous/<n>/, so this run cannot overwrite them."""
    names = [n for n in names if (out_dir / n).exists()]
    if not names:
        return None
    taken = [int(p.name) for p in (out_dir / "previous").glob("*") if p.name.isdigit()]
    archive = out_dir / "previous" / str(max(taken, default=0) + 1)
    archive.mkdir(parents=True)
    for name in names:
        (out_dir / name).replace(archive / name)
    return archive


def _preflight_sources(config: RunConfig) -> dict[str, float]:
    """Open every file source once so a missing or unreadable video fails before any process starts."""
    from pipeline.sources.file import FileSource

    fps = {}
    for camera in config.cameras:
        source = build.build_source(camera)
        if isinstance(source, FileSource):
            source.open()
            fps[camera.id] = source.fps
            source.close()
    return fps


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


def _cameras_meta(config: RunConfig, fps: dict[str, float], frames: dict[str, int]) -> list[dict]:
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


def _salvage(config: RunConfig, out_dir: Path, fps: dict[str, float], frames: dict[str, int]) -> None:
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
            write_exports(store, session, _cameras_meta(config, fps, frames), out_dir)
    finally:
        store.close()


def _qsize(q) -> int:
    try:
        return q.qsize()
    except NotImplementedError:
        return -1


class _ChildSignals:
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


def _child_setup(parent: tuple[int, int]) -> None:
    parent_pid, log_level = parent
    _ChildSignals.install()
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


def _camera_main(config, camera_id, out_dir, device, max_frames, outbox, inbox, status_q, stop, parent):
    from pipeline.sinks.video import AnnotatedVideoWriter
    from pipeline.worker import CameraWorker, video_path

    _child_setup(parent)
    camera = config.camera(camera_id)
    source = build.build_source(camera, max_frames)
    try:
        source.open()
        fps = source.fps or 25.0
        worker = CameraWorker(
            source=source,
            detector=build.build_detector(config, camera, device),
            tracker=build.build_tracker(config, camera_id, fps),
            sampler=build.build_sampler(config, out_dir / "thumbnails" / camera_id),
            video=(
                AnnotatedVideoWriter(
                    video_path(out_dir, camera_id, config.output.container),
                    fps,
                    config.output.codec,
                    config.output.trail,
                )
                if config.output.video
                else None
            ),
            batch=config.detector.batch,
            max_frames=build.min_limit(camera.max_frames, max_frames),
        )
    except PipelineError as e:  # reported once, by the runner, from the CameraFinished reason
        source.close()
        outbox.put(CameraFinished(camera_id, 0, f"error: {e}"))
        return

    def report(status: CameraStatus) -> None:
        with contextlib.suppress(queue.Full):
            status_q.put_nowait(status)

    worker.run(outbox, inbox, should_stop=lambda: _ChildSignals.received or stop.is_set(), report=report)


def _reid_main(config, device, inbox, outbox, result_q, stop, parent):
    from pipeline.reid_stage import ReIDStage

    _child_setup(parent)
    try:
        embedder = build.build_embedder(config, device)
    except PipelineError as e:  # reported once, by the CLI, from the stage error
        result_q.put(("stage", "error", {"message": str(e)}))
        stop.set()
        outbox.put({"error": str(e)})
        _forward_without_crops(inbox, outbox)
        return
    outbox.put({"dim": embedder.dim})
    stage = ReIDStage(embedder, max_batch=config.reid.max_batch, max_wait_ms=config.reid.max_wait_ms)
    stage.run(inbox, outbox)
    result_q.put(("stage", "reid", stage.stats()))


def _forward_without_crops(inbox, outbox) -> None:
    from pipeline.messages import Crop

    while (message := inbox.get()) is not None:
        if not isinstance(message, Crop):
            outbox.put(message)
    outbox.put(None)


def _matcher_main(config, out_dir, fps, inbox, assign_qs, result_q, stop, parent):
    _child_setup(parent)
    hello = inbox.get()
    if "error" in hello:  # the re-ID model could not be built: the run stops, there is nothing to match
        _drain(inbox)
        return
    try:
        stats = _match(config, out_dir, fps, hello["dim"], inbox, assign_qs, result_q)
    except Exception as e:  # any failure, writing exports included, fails the run instead of passing silently
        log.debug("matcher failed", exc_info=True)
        message = str(e) if isinstance(e, PipelineError) else f"matcher: {type(e).__name__}: {e}"
        result_q.put(("stage", "error", {"message": message}))
        stop.set()
        _drain(inbox)
        return
    result_q.put(("stage", "matcher", stats))


def _match(config, out_dir, fps, dim, inbox, assign_qs, result_q) -> dict:
    """Link every track of the run, then write the exports; returns the matcher's stats."""
    from pipeline.atomic import write_json
    from pipeline.sinks.box_log import BoxLog
    from pipeline.sinks.events import EventLog
    from pipeline.sinks.exports import write_exports

    store = build.build_store(config, out_dir, dim=dim)
    if config.store.retention_days is not None:
        dropped = store.delete_older_than(time.time() - config.store.retention_days * 86_400)
        log.info(
            "retention: dropped %d prototype features older than %s days",
            dropped,
            config.store.retention_days,
        )
    session = store.begin_session()
    matcher = build.build_matcher(config, store, session)
    box_log = BoxLog(store, session, interval_s=config.store.commit_interval_s)
    events = EventLog(out_dir / "events.jsonl") if config.output.events else None
    finished: dict[str, CameraFinished] = {}
    seconds = 0.0
    try:
        while True:
            try:
                message = inbox.get(timeout=config.store.commit_interval_s)
            except queue.Empty:
                box_log.flush()
                matcher.commit_if_due()  # decisions made just before a quiet spell become durable too
                continue
            if message is None:
                break
            start = time.perf_counter()
            if isinstance(message, SourceState):
                if events is not None:
                    events.write({"kind": "camera_state", **dataclasses.asdict(message)})
                continue
            if isinstance(message, CameraFinished):
                finished[message.camera_id] = message
                result_q.put(("camera", message.camera_id, {"reason": message.reason, **message.stats}))
            if isinstance(message, Tracks):
                box_log.update(message)
            _dispatch(matcher.update(message), assign_qs, events)
            seconds += time.perf_counter() - start
        box_log.flush()
        _dispatch(matcher.finish(), assign_qs, events)
        store.commit()
        for camera_id, message in finished.items():
            fps.setdefault(camera_id, message.stats.get("fps", 0.0))
        frames = {c: m.frames for c, m in finished.items()}
        write_exports(store, session, _cameras_meta(config, fps, frames), out_dir)
        write_json(out_dir / "topology.json", matcher.topology())
        return {"seconds": round(seconds, 3), "identities": store.identity_count()}
    finally:
        store.close()
        if events is not None:
            events.close()


def _drain(inbox) -> None:
    """Read and drop messages until end of stream, so the stages upstream can finish."""
    while inbox.get() is not None:
        pass


def _dispatch(outputs: list, assign_qs: dict, events) -> None:
    for item in outputs:
        if isinstance(item, Assignment):
            try:
                assign_qs[item.camera_id].put_nowait(item)
            except queue.Full:
                log.debug("assignment queue of %s is full; its video labels lag", item.camera_id)
        elif isinstance(item, IdentityEvent) and events is not None:
            events.write(item)
