"""In-camera tracking: Ultralytics' ByteTrack / BoT-SORT fed with our Detections, local ids per camera."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Literal

import numpy as np

from pipeline.messages import Detections, Frame, TrackEnded, Tracks
from pipeline.typed_config import bounded

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ByteTrackParams:
    """The settings of ultralytics' bytetrack.yaml, with its defaults (but new_track_thresh) and the values
    each allows."""

    track_high_thresh: float = bounded(0.25, ge=0, le=1)  # first-stage match: detections at least this sure
    track_low_thresh: float = bounded(0.1, ge=0, le=1)  # second stage: low-score detections down to this
    # An unmatched detection this sure starts a track. Ultralytics ships 0.25; at 0.5 fewer doubtful boxes
    # start tracks that then steal a person's id, which raised the raw tracker's IDF1 on every set of the
    # accuracy suite (benchmarks/replay_suite.py: PETS full view 0.715 -> 0.738, TUD-Campus 0.56 -> 0.68).
    new_track_thresh: float = bounded(0.5, ge=0, le=1)
    track_buffer: int = bounded(30, ge=1)  # frames (at 30 fps) a lost track is kept
    match_thresh: float = bounded(0.8, ge=0, le=1)  # association cost (1 - IoU) accepted
    fuse_score: bool = True  # fuse detection scores into the IoU cost


@dataclass(frozen=True)
class BotSortParams(ByteTrackParams):
    """botsort.yaml's settings, without its ReID branch (our ReIDStage links identities).

    Global motion compensation is off by default: our cameras are fixed, and GMC ("sparseOptFlow" in
    botsort.yaml) spends an optical-flow pass per frame to cancel camera motion they do not have. Pass
    gmc_method="sparseOptFlow" for moving ones.
    """

    gmc_method: Literal["none", "sparseOptFlow", "orb", "sift", "ecc"] = "none"
    proximity_thresh: float = bounded(0.5, ge=0, le=1)
    appearance_thresh: float = bounded(0.8, ge=0, le=1)


# The parameters each tracker method takes (`tracker.params` in cameras.yaml is validated against these).
TRACKER_PARAMS: dict[str, type[ByteTrackParams]] = {"bytetrack": ByteTrackParams, "botsort": BotSortParams}
TRACKER_DEFAULTS: dict[str, dict[str, object]] = {
    method: dataclasses.asdict(params()) for method, params in TRACKER_PARAMS.items()
}


class _UltralyticsBoxes:
    """Duck-typed stand-in for ultralytics' numpy Boxes: the attributes its trackers read, and indexing."""

    def __init__(self, xyxy: np.ndarray, conf: np.ndarray, cls: np.ndarray) -> None:
        self.xyxy = xyxy  # (N, 4) float32
        self.conf = conf  # (N,) float32
        self.cls = cls  # (N,) float32, as ultralytics stores classes

    @classmethod
    def from_detections(cls, detections: Detections) -> _UltralyticsBoxes:
        return cls(detections.xyxy, detections.confidence, detections.class_id.astype(np.float32))

    @property
    def xywh(self) -> np.ndarray:
        """Boxes as (centre x, centre y, width, height)."""
        wh = self.xyxy[:, 2:4] - self.xyxy[:, 0:2]
        return np.concatenate([self.xyxy[:, 0:2] + wh / 2, wh], axis=1)

    def __len__(self) -> int:
        return len(self.conf)

    def __getitem__(self, index) -> _UltralyticsBoxes:
        return _UltralyticsBoxes(self.xyxy[index], self.conf[index], self.cls[index])


