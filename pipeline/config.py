"""cameras.yaml -> validated, frozen RunConfig (dotted-path errors, did-you-mean, ${ENV}, --set overrides)."""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from pipeline.errors import ConfigError
from pipeline.typed_config import apply_override, build, expand_env, read_yaml


@dataclass(frozen=True)
class CameraConfig:
    """One camera: a video file, an rtsp:// or http(s):// URL, or a webcam index."""

    id: str
    source: str | int
    fps: float | None = None  # processing cap; None processes every frame
    transport: Literal["tcp", "udp"] = "tcp"  # RTP transport of rtsp:// sources
    frame_policy: Literal["auto", "all", "latest"] = "auto"  # auto: all for files, latest for streams
    start_frame: int = 1
    max_frames: int | None = None  # files: frames read; streams: frames processed
    loop: bool = False  # files: start again at the end (soak tests, demos)
    time_offset_s: float = 0.0  # files: added to frame times, to place several files on one clock
    detections: str | None = None  # MOTChallenge det.txt for the `mot` detector
    reconnect: bool = True
    max_retries: int | None = None  # None: retry forever
    read_timeout_s: float = 5.0


@dataclass(frozen=True)
class DetectorConfig:
    name: Literal["yolo", "hog", "mot"] = "yolo"
    weights: str | None = None
    confidence: float = 0.25
    iou: float = 0.7
    imgsz: int = 640
    batch: int = 1  # frames per detector call


@dataclass(frozen=True)
class TrackerConfig:
    method: Literal["bytetrack", "botsort"] = "bytetrack"
    params: dict[str, Any] = field(default_factory=dict)  # ultralytics tracker settings


@dataclass(frozen=True)
class SamplerConfig:
    min_height: int = 64
    min_confidence: float = 0.4
    every_k: int = 5
    max_per_track: int = 16
    edge_margin: int = 4
    max_overlap: float = 0.3


@dataclass(frozen=True)
class ReIDConfig:
    embedder: Literal["onnx", "vpm"] = "onnx"
    weights: str | None = None  # onnx model, or a VPM-Net checkpoint
    model: str = "vpm_vit_b16"  # vpm only
    pretrained: str | None = None  # vpm only: an open_clip tag
    input_size: tuple[int, int] = (256, 128)
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406)
    std: tuple[float, float, float] = (0.229, 0.224, 0.225)
    channel_order: Literal["rgb", "bgr"] = "rgb"
    scale: float = 1 / 255
    max_batch: int = 32
    max_wait_ms: float = 20.0


@dataclass(frozen=True)
class MatcherConfig:
    threshold: float = 0.85
    min_embeddings: int = 3
    revise_every: int = 4
    top_k: int = 20


@dataclass(frozen=True)
class TransitionConfig:
    """People walking from camera `source` reach camera `target` after min_s..max_s seconds."""

    config_aliases: ClassVar[tuple[tuple[str, str], ...]] = (("from", "source"), ("to", "target"))

    source: str
    target: str
    min_s: float = 0.0
    max_s: float = 60.0


@dataclass(frozen=True)
class TopologyConfig:
    overlaps: tuple[tuple[str, str], ...] = ()  # camera pairs whose views overlap
    transitions: tuple[TransitionConfig, ...] = ()


@dataclass(frozen=True)
class StoreConfig:
    path: str | None = None  # None: OUT/store
    index: Literal["auto", "flat", "hnsw"] = "auto"
    approximate_threshold: int = 50_000
    max_prototypes: int = 8
    retention_days: float | None = None


@dataclass(frozen=True)
class OutputConfig:
    video: bool = True
    container: Literal["avi", "mp4", "mkv"] = "avi"  # avi and mkv stay readable if the run is killed
    codec: str = "mp4v"
    trail: int = 20  # trail length in frames
    events: bool = True


@dataclass(frozen=True)
class RunnerConfig:
    queue_size: int = 64
    progress: bool = True
    progress_interval_s: float = 2.0


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
    """Read a cameras.yaml, apply `key=value` overrides, validate and return the frozen config."""
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    for item in overrides:
        apply_override(raw, item)
    raw = expand_env(raw, "")
    try:
        return from_dict(raw)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None


def from_dict(raw: dict) -> RunConfig:
    """Validate a plain mapping into a RunConfig."""
    config = build(RunConfig, raw)
    _check_semantics(config)
    return config


def _check_semantics(config: RunConfig) -> None:
    if not config.cameras:
        raise ConfigError("cameras: at least one camera is required")
    seen: dict[str, int] = {}
    for i, camera in enumerate(config.cameras):
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", camera.id):
            raise ConfigError(f"cameras[{i}].id: {camera.id!r} may use only letters, digits, '_', '-', '.'")
        if camera.id in seen:
            raise ConfigError(
                f"cameras[{i}].id: duplicate camera id {camera.id!r} (also cameras[{seen[camera.id]}])"
            )
        seen[camera.id] = i
        if camera.fps is not None and camera.fps <= 0:
            raise ConfigError(f"cameras[{i}].fps: must be > 0, got {camera.fps}")
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


def to_dict(config: RunConfig) -> dict:
    """The resolved config as plain data, with credentials in URLs redacted."""
    from pipeline.sources.urls import redact_url

    data = dataclasses.asdict(config)
    for camera in data["cameras"]:
        if isinstance(camera["source"], str):
            camera["source"] = redact_url(camera["source"])
    return data
