"""The matcher's side of every runtime: the store, the box log and the event log around the Matcher."""

from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import cv2

from pipeline import build
from pipeline.config import RunConfig
from pipeline.messages import (
    Assignment,
    CameraFinished,
    Embedding,
    IdentityEvent,
    SourceState,
    TrackEnded,
    Tracks,
)
from pipeline.runtime.results import cameras_meta
from pipeline.store import EmbeddingStore

log = logging.getLogger(__name__)

# A run's messages kept for re-solving it in one order at its end, at most (about 100 MB of 512-d features)
MAX_KEPT_EMBEDDINGS = 50_000


class MatchSession:
    """Owns one run's identity store session: feeds the Matcher, logs boxes and events, writes the exports.

    `update(message)` takes what cameras and the re-ID stage send (Tracks, Embedding, TrackEnded,
    CameraFinished, SourceState) and returns the Assignments for the cameras' videos; `idle()` makes
    recent decisions durable in a quiet spell; `finish()` decides what is left and writes the exports.
    """

    def __init__(self, config: RunConfig, out_dir: Path, fps: dict[str, float], dim: int) -> None:
        from pipeline.sinks.box_log import BoxLog
        from pipeline.sinks.events import EventLog

        self.config = config
        self.out_dir = out_dir
        self.fps = dict(fps)
        self.store = build.build_store(config, out_dir, dim=dim)
        if config.store.retention_days is not None:
            dropped = self.store.delete_older_than(time.time() - config.store.retention_days * 86_400)
            log.info(
                "retention: dropped %d prototype features older than %s days",
                dropped,
                config.store.retention_days,
            )
        self.dim = dim
        # on a store of its own, the run is re-solved at its end from its messages in one fixed order
        fresh = config.matcher.refine and self.store.identity_count() == 0
        self.kept = MessageOrder() if fresh else None
        self.session = self.store.begin_session()
        self.matcher = build.build_matcher(config, self.store, self.session)
        self.box_log = BoxLog(self.store, self.session, interval_s=config.store.commit_interval_s)
        self.events = EventLog(out_dir / "events.jsonl") if config.output.events else None
        self.finished: dict[str, CameraFinished] = {}
        self.last_frame: dict[str, int] = {}  # per camera, the newest frame whose tracks arrived
        self.seconds = 0.0

    def update(self, message) -> list[Assignment]:
        start = time.perf_counter()
        if isinstance(message, SourceState):
            if self.events is not None:
                self.events.write({"kind": "camera_state", **dataclasses.asdict(message)})
            return []
        if isinstance(message, CameraFinished):
            self.finished[message.camera_id] = message
        if self.kept is not None and not self.kept.keep(message):
            log.info("over %d embeddings: the run keeps its live order for its end", MAX_KEPT_EMBEDDINGS)
            self.kept = None
        if isinstance(message, Tracks):
            self.box_log.update(message)
            self.last_frame[message.camera_id] = max(
                self.last_frame.get(message.camera_id, 0), message.frame_index
            )
        assignments = self._dispatch(self.matcher.update(message))
        self.seconds += time.perf_counter() - start
        return assignments

    def idle(self) -> None:
        """Nothing arrived for a while: decisions made just before become durable too."""
        self.box_log.flush()
        self.matcher.commit_if_due()

    def finish(self) -> dict:
        """Decide what is left, write the exports and topology.json (also beside the store); returns stats."""
        from pipeline.sinks.exports import write_exports
        from pipeline.topology import write_topology

        self.box_log.flush()
        # a run re-solved in one order skips the live refinement, whose identities it would replace
        self._dispatch(self.matcher.finish(refine=self.kept is None))
        topology = self._resolve_in_order() if self.kept is not None else self.matcher.topology()
        self.store.commit()
        for camera_id, message in self.finished.items():
            self.fps.setdefault(camera_id, message.stats.get("fps", 0.0))
        frames = {c: m.frames for c, m in self.finished.items()}
        write_exports(self.store, self.session, cameras_meta(self.config, self.fps, frames), self.out_dir)
        write_topology(topology, self.out_dir, build.store_path(self.config, self.out_dir))
        self._draw_topology(topology)
        return {"seconds": round(self.seconds, 3), "identities": self.store.identity_count()}

    def _resolve_in_order(self) -> dict:
        """Decide the run once more from its messages in one fixed order (`MessageOrder`), on a store of
        its own, and give the live matcher's tracklets those identities; returns what that pass learned.

        Live decisions depend on the order in which the cameras' and the re-ID stage's messages happen
        to arrive, and the refinement starts from them; in one fixed order a run decides the same
        every time.
        """
        assert self.kept is not None
        shadow_store = EmbeddingStore(None, dim=self.dim)
        try:
            session = shadow_store.begin_session()
            shadow = build.build_matcher(self.config, shadow_store, session, seed_store=self.store.path)
            for message in self.kept.messages():
                shadow.update(message)
            shadow.finish()
            labels = {(t.camera, t.track_id): t.global_id for t in shadow_store.tracklets(session=session)}
            self._dispatch(self.matcher.adopt(labels))
            return shadow.topology()
        finally:
            shadow_store.close()

    def _draw_topology(self, topology: dict) -> None:
        """OUT/topology/<a>__<b>.png per camera pair with something learned; a failure costs only those."""
        from pipeline.sinks.topology_figures import camera_frames, write_topology_figures

        videos = {c.id: self._video_of(c) for c in self.config.cameras}
        try:
            write_topology_figures(topology, camera_frames(videos), self.out_dir / "topology")
        except (OSError, ValueError, cv2.error) as e:
            log.warning("topology figures not written: %s", e)

    def _video_of(self, camera) -> Path | None:
        """A video to take a frame of `camera` from: its annotated output, else its source file."""
        from pipeline.worker import video_path

        if self.config.output.video:
            return video_path(self.out_dir, camera.id, self.config.output.container)
        source = Path(camera.source) if isinstance(camera.source, str) else None
        return source if source is not None and source.is_file() else None

    def close(self) -> None:
        self.store.close()
        if self.events is not None:
            self.events.close()

    def _dispatch(self, outputs: list) -> list[Assignment]:
        assignments = []
        for item in outputs:
            if isinstance(item, Assignment):
                assignments.append(item)
            elif isinstance(item, IdentityEvent) and self.events is not None:
                self.events.write(item)
        return assignments


