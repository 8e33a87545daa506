"""Messages between stages: frozen, picklable dataclasses with shapes checked at construction."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def _check_array(name: str, value: np.ndarray, shape: tuple[int | None, ...], dtype: type) -> None:
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a np.ndarray, but got {type(value).__name__}")
    if value.ndim != len(shape) or any(s is not None and s != v for s, v in zip(shape, value.shape)):
        expected = "(" + ", ".join("_" if s is None else str(s) for s in shape) + ")"
        raise ValueError(f"{name} must have shape {expected}, but got shape {value.shape}")
    if value.dtype != dtype:
        raise ValueError(f"{name} must have dtype {np.dtype(dtype)}, but got {value.dtype}")


@dataclass(frozen=True)
class Frame:
    """One decoded frame of one camera; `index` is 1-based, `timestamp` in seconds."""

    camera_id: str
    index: int
    timestamp: float
    image: np.ndarray  # (H, W, 3) uint8 BGR

    def __post_init__(self) -> None:
        _check_array("image", self.image, (None, None, 3), np.uint8)
        if self.index < 1:
            raise ValueError(f"frame index must be >= 1, but got {self.index}")


@dataclass(frozen=True)
class Detections:
    """Columnar detections of one frame: boxes in pixels (x1, y1, x2, y2)."""

    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    class_id: np.ndarray  # (N,) int32

    def __post_init__(self) -> None:
        _check_array("xyxy", self.xyxy, (None, 4), np.float32)
        n = len(self.xyxy)
        _check_array("confidence", self.confidence, (n,), np.float32)
        _check_array("class_id", self.class_id, (n,), np.int32)

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def from_arrays(cls, xyxy, confidence, class_id=None) -> Detections:
        """Build from array-likes of any numeric dtype; class_id defaults to 0 (person)."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        confidence = np.asarray(confidence, np.float32).reshape(-1)
        class_id = np.zeros(len(xyxy), np.int32) if class_id is None else np.asarray(class_id, np.int32)
        return cls(xyxy, confidence, class_id.reshape(-1))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Detections:
        return Detections(self.xyxy[index], self.confidence[index], self.class_id[index])


@dataclass(frozen=True)
class Tracks:
    """The confirmed in-camera tracks of one frame: columnar boxes with local track ids."""

    camera_id: str
    frame_index: int
    timestamp: float
    xyxy: np.ndarray  # (N, 4) float32
    confidence: np.ndarray  # (N,) float32
    track_id: np.ndarray  # (N,) int64, unique per camera per run
    image_size: tuple[int, int] | None = None  # (width, height) of the frame, where known

    def __post_init__(self) -> None:
        _check_array("xyxy", self.xyxy, (None, 4), np.float32)
        n = len(self.xyxy)
        _check_array("confidence", self.confidence, (n,), np.float32)
        _check_array("track_id", self.track_id, (n,), np.int64)

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: np.ndarray | slice) -> Tracks:
        return Tracks(
            self.camera_id,
            self.frame_index,
            self.timestamp,
            self.xyxy[index],
            self.confidence[index],
            self.track_id[index],
            self.image_size,
        )


@dataclass(frozen=True)
class TrackEnded:
    """A local track the in-camera tracker has dropped; it will not be updated again."""

    camera_id: str
    track_id: int
    frame_index: int
    timestamp: float


@dataclass(frozen=True)
class Crop:
    """A person crop chosen for re-ID, with the quality score the sampler gave it."""

    camera_id: str
    track_id: int
    frame_index: int
    timestamp: float
    image: np.ndarray  # (h, w, 3) uint8 BGR
    quality: float

    def __post_init__(self) -> None:
        _check_array("image", self.image, (None, None, 3), np.uint8)


@dataclass(frozen=True)
class Embedding:
    """The L2-normalised re-ID feature of one crop."""

    camera_id: str
    track_id: int
    frame_index: int
    timestamp: float
    vector: np.ndarray  # (D,) float32, unit norm
    quality: float

    def __post_init__(self) -> None:
        _check_array("vector", self.vector, (None,), np.float32)


@dataclass(frozen=True)
class Assignment:
    """The matcher's current global identity for a local track; may be revised while the track is open."""

    camera_id: str
    track_id: int
    global_id: int
    score: float  # cosine similarity that decided it; 0.0 for a new identity
    revised: bool = False


@dataclass(frozen=True)
class CameraFinished:
    """A camera's source has ended (end of file, failure or stop); its open tracks are closed."""

    camera_id: str
    frames: int
    reason: str = "end"
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class IdentityEvent:
    """Something that happened to an identity, as it happened; one line of events.jsonl.

    `kind` is "appeared" (a new identity), "matched" (a track linked to a known identity),
    "revised" (an open track moved to another identity) or "left" (a track of the identity ended).
    """

    kind: str
    global_id: int
    camera_id: str
    track_id: int
    frame_index: int
    timestamp: float
    score: float = 0.0


@dataclass(frozen=True)
class SourceState:
    """A camera source changed state (connecting, live, retrying, failed, ended); logged to events.jsonl."""

    camera_id: str
    state: str
    timestamp: float
    detail: str = ""


@dataclass(frozen=True)
class CameraStatus:
    """A camera's progress report for the display: counts so far and the source's state."""

    camera_id: str
    frames: int
    fps: float
    state: str
    dropped: int
    failed: int


@dataclass(frozen=True)
class CameraStarted:
    """A camera's source is open; the detector stage builds the camera's tracker for its frame rate."""

    camera_id: str
    fps: float


@dataclass(frozen=True)
class FramesEnded:
    """A camera sends no more frames: its open tracks end at `frame_index` (the last frame it sent)."""

    camera_id: str
    frame_index: int
    timestamp: float


@dataclass(frozen=True)
class StageReady:
    """A stage has built its model; `dim` is the re-ID feature size where the stage embeds."""

    stage: str
    dim: int | None = None


@dataclass(frozen=True)
class StageFailed:
    """A stage could not do its work; `message` says why, in one line for the user."""

    stage: str
    message: str


@dataclass(frozen=True)
class StageStats:
    """What a stage did, for run.json: counters and seconds per step."""

    stage: str
    stats: dict = field(default_factory=dict)


@dataclass(frozen=True)
class EndOfStream:
    """Nothing more will come on this channel from `sender`."""

    sender: str = ""
