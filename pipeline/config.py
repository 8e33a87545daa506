"""cameras.yaml -> validated, frozen RunConfig (dotted-path errors, did-you-mean, ${ENV}, --set overrides)."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pipeline.errors import ConfigError, PipelineError
from pipeline.ids import check_id
from pipeline.typed_config import apply_override, bounded, build, expand_env, read_yaml

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")  # rtsp://, file://, and typos such as rtsp:/


@dataclass(frozen=True)
class CameraConfig:
    """One camera: a video file, an rtsp:// or http(s):// URL, or a webcam index."""

    id: str
    source: str | int
    fps: float | None = bounded(None, gt=0)  # processing cap; None processes every frame
    transport: Literal["tcp", "udp"] = "tcp"  # RTP transport of rtsp:// sources
    frame_policy: Literal["auto", "all", "latest"] = "auto"  # auto: all for files, latest for streams
    start_frame: int = bounded(1, ge=1)
    max_frames: int | None = bounded(None, ge=1)  # files: frames read; streams: frames processed
    loop: bool = False  # files: start again at the end (soak tests, demos)
    time_offset_s: float = 0.0  # files: added to frame times, to place several files on one clock
    detections: str | None = None  # MOTChallenge det.txt for the `mot` detector
    reconnect: bool = True
    max_retries: int | None = bounded(None, ge=0)  # None: retry forever
    read_timeout_s: float = bounded(5.0, gt=0, le=86_400)  # the capture takes it in int milliseconds


@dataclass(frozen=True)
class DetectorConfig:
    config_aliases: ClassVar[tuple[tuple[str, str], ...]] = (("batch", "max_batch"),)

    name: Literal["yolo", "hog", "mot"] = "yolo"
    weights: str | None = None
    confidence: float = bounded(0.25, ge=0, le=1)
    iou: float = bounded(0.7, ge=0, le=1)
    imgsz: int = bounded(640, gt=0, multiple_of=32)  # YOLO strides divide it
    # Also detect in tiles x tiles overlapping parts of each frame (1: the whole frame only), for people
    # too small at imgsz, such as far-off people in 1080p views; each frame then costs 1 + tiles² inputs.
    tiles: int = bounded(1, ge=1, le=4)
    # Frames of all cameras batched per detector call, held at most max_wait_ms (`batch` is the old name).
    max_batch: int = bounded(4, ge=1)
    max_wait_ms: float = bounded(10.0, ge=0)


@dataclass(frozen=True)
class TrackerConfig:
    # BoT-SORT without its ReID branch and camera-motion compensation: ByteTrack's two-stage matching with
    # a Kalman filter over box width and height, which linked better on the accuracy suite (README)
    method: Literal["bytetrack", "botsort"] = "botsort"
    # ultralytics tracker settings, checked against pipeline.tracking.TRACKER_PARAMS[method]
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SamplerConfig:
    min_height: int = bounded(64, ge=0)
    min_confidence: float = bounded(0.4, ge=0, le=1)
    every_k: int = bounded(5, ge=1)
    max_per_track: int | None = bounded(None, ge=1)  # None: crops all along a track, every_k apart
    edge_margin: int = bounded(4, ge=0)
    max_overlap: float = bounded(0.3, ge=0, le=1)


@dataclass(frozen=True)
class ReIDConfig:
    embedder: Literal["onnx", "vpm"] = "onnx"
    weights: str | None = None  # onnx model, or a VPM-Net checkpoint
    model: str = "vpm_vit_b16"  # vpm only
    pretrained: str | None = None  # vpm only: an open_clip tag
    input_size: tuple[int, int] = bounded((256, 128), gt=0)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = bounded((0.229, 0.224, 0.225), nonzero=True)
    channel_order: Literal["rgb", "bgr"] = "rgb"
    scale: float = bounded(1 / 255, gt=0)
    max_batch: int = bounded(32, ge=1)
    max_wait_ms: float = bounded(20.0, ge=0)