class MessageOrder:
    """A run's matcher messages, to be replayed in one order however they arrived.

    Each camera's own messages (Tracks, TrackEnded, CameraFinished) keep their order and are placed at
    the time of that camera's latest frame; an embedding is placed right after the frame its crop was
    taken from, by track id. The cameras of one moment follow one another by camera id.
    """

    def __init__(self) -> None:
        self._entries: list[tuple[tuple[float, str, int, int], object]] = []
        self._clock: dict[str, float] = {}  # per camera, the time of its latest Tracks
        self._sent: dict[str, int] = {}  # per camera, how many of its own messages came
        self._embeddings = 0

    def keep(self, message) -> bool:
        """Keep `message` if the matcher takes it; False once more than MAX_KEPT_EMBEDDINGS came."""
        camera = getattr(message, "camera_id", "")
        if isinstance(message, Embedding):
            self._embeddings += 1
            if self._embeddings > MAX_KEPT_EMBEDDINGS:
                return False
            key = (message.timestamp, camera, 1, message.track_id)
        elif isinstance(message, Tracks | TrackEnded | CameraFinished):
            if isinstance(message, Tracks):
                self._clock[camera] = message.timestamp
            self._sent[camera] = self._sent.get(camera, 0) + 1
            rank = 0 if isinstance(message, Tracks) else 2
            key = (self._clock.get(camera, 0.0), camera, rank, self._sent[camera])
        else:
            return True
        self._entries.append((key, message))
        return True

    def messages(self) -> list:
        return [message for _, message in sorted(self._entries, key=lambda entry: entry[0])]