class InCameraTracker:
    """Tracks people inside one camera and numbers its confirmed tracks 1, 2, 3 ... for this run.

    The method is BoT-SORT unless told otherwise. Defaults are Ultralytics' bytetrack.yaml / botsort.yaml
    values but new_track_thresh (see ByteTrackParams); BoT-SORT runs without ReID and without camera-motion
    compensation (see BotSortParams). `frame_rate` is the rate frames reach `update`, so `track_buffer`
    (frames at 30 fps, as in ByteTrack) keeps a lost track for the same time at any rate.
    """

    def __init__(self, camera_id: str, method: str = "botsort", frame_rate: float = 30, **tracker_params):
        if method not in TRACKER_DEFAULTS:
            raise ValueError(f"unknown tracker method {method!r}; choose from {', '.join(TRACKER_DEFAULTS)}")
        defaults = TRACKER_DEFAULTS[method]
        unknown = sorted(set(tracker_params) - set(defaults))
        if unknown:
            raise ValueError(
                f"unknown {method} tracker parameter(s) {', '.join(unknown)}; valid ones: {', '.join(defaults)}"
            )
        if frame_rate <= 0:
            raise ValueError(f"frame_rate must be > 0, but got {frame_rate}")
        self.camera_id = camera_id
        self.method = method
        self.frame_rate = frame_rate
        self.params = {**defaults, **tracker_params}
        self._tracker = self._build()
        self._local_ids: dict[object, int] = {}  # ultralytics track object -> our local id
        self._next_id = 1

    def _build(self):
        os.environ.setdefault("YOLO_AUTOINSTALL", "false")
        os.environ.setdefault("YOLO_OFFLINE", "true")
        from ultralytics.trackers import BOTSORT, BYTETracker

        tracker_cls = BYTETracker if self.method == "bytetrack" else BOTSORT
        args = SimpleNamespace(
            tracker_type=self.method, with_reid=False, model="auto", device="cpu", **self.params
        )
        if "frame_rate" in inspect.signature(tracker_cls.__init__).parameters:
            return tracker_cls(args, frame_rate=round(self.frame_rate))
        # Newer ultralytics counts track_buffer in frames; scale it as older releases did from frame_rate.
        args.track_buffer = max(int(self.frame_rate / 30.0 * self.params["track_buffer"]), 1)
        return tracker_cls(args)

    def update(self, detections: Detections, frame: Frame) -> tuple[Tracks, list[TrackEnded]]:
        """Advance one frame: the confirmed tracks this frame updated, and the tracks dropped at it."""
        if frame.camera_id != self.camera_id:
            raise ValueError(f"tracker of camera {self.camera_id} got a frame of camera {frame.camera_id}")
        self._tracker.update(_UltralyticsBoxes.from_detections(detections), frame.image)
        current = [t for t in self._tracker.tracked_stracks if t.is_activated]
        for track in current:
            if track not in self._local_ids:
                self._local_ids[track] = self._next_id
                self._next_id += 1
        ended = self._collect_ended(frame.index, frame.timestamp)
        ids = np.array([self._local_ids[t] for t in current], np.int64)
        order = np.argsort(ids, kind="stable")
        xyxy = np.array([t.xyxy for t in current], np.float32).reshape(-1, 4)[order]
        confidence = np.array([t.score for t in current], np.float32).reshape(-1)[order]
        height, width = frame.image.shape[:2]
        tracks = Tracks(
            self.camera_id, frame.index, frame.timestamp, xyxy, confidence, ids[order], (width, height)
        )
        return tracks, ended

    def _collect_ended(self, frame_index: int, timestamp: float) -> list[TrackEnded]:
        # A track ends when it leaves both the tracked and lost pools: removed after track_buffer frames
        # (removed_stracks), or merged away as a duplicate of an older track, which is never marked removed.
        alive = {*self._tracker.tracked_stracks, *self._tracker.lost_stracks}
        gone = sorted((local_id, track) for track, local_id in self._local_ids.items() if track not in alive)
        for _, track in gone:
            del self._local_ids[track]
        return [TrackEnded(self.camera_id, local_id, frame_index, timestamp) for local_id, _ in gone]

    def finish(self, frame_index: int, timestamp: float) -> list[TrackEnded]:
        """End every track still known at the end of the stream; later tracks get new, higher ids."""
        ended = [
            TrackEnded(self.camera_id, local_id, frame_index, timestamp)
            for local_id in sorted(self._local_ids.values())
        ]
        self._local_ids.clear()
        self._tracker = self._build()
        return ended

    def reset(self) -> None:
        """Forget all tracks and restart numbering at 1, as a fresh tracker."""
        self._local_ids.clear()
        self._next_id = 1
        self._tracker = self._build()

    @property
    def active_track_ids(self) -> list[int]:
        """Local ids of the tracks the tracker still holds (tracked or lost)."""
        return sorted(self._local_ids.values())