@dataclass(frozen=True)
class MatcherConfig:
    threshold: float | None = bounded(None, ge=-1, le=1)  # a cosine similarity; None: calibrated per site
    min_embeddings: int = bounded(3, ge=1)
    revise_every: int = bounded(4, ge=1)
    top_k: int = bounded(20, ge=1)
    rejoin_max_gap_s: float = bounded(3.0, ge=0)  # longer gaps, one view or two overlapping: seen elsewhere
    refine: bool = True  # re-solve the run's identities with all evidence when it ends
    # also every this many seconds of video (streams that never end); null: only at the end
    refine_interval_s: float | None = bounded(300.0, gt=0)


@dataclass(frozen=True)
class TransitionConfig:
    """People walking from camera `source` reach camera `target` after min_s..max_s seconds."""

    config_aliases: ClassVar[tuple[tuple[str, str], ...]] = (("from", "source"), ("to", "target"))

    source: str
    target: str
    min_s: float = bounded(0.0, ge=0)
    max_s: float = bounded(60.0, ge=0)


@dataclass(frozen=True)
class TopologyConfig:
    overlaps: tuple[tuple[str, str], ...] = ()  # camera pairs whose views overlap
    transitions: tuple[TransitionConfig, ...] = ()
    learned: str | None = None  # a topology.json an earlier run wrote: the matcher starts from it


@dataclass(frozen=True)
class StoreConfig:
    path: str | None = None  # None: OUT/store
    index: Literal["auto", "flat", "ivf", "hnsw"] = "auto"
    approximate_threshold: int = bounded(50_000, ge=0)
    max_prototypes: int = bounded(8, ge=1, le=100_000)
    retention_days: float | None = bounded(None, ge=0)
    # The store commits at least this often: what kill -9 can lose. A queue timeout, hence the cap.
    commit_interval_s: float = bounded(1.0, gt=0, le=3_600)


@dataclass(frozen=True)
class OutputConfig:
    video: bool = True
    container: Literal["avi", "mp4", "mkv"] = "avi"  # avi and mkv stay readable if the run is killed
    codec: str = "mp4v"  # FourCC; load() checks that OpenCV can write it into the container
    trail: int = bounded(20, ge=0)  # trail length in frames
    events: bool = True
    thumbnails: int = bounded(3, ge=0, le=32)  # best crops kept per tracklet; 0: none
    thumbnail_size: int = bounded(128, ge=16, le=1024)  # longer side, pixels
    report: bool = True  # OUT/report.html


@dataclass(frozen=True)
class RunnerConfig:
    queue_size: int = bounded(64, ge=1, le=100_000)  # multiprocessing queues cap their size below 2**31
    progress: bool = True
    progress_interval_s: float = bounded(2.0, gt=0)
    # One detector process serves every camera (true), or each camera worker loads its own (false).
    shared_detector: bool = True
    engine: Literal["local", "ray"] = "local"  # ray: the stages as Ray actors (the [ray] extra)
    address: str | None = None  # ray: a cluster to join ("ray://host:10001", "auto"); null starts a local one


