"""cameras.yaml -> validated, frozen RunConfig (dotted-path errors, did-you-mean, ${ENV}, --set overrides)."""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError


@dataclass(frozen=True)
class CameraConfig:
    """One camera: a video file, an rtsp:// or http(s):// URL, or a webcam index."""

    id: str
    source: str | int
    fps: float | None = None  # processing cap; None processes every frame
    transport: Literal["tcp", "udp"] = "tcp"  # RTP transport of rtsp:// sources
    frame_policy: Literal["auto", "all", "latest"] = "auto"  # auto: all for files, latest for streams
    start_frame: int = 1
    max_frames: int | None = None
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


_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def load(path: str | Path, overrides: list[str] = ()) -> RunConfig:
    """Read a cameras.yaml, apply `key=value` overrides, validate and return the frozen config."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None
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
    config = _build(RunConfig, raw, "")
    _check_semantics(config)
    return config


def apply_override(raw: dict, item: str) -> None:
    """Apply one `a.b=c` override in place; list items by index or camera id (`cameras.cam_a.fps=5`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    parts = key.replace("[", ".").replace("]", "").split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: i + 1]))
    last = parts[-1]
    parsed = yaml.safe_load(value) if value else None
    if isinstance(node, list):
        node[_list_index(node, last, key)] = parsed
    else:
        node[last] = parsed


def _child(node: Any, part: str, dotted: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, dotted)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {dotted}: not a mapping")
    return node.setdefault(part, {})


def _list_index(items: list, part: str, dotted: str) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("id") == part:
            return i
    raise ConfigError(f"--set {dotted}: no list item {part!r}")


def expand_env(value: Any, where: str) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string; an unset variable is an error naming the path."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _ENV.sub(substitute, value)


def _build(cls: type, raw: Any, where: str) -> Any:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_type_name(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    aliases = {"from": "source", "to": "target"} if cls is TransitionConfig else {}
    kwargs = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        path = f"{where}.{key}" if where else str(key)
        if name not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{path}: unknown key{hint}")
        kwargs[name] = _coerce(hints[name], value, path)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where + '.' if where else ''}{missing[0]}: required key is missing")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except ConfigError as e:
                errors.append(e)
        expected = " or ".join(_hint_name(a) for a in args)
        raise ConfigError(f"{path}: expected {expected}, got {_type_name(value)}")
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, args))}, got {value!r}{hint}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {_type_name(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_type_name(value)}")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{path}: expected {_hint_name(hint)}, got {_type_name(value)}")


def _hint_name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    return {type(None): "null", dict: "mapping", list: "list"}.get(type(value), type(value).__name__)


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
