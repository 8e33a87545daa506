"""Search a run's identities: by a photo (the run's own embedder), by a description (VPM-Net's text tower), by id.

Everything is read from the run's output folder: run.json says which re-ID model embedded the gallery and
where the identity store is; the store holds the identities, their tracklets and prototype features; the
thumbnails folder holds the tracklets' best crops.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.build import resolve_store_path
from pipeline.config import ReIDConfig
from pipeline.errors import PipelineError
from pipeline.store import EmbeddingStore, TrackletRecord
from pipeline.thumbnails import thumbnails_of
from pipeline.typed_config import build

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Appearance:
    """Where and when an identity was seen: one local track of one camera, with its thumbnails."""

    camera: str
    local_track_id: int
    first_frame: int
    last_frame: int
    start_time: float
    end_time: float
    thumbnails: tuple[str, ...]  # paths relative to the run's output folder, best first


@dataclass(frozen=True)
class Hit:
    """One identity found: its similarity to the query (None for a lookup by id) and its appearances."""

    global_id: int
    similarity: float | None
    appearances: tuple[Appearance, ...]

    @property
    def cameras(self) -> list[str]:
        return sorted({a.camera for a in self.appearances})

    @property
    def thumbnails(self) -> list[str]:
        """The identity's thumbnails, best crop of each appearance first."""
        rounds = [a.thumbnails for a in self.appearances]
        ordered = []
        for i in range(max(map(len, rounds), default=0)):
            ordered.extend(r[i] for r in rounds if i < len(r))
        return ordered

    def to_dict(self) -> dict:
        return {**asdict(self), "cameras": self.cameras}


def parse_time(text: str) -> float:
    """A time as seconds (from the start of a file source, or Unix time) or an ISO 8601 date and time."""
    try:
        return float(text)
    except ValueError:
        pass
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise PipelineError(
            f"time {text!r}: expected seconds (12.5, or Unix time for streams) or an ISO date and time "
            "(2026-01-31T10:00)"
        ) from None
    return moment.timestamp()


