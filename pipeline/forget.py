"""Erase identities from a finished run: store, faiss index, exports, thumbnails, videos and event log.

What goes: each identity's prototype features (SQLite and the faiss index built from it), tracklets, boxes
and identity row, with the store vacuumed and its write-ahead log truncated so the erased bytes do not stay
in free pages; the tracklets' thumbnails; the identity's lines in events.jsonl. tracks.json and the MOT
files are rewritten from the store, and report.html is written again. The annotated videos are re-rendered
with the person's boxes (and the label above them) pixelated beyond recognition, frame by frame, where a
video's frames map one to one onto source frames (no `fps` cap, no skipped or undecodable frames);
otherwise the video is left as it is and `videos/<camera>.forgotten.json` marks it as still showing
erased identities. Browser copies of the videos (`viewer/`) are deleted, to be transcoded again.
events.jsonl gets one audit line: when, which global ids, and how many records went (no boxes, no times,
no features). Earlier runs archived under `previous/` are not touched.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import atomic_open, partial_path, write_json
from pipeline.build import resolve_store_path
from pipeline.errors import PipelineError
from pipeline.run_lock import RunLock
from pipeline.sinks.exports import box_holders, write_exports
from pipeline.store import EmbeddingStore
from pipeline.thumbnails import remove_thumbnails
from pipeline.tracklet_spans import source_track

logger = logging.getLogger(__name__)

VIEWER_CACHE = "viewer"
PIXELS = 6  # a blurred region keeps at most this many blocks across its width


@dataclass(frozen=True)
class ForgetResult:
    """What `forget` removed, in counts, and which videos it re-rendered or marked."""

    global_ids: tuple[int, ...]
    prototypes: int
    tracklets: int
    boxes: int
    thumbnails: int
    videos: tuple[str, ...]  # cameras whose video was re-rendered with the identities blurred
    marked: tuple[str, ...]  # cameras whose video could not be re-rendered and is marked instead


def forget(out_dir: Path | str, global_ids: Iterable[int]) -> ForgetResult:
    """Erase `global_ids` from the run in `out_dir`; refuses while a run holds the folder."""
    out_dir = Path(out_dir)
    ids = tuple(dict.fromkeys(int(g) for g in global_ids))
    try:
        info = json.loads((out_dir / "run.json").read_text())
        tracks = json.loads((out_dir / "tracks.json").read_text())
        config, cameras = info["config"], tracks["cameras"]
    except (OSError, ValueError, KeyError, TypeError):
        raise PipelineError(
            f"{out_dir}: not a finished run's output folder (needs run.json and tracks.json)"
        ) from None
    store_path = resolve_store_path(config["store"].get("path"), out_dir)
    dim = EmbeddingStore.stored_dim(store_path)
    if dim is None:
        raise PipelineError(f"{out_dir}: no identity store at {store_path}")
    with RunLock(out_dir / ".lock", f"output folder {out_dir}"):
        store = EmbeddingStore(store_path, dim=dim)
        try:
            tracklets = store.tracklets(global_ids=ids)
            missing = sorted(set(ids) - {t.global_id for t in tracklets} - _identity_rows(store, ids))
            if missing:
                raise PipelineError(f"identity {missing[0]} is not in the store of {out_dir}")
            session = store.latest_session()
            doomed = {(t.camera, t.track_id) for t in tracklets if t.session == session}
            blur = _boxes_to_blur(store, session, cameras, doomed, store.tracklets(session))
            counts = defaultdict(int)
            for gid in ids:
                for name, count in store.forget_identity(gid).items():
                    counts[name] += count
            write_exports(store, session, cameras, out_dir)
        finally:
            store.close()
        # a track cut in parts keeps the thumbnails of all of them in one folder: it goes whole
        tracks = {(camera, source_track(track_id)) for camera, track_id in doomed}
        thumbnails = sum(remove_thumbnails(out_dir, camera, track_id) for camera, track_id in tracks)
        videos, marked = _redact_videos(out_dir, info, blur, ids)
        shutil.rmtree(out_dir / VIEWER_CACHE, ignore_errors=True)
        result = ForgetResult(
            ids, counts["prototypes"], counts["tracklets"], counts["boxes"], thumbnails, videos, marked
        )
        _rewrite_events(out_dir / "events.jsonl", result)
        if config.get("output", {}).get("report", True):
            from pipeline.sinks.report import write_report

            write_report(out_dir)
    return result


def _identity_rows(store: EmbeddingStore, ids: tuple[int, ...]) -> set[int]:
    """Ids that exist as identities even without tracklets (their prototypes still count)."""
    return {g for g, _, _ in store.prototypes(global_ids=ids)}


def _boxes_to_blur(
    store, session, cameras: list[dict], doomed: set, tracklets: list
) -> dict[str, dict[int, list]]:
    """Per camera, per frame, the boxes of the tracklets being erased, among the session's `tracklets`."""
    holder = box_holders(tracklets)
    blur: dict[str, dict[int, list]] = {}
    for camera in cameras:
        frames: dict[int, list] = defaultdict(list)
        for track_id, frame, x1, y1, x2, y2, _ in store.boxes(session, camera["id"]):
            if (camera["id"], holder(camera["id"], track_id, frame)) in doomed:
                frames[frame].append((x1, y1, x2, y2))
        if frames:
            blur[camera["id"]] = frames
    return blur


