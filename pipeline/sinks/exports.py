"""tracks.json (schema_version 1) and mot/<camera>.txt, written from the store with final global ids."""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from pipeline.atomic import atomic_open
from pipeline.thumbnails import thumbnails_of
from pipeline.tracklet_spans import part_at, source_track

SCHEMA_VERSION = 1


def write_exports(store, session: int, cameras: list[dict], out_dir: Path) -> None:
    """Write tracks.json and one MOT file per camera for the tracklets of `session`.

    Each camera's boxes are read from the store once: the MOT file is written as they stream by, and
    they are kept per track for tracks.json.
    """
    tracklets = [t for t in store.tracklets(session) if t.global_id is not None]
    global_ids = {(t.camera, t.track_id): t.global_id for t in tracklets}
    ends = handover_ends(tracklets)
    holder = box_holders(tracklets)
    boxes: dict[tuple[str, int], list] = defaultdict(list)
    for camera in cameras:
        with atomic_open(out_dir / "mot" / f"{camera['id']}.txt") as mot:
            for track, frame, x1, y1, x2, y2, conf in store.boxes(session, camera["id"]):
                track_id = holder(camera["id"], track, frame)
                global_id = global_ids.get((camera["id"], track_id))
                if global_id is None or frame > ends.get((camera["id"], track_id), frame):
                    continue
                mot.write(
                    f"{frame},{global_id},{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},{conf:.3f},-1,-1,-1\n"
                )
                boxes[camera["id"], track_id].append(
                    [frame, round(x1, 2), round(y1, 2), round(x2, 2), round(y2, 2), round(conf, 3)]
                )
    write_tracks_json(cameras, tracklets, boxes, out_dir / "tracks.json")


def box_holders(tracklets: list) -> Callable[[str, int, int], int]:
    """(camera, track id, frame) -> the id of the tracklet among `tracklets` (store records) that holds
    that box: its track's own, or where the matcher cut the track where it switched people, the part
    whose frames hold it."""
    parts: dict[tuple[str, int], list[tuple[int, int]]] = defaultdict(list)
    for t in tracklets:
        parts[t.camera, source_track(t.track_id)].append((t.first_frame, t.track_id))
    for found in parts.values():
        found.sort()

    def holder(camera: str, track_id: int, frame: int) -> int:
        found = parts.get((camera, track_id))
        return track_id if found is None or len(found) == 1 else part_at(found, frame)

    return holder


def handover_ends(tracklets: list) -> dict[tuple[str, int], int]:
    """(camera, track id) -> last frame to export, for tracklets whose identity's next tracklet in that
    camera began before they ended (a second box on one person took over): the person has one box a frame.
    """
    by_identity: dict[tuple[str, int], list] = defaultdict(list)
    for t in tracklets:
        by_identity[t.camera, t.global_id].append(t)
    ends = {}
    for group in by_identity.values():
        group.sort(key=lambda t: t.first_frame)
        for earlier, later in itertools.pairwise(group):
            if later.first_frame <= earlier.last_frame:
                ends[earlier.camera, earlier.track_id] = later.first_frame - 1
    return ends


def write_tracks_json(cameras: list[dict], tracklets: list, boxes: dict, path: Path) -> None:
    """The cross-camera export: identities, each with its appearances (one per local track) and boxes.

    Each appearance also lists its tracklet's thumbnails (paths relative to the folder of `path`, best
    first; empty where none were kept): an additive field that readers of schema 1 may ignore.
    """
    by_identity: dict[int, list] = defaultdict(list)
    for t in tracklets:
        by_identity[t.global_id].append(t)
    with atomic_open(path) as f:
        f.write(
            f'{{"schema_version": {SCHEMA_VERSION},\n "cameras": {json.dumps(cameras)},\n "identities": ['
        )
        for n, global_id in enumerate(sorted(by_identity)):
            appearances = [
                _appearance(t, boxes.pop((t.camera, t.track_id), []), path.parent)
                for t in sorted(by_identity[global_id], key=lambda t: (t.first_time, t.camera))
            ]
            f.write(
                ("," if n else "") + "\n  " + json.dumps({"global_id": global_id, "appearances": appearances})
            )
        f.write("\n ]}\n")


def _appearance(tracklet, boxes: list, out_dir: Path) -> dict:
    return {
        "camera": tracklet.camera,
        "local_track_id": tracklet.track_id,
        "first_frame": tracklet.first_frame,
        "last_frame": tracklet.last_frame,
        "start_time": round(tracklet.first_time, 3),
        "end_time": round(tracklet.last_time, 3),
        "boxes": boxes,
        "thumbnails": [
            t.path
            for t in thumbnails_of(
                out_dir, tracklet.camera, tracklet.track_id, (tracklet.first_frame, tracklet.last_frame)
            )
        ],
    }