class RunSearch:
    """Queries over the identities of one run's output folder. Close it (or use `with`) when done."""

    def __init__(self, out_dir: Path | str, *, device: str = "cpu", embedder=None) -> None:
        self.out_dir = Path(out_dir)
        self.device = device
        run_json = self.out_dir / "run.json"
        try:
            info = json.loads(run_json.read_text())
            config = info["config"]
        except (OSError, ValueError, KeyError, TypeError):
            raise PipelineError(f"{self.out_dir}: not a run's output folder (no readable run.json)") from None
        self.reid = build(ReIDConfig, config.get("reid", {}), "reid")
        self.store_path = resolve_store_path((config.get("store") or {}).get("path"), self.out_dir)
        dim = EmbeddingStore.stored_dim(self.store_path)
        if dim is None:
            raise PipelineError(
                f"{self.out_dir}: no identity store at {self.store_path} (has the run started?)"
            )
        self.store = EmbeddingStore(self.store_path, dim=dim)
        self._embedder = embedder  # the run's embedder, when the caller already built one

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> RunSearch:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- queries -----------------------------------------------------------------------------------

    def by_image(
        self,
        images: Sequence[np.ndarray] | np.ndarray,
        *,
        top: int = 10,
        cameras: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Hit]:
        """The identities most similar to the person in `images` (BGR crops of one person), best first."""
        images = [images] if isinstance(images, np.ndarray) else list(images)
        if not images:
            raise PipelineError("search: give at least one image")
        features = self.embedder.embed(images)  # (N, dim), unit rows
        query = features.mean(axis=0)
        query /= max(float(np.linalg.norm(query)), 1e-12)
        found = self.store.search(query[None], k=max(self.store.identity_count(), 1))[0]
        return self._rank(found, top, cameras, since, until)

    def by_text(
        self,
        text: str,
        *,
        top: int = 10,
        cameras: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> list[Hit]:
        """The identities whose appearance best fits a description, through VPM-Net's text tower.

        Only the projected part of a VPM-Net feature shares CLIP's joint space with text, so each stored
        prototype is cut to its last `text_dim` values (the projected feature) and compared with the text.
        """
        if self.reid.embedder != "vpm":
            raise PipelineError(
                f"text search needs a run made with the vpm embedder (VPM-Net's text tower); this run "
                f"used reid.embedder: {self.reid.embedder}"
            )
        import torch

        model = self.embedder.model
        with torch.inference_mode():
            text_feature = model.encode_text([text]).float().cpu().numpy()[0]  # (text_dim,)
        best: dict[int, float] = {}
        for global_id, _key, vector in self.store.prototypes():
            proj = vector[-model.text_dim :]
            score = float(proj @ text_feature / max(float(np.linalg.norm(proj)), 1e-12))
            best[global_id] = max(score, best.get(global_id, -np.inf))
        return self._rank(best, top, cameras, since, until)

    def identity(
        self,
        global_id: int,
        *,
        cameras: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> Hit:
        """Where and when one identity was seen (appearances filtered as a search's are)."""
        appearances = self.appearances([global_id], cameras, since, until).get(int(global_id))
        if not appearances:
            known = bool(self.store.tracklets(global_ids=[global_id]))
            where = " in those cameras or times" if known else ""
            raise PipelineError(f"identity {global_id} was not seen{where} in {self.out_dir}")
        return Hit(int(global_id), None, tuple(appearances))

    def identities(self) -> list[Hit]:
        """Every identity with a tracklet, in id order."""
        return [Hit(g, None, tuple(a)) for g, a in sorted(self.appearances().items())]

    # -- internals ---------------------------------------------------------------------------------

    @property
    def embedder(self):
        """The run's embedder, built on first use (a model load)."""
        if self._embedder is None:
            from pipeline.build import build_reid_embedder

            self._embedder = build_reid_embedder(self.reid, self.device)
        return self._embedder

    def appearances(
        self,
        global_ids: Iterable[int] | None = None,
        cameras: Iterable[str] | None = None,
        since: float | None = None,
        until: float | None = None,
    ) -> dict[int, list[Appearance]]:
        """Appearances per identity, of the tracklets that pass the camera and time filters."""
        cameras = None if cameras is None else set(cameras)
        latest = self.store.latest_session()
        found: dict[int, list[Appearance]] = defaultdict(list)
        records: list[TrackletRecord] = self.store.tracklets(global_ids=global_ids)
        for t in sorted(records, key=lambda t: (t.first_time, t.camera, t.track_id)):
            if t.global_id is None or (cameras is not None and t.camera not in cameras):
                continue
            if (since is not None and t.last_time < since) or (until is not None and t.first_time > until):
                continue
            # Thumbnails are kept per run; local track ids repeat between the sessions of a shared store.
            thumbs = (
                thumbnails_of(self.out_dir, t.camera, t.track_id, (t.first_frame, t.last_frame))
                if t.session == latest
                else []
            )
            found[t.global_id].append(
                Appearance(
                    t.camera,
                    t.track_id,
                    t.first_frame,
                    t.last_frame,
                    round(t.first_time, 3),
                    round(t.last_time, 3),
                    tuple(th.path for th in thumbs),
                )
            )
        return found

    def _rank(self, scores: dict[int, float], top: int, cameras, since, until) -> list[Hit]:
        if top < 1:
            raise PipelineError(f"search --top: expected >= 1, got {top}")
        ordered = sorted(scores.items(), key=lambda item: (-item[1], item[0]))
        appearances = self.appearances([g for g, _ in ordered], cameras, since, until)
        hits = [Hit(g, round(s, 4), tuple(appearances[g])) for g, s in ordered if appearances.get(g)]
        return hits[:top]


def read_image(path: Path | str) -> np.ndarray:
    """A query photo as a BGR array; a missing or unreadable file is one clear error."""
    path = Path(path)
    if not path.is_file():
        raise PipelineError(f"search --image: {path} does not exist")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PipelineError(f"search --image: {path} is not an image OpenCV can read")
    return image


def decode_image(data: bytes) -> np.ndarray:
    """An uploaded photo's bytes as a BGR array."""
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise PipelineError("the uploaded file is not an image OpenCV can read")
    return image


def format_hits(hits: Sequence[Hit], with_similarity: bool = True) -> str:
    """A plain-text table of hits: rank, identity, similarity, cameras, times and thumbnails."""
    if not hits:
        return "no identities found"
    lines = []
    for rank, hit in enumerate(hits, start=1):
        score = f"{hit.similarity:.3f}" if hit.similarity is not None else "-"
        start = min(a.start_time for a in hit.appearances)
        end = max(a.end_time for a in hit.appearances)
        head = f"{rank:>3}. identity {hit.global_id}" + (f"  similarity {score}" if with_similarity else "")
        lines.append(f"{head}  cameras {','.join(hit.cameras)}  {start:.1f}-{end:.1f} s")
        for a in hit.appearances:
            thumbs = f"  {a.thumbnails[0]}" if a.thumbnails else ""
            lines.append(
                f"       {a.camera} track {a.local_track_id}: frames {a.first_frame}-{a.last_frame}, "
                f"{a.start_time:.1f}-{a.end_time:.1f} s{thumbs}"
            )
    return "\n".join(lines)