def _redact_videos(out_dir: Path, info: dict, blur: dict, ids: tuple[int, ...]) -> tuple[tuple, tuple]:
    output = info["config"].get("output", {})
    container, codec = output.get("container", "avi"), output.get("codec", "mp4v")
    by_id = {c["id"]: c for c in info["config"]["cameras"]}
    videos, marked = [], []
    for camera, frames in sorted(blur.items()):
        path = out_dir / "videos" / f"{camera}.{container}"
        if not path.is_file():
            continue
        stats = info.get("cameras", {}).get(camera, {})
        source = by_id.get(camera, {})
        exact = (
            source.get("fps") is None
            and not stats.get("frames_skipped")
            and not stats.get("frames_failed")
            and not source.get("loop")
        )
        if exact and _blur_video(path, codec, frames, first_index=int(source.get("start_frame") or 1)):
            videos.append(camera)
            continue
        marker = path.with_name(f"{camera}.forgotten.json")
        previous = json.loads(marker.read_text()) if marker.is_file() else {"global_ids": []}
        write_json(
            marker,
            {
                "note": "this video still shows identities erased from the run: its frames could not be "
                "mapped onto the stored boxes to blur them",
                "global_ids": sorted(set(previous["global_ids"]) | set(ids)),
            },
        )
        marked.append(camera)
    return tuple(videos), tuple(marked)


def _blur_video(path: Path, codec: str, frames: dict[int, list], first_index: int) -> bool:
    """Re-encode `path` with the boxes of `frames` (source frame index -> xyxy boxes) pixelated."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
    tmp = partial_path(path)
    writer = None
    index = first_index
    try:
        while True:
            ok, image = capture.read()
            if not ok:
                break
            for box in frames.get(index, ()):
                pixelate(image, box)
            if writer is None:
                height, width = image.shape[:2]
                writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*codec), fps, (width, height))
                if not writer.isOpened():
                    logger.warning("cannot re-encode %s with codec %s", path, codec)
                    return False
            writer.write(image)
            index += 1
    finally:
        capture.release()
        if writer is not None:
            writer.release()
    if writer is None:
        tmp.unlink(missing_ok=True)
        return False
    os.replace(tmp, path)
    return True


def pixelate(image: np.ndarray, box) -> None:
    """Pixelate a box in place, widened a little and raised to cover the label drawn above it."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    pad = 0.1 * (x2 - x1)
    x1, x2 = max(int(x1 - pad), 0), min(int(np.ceil(x2 + pad)), width)
    y1, y2 = max(int(y1 - 24 - pad), 0), min(int(np.ceil(y2 + pad)), height)
    if x2 <= x1 or y2 <= y1:
        return
    region = image[y1:y2, x1:x2]
    blocks_w = max(1, min(PIXELS, region.shape[1]))
    blocks_h = max(1, round(blocks_w * region.shape[0] / max(region.shape[1], 1)))
    small = cv2.resize(region, (blocks_w, blocks_h), interpolation=cv2.INTER_AREA)
    image[y1:y2, x1:x2] = cv2.resize(
        small, (region.shape[1], region.shape[0]), interpolation=cv2.INTER_NEAREST
    )


def _rewrite_events(path: Path, result: ForgetResult) -> None:
    """Drop the erased identities' lines from events.jsonl and append one audit line."""
    erased = set(result.global_ids)
    kept = []
    if path.is_file():
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if record.get("global_id") not in erased:
                kept.append(line)
    audit = {
        "kind": "forgotten",
        "global_ids": list(result.global_ids),
        "prototypes": result.prototypes,
        "tracklets": result.tracklets,
        "boxes": result.boxes,
        "thumbnails": result.thumbnails,
        "videos_blurred": list(result.videos),
        "videos_marked": list(result.marked),
        "emitted_at": round(time.time(), 4),
    }
    with atomic_open(path) as f:
        for line in kept:
            f.write(line + "\n")
        f.write(json.dumps(audit) + "\n")