@dataclass(frozen=True)
class RunConfig:
    cameras: tuple[CameraConfig, ...]
    device: Literal["auto", "cpu", "cuda"] = "auto"
    output: OutputConfig = field(default_factory=OutputConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    tracker: TrackerConfig = field(default_factory=TrackerConfig)
    sampler: SamplerConfig = field(default_factory=SamplerConfig)
    reid: ReIDConfig = field(default_factory=ReIDConfig)
    matcher: MatcherConfig = field(default_factory=MatcherConfig)
    topology: TopologyConfig = field(default_factory=TopologyConfig)
    store: StoreConfig = field(default_factory=StoreConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def camera(self, camera_id: str) -> CameraConfig:
        return next(c for c in self.cameras if c.id == camera_id)


def load(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a cameras.yaml, apply `key=value` overrides, validate and return the frozen config.

    Relative file paths (sources, detections, weights, store.path), from the file or from `overrides`,
    resolve against the config file's folder; `~` is the home folder.
    """
    raw = read_yaml(path)
    if raw is None:
        raise ConfigError(f"{path}: the config is empty")
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {_type_name(raw)}")
    for item in overrides:
        apply_override(raw, item)
    try:
        return from_dict(expand_env(raw, ""), base_dir=Path(os.path.abspath(path)).parent)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def from_dict(raw: dict, base_dir: Path | None = None) -> RunConfig:
    """Validate a plain mapping into a RunConfig; relative paths resolve against `base_dir` where given."""
    config = _resolve_paths(build(RunConfig, raw), base_dir)
    _check_semantics(config)
    _check_files(config)
    if config.output.video:
        _check_codec(config.output.codec, config.output.container)
    return config


def _resolve_paths(config: RunConfig, base_dir: Path | None) -> RunConfig:
    """Expand `~` in every file path and, given `base_dir`, make relative ones absolute against it."""

    def resolve(value: str | None) -> str | None:
        if not value:
            return value
        value = os.path.expanduser(value)  # unlike Path.expanduser, leaves an unknown ~user as it is
        return str(base_dir / value) if base_dir is not None and not os.path.isabs(value) else value

    def resolve_source(source: str | int) -> str | int:
        # URLs (and mistyped ones: rtsp:/...), webcam indices and "0" stay as they are.
        if isinstance(source, int) or source.strip().isdecimal() or _SCHEME.match(source):
            return source
        return resolve(source)

    detector_weights = config.detector.weights
    if detector_weights:
        expanded = resolve(detector_weights)
        # A bare name such as yolov8n.pt that is not beside the config is ultralytics' to find or fetch.
        if os.sep in os.path.expanduser(detector_weights) or os.path.exists(expanded):
            detector_weights = expanded
    return dataclasses.replace(
        config,
        cameras=tuple(
            dataclasses.replace(c, source=resolve_source(c.source), detections=resolve(c.detections))
            for c in config.cameras
        ),
        detector=dataclasses.replace(config.detector, weights=detector_weights),
        reid=dataclasses.replace(config.reid, weights=resolve(config.reid.weights)),
        store=dataclasses.replace(config.store, path=resolve(config.store.path)),
        topology=dataclasses.replace(config.topology, learned=resolve(config.topology.learned)),
    )


def _check_semantics(config: RunConfig) -> None:
    """The checks that span fields: camera ids, topology, what each detector and embedder needs."""
    if not config.cameras:
        raise ConfigError("cameras: at least one camera is required")
    seen: dict[str, int] = {}
    for i, camera in enumerate(config.cameras):
        check_id(camera.id, f"cameras[{i}].id")  # ids name files: the rule every tool shares
        if camera.id in seen:
            raise ConfigError(
                f"cameras[{i}].id: duplicate camera id {camera.id!r} (also cameras[{seen[camera.id]}])"
            )
        seen[camera.id] = i
        if isinstance(camera.source, int) and camera.source < 0:
            raise ConfigError(f"cameras[{i}].source: a webcam index must be >= 0, got {camera.source}")
        if isinstance(camera.source, str) and not camera.source.strip():
            raise ConfigError(
                f"cameras[{i}].source: empty; give a video file, a stream URL or a webcam index"
            )
    ids = set(seen)
    for i, pair in enumerate(config.topology.overlaps):
        for camera_id in pair:
            if camera_id not in ids:
                raise ConfigError(f"topology.overlaps[{i}]: unknown camera {camera_id!r}")
    for i, transition in enumerate(config.topology.transitions):
        for camera_id in (transition.source, transition.target):
            if camera_id not in ids:
                raise ConfigError(f"topology.transitions[{i}]: unknown camera {camera_id!r}")
        if transition.min_s > transition.max_s:
            raise ConfigError(f"topology.transitions[{i}]: min_s must not exceed max_s")
    if config.detector.name == "yolo" and not config.detector.weights:
        raise ConfigError("detector.weights: the yolo detector needs a weights file (.pt, .onnx, .engine)")
    if config.reid.embedder == "onnx" and not config.reid.weights:
        raise ConfigError("reid.weights: the onnx embedder needs a model file")
    if config.detector.name == "mot":
        for i, camera in enumerate(config.cameras):
            if not camera.detections:
                raise ConfigError(f"cameras[{i}].detections: the mot detector needs a det.txt per camera")
    _check_tracker_params(config.tracker)
    codec = config.output.codec
    if len(codec) != 4 or not codec.isascii() or not codec.isprintable():
        raise ConfigError(
            f"output.codec: a FourCC is exactly 4 ASCII characters (such as mp4v), got {codec!r}"
        )


def _check_tracker_params(tracker: TrackerConfig) -> None:
    """`tracker.params` against the settings of the chosen ultralytics tracker: names, types, ranges."""
    from pipeline.tracking import TRACKER_PARAMS  # numpy only; ultralytics loads when a tracker is built

    build(TRACKER_PARAMS[tracker.method], tracker.params, "tracker.params")


def _check_files(config: RunConfig) -> None:
    """Files the run reads or writes that can be checked without opening a stream or a model."""
    if config.detector.name == "mot":
        for i, camera in enumerate(config.cameras):
            if not os.path.isfile(camera.detections):
                raise ConfigError(f"cameras[{i}].detections: no such file {camera.detections}")
    if config.store.path:
        _check_writable_file(Path(config.store.path), "store.path")
    if config.topology.learned:
        from pipeline.topology import read_topology

        try:
            read_topology(Path(config.topology.learned))
        except PipelineError as e:
            raise ConfigError(f"topology.learned: {e}") from None


def _check_writable_file(path: Path, where: str) -> None:
    """`path` is a file that exists or can be created (its first existing ancestor a writable folder)."""
    try:
        if path.is_dir():
            raise ConfigError(f"{where}: {path} is a folder; give the SQLite file to keep the store in")
        existing = path if path.exists() else next(p for p in path.parents if p.exists())
        if existing is not path and not existing.is_dir():
            raise ConfigError(f"{where}: {existing} is not a folder, so {path} cannot be created")
        if not os.access(existing, os.W_OK):
            raise ConfigError(f"{where}: {existing} is not writable")
    except OSError as e:  # a name too long, a loop of links
        raise ConfigError(f"{where}: cannot use {path} ({e.strerror})") from None


@functools.lru_cache(maxsize=8)
def _check_codec(codec: str, container: str) -> None:
    """Open an OpenCV video writer with `codec` on a scratch file: a codec the build lacks fails here."""
    import tempfile

    import cv2

    with tempfile.TemporaryDirectory() as scratch, _stderr_silenced():
        writer = cv2.VideoWriter(
            os.path.join(scratch, f"probe.{container}"), cv2.VideoWriter_fourcc(*codec), 25.0, (64, 64)
        )
        opened = writer.isOpened()
        writer.release()
    if not opened:
        raise ConfigError(
            f"output.codec: this OpenCV build cannot write {codec!r} into .{container} files; "
            "mp4v and MJPG work in avi, mp4v in mp4 and mkv"
        )


@contextlib.contextmanager
def _stderr_silenced() -> Iterator[None]:
    """Point file descriptor 2 at /dev/null: FFmpeg and OpenCV print their own complaints there."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def to_dict(config: RunConfig) -> dict:
    """The resolved config as plain data, with credentials in URLs redacted."""
    from pipeline.sources.urls import redact_url

    data = dataclasses.asdict(config)
    for camera in data["cameras"]:
        if isinstance(camera["source"], str):
            camera["source"] = redact_url(camera["source"])
    return data


def _type_name(value: Any) -> str:
    return {dict: "mapping", list: "list"}.get(type(value), type(value).__name__)
