"""Thumbnails: the best crops of each tracklet, by the crop sampler's quality score, kept with the run.

Layout under the run's output folder: `thumbnails/<camera>/<track_id>/<frame>.jpg`, at most `per_track`
images per tracklet, each at most `size` pixels on its longer side, and `index.json` beside them listing
them best first (`[{"file": "000123.jpg", "frame": 123, "time": 12.3, "quality": 0.91}, ...]`). Files are
written as crops arrive (a thumbnail that drops out of the best is deleted at once), so a killed run
leaves consistent folders behind.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.atomic import partial_path, write_json
from pipeline.messages import Crop
from pipeline.tracklet_spans import source_track

logger = logging.getLogger(__name__)

FOLDER = "thumbnails"
INDEX = "index.json"
JPEG_QUALITY = 85


@dataclass(frozen=True)
class Thumbnail:
    """One kept thumbnail: its path relative to the run's output folder, frame, time and quality."""

    path: str
    frame: int
    time: float
    quality: float


class ThumbnailKeeper:
    """Keeps the `per_track` best crops of each track of one camera as JPEG files in `folder`.

    State is held for at most `max_tracks` tracks (least recently seen dropped first); a dropped track's
    files stay, so a track that comes back can only add images the index already ranks.
    """

    def __init__(self, folder: Path, *, per_track: int = 3, size: int = 128, max_tracks: int = 4096) -> None:
        if per_track < 1 or size < 1 or max_tracks < 1:
            raise ValueError(
                f"per_track, size and max_tracks must be >= 1, but got {per_track}, {size}, {max_tracks}"
            )
        self.folder = Path(folder)
        self.per_track = per_track
        self.size = size
        self.max_tracks = max_tracks
        self._kept: OrderedDict[int, list[dict]] = OrderedDict()  # track id -> index entries, best first

    def add(self, crop: Crop) -> bool:
        """Keep `crop` if it is among its track's best so far; returns whether it was kept."""
        track_id = int(crop.track_id)
        kept = self._kept.get(track_id)
        if kept is None:
            kept = self._load(track_id)
            self._kept[track_id] = kept
        self._kept.move_to_end(track_id)
        if len(kept) >= self.per_track and crop.quality <= kept[-1]["quality"]:
            return False
        track_dir = self.folder / str(track_id)
        name = f"{crop.frame_index:06d}.jpg"
        if not _write_jpeg(track_dir / name, shrink(crop.image, self.size)):
            return False
        entry = {"file": name, "frame": int(crop.frame_index), "time": round(float(crop.timestamp), 3)}
        entry["quality"] = round(float(crop.quality), 4)
        kept[:] = [e for e in kept if e["file"] != name]
        kept.append(entry)
        kept.sort(key=lambda e: (-e["quality"], e["frame"]))
        for dropped in kept[self.per_track :]:
            (track_dir / dropped["file"]).unlink(missing_ok=True)
        del kept[self.per_track :]
        write_json(track_dir / INDEX, kept)
        while len(self._kept) > self.max_tracks:
            self._kept.popitem(last=False)
        return True

    def _load(self, track_id: int) -> list[dict]:
        index = self.folder / str(track_id) / INDEX
        try:
            return list(json.loads(index.read_text()))
        except (OSError, ValueError):
            return []


def shrink(image: np.ndarray, size: int) -> np.ndarray:
    """`image` scaled down (never up) so that its longer side is at most `size` pixels."""
    height, width = image.shape[:2]
    scale = size / max(height, width)
    if scale >= 1.0:
        return image
    return cv2.resize(
        image, (max(1, round(width * scale)), max(1, round(height * scale))), interpolation=cv2.INTER_AREA
    )


def _write_jpeg(path: Path, image: np.ndarray) -> bool:
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        logger.warning("could not encode a thumbnail for %s", path)
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    tmp.write_bytes(data.tobytes())
    os.replace(tmp, path)
    return True


def track_folder(out_dir: Path, camera: str, track_id: int) -> Path:
    """Where the thumbnails of one track live (of all its parts, where the matcher cut it)."""
    return Path(out_dir) / FOLDER / camera / str(source_track(int(track_id)))


def thumbnails_of(
    out_dir: Path, camera: str, track_id: int, frames: tuple[int, int] | None = None
) -> list[Thumbnail]:
    """The kept thumbnails of one tracklet, best first, of its `frames` (first, last) where given (a
    track the matcher cut in parts keeps them in one folder); none where it has no (readable) index."""
    folder = track_folder(out_dir, camera, track_id)
    try:
        entries = json.loads((folder / INDEX).read_text())
    except (OSError, ValueError):
        return []
    found = []
    for e in entries:
        if frames is not None and not frames[0] <= int(e["frame"]) <= frames[1]:
            continue
        if (folder / e["file"]).is_file():
            path = f"{FOLDER}/{camera}/{folder.name}/{e['file']}"
            found.append(Thumbnail(path, int(e["frame"]), float(e["time"]), float(e["quality"])))
    return found


def remove_thumbnails(out_dir: Path, camera: str, track_id: int) -> int:
    """Delete the thumbnails of one track (all its parts'); returns how many image files went."""
    folder = track_folder(out_dir, camera, track_id)
    if not folder.is_dir():
        return 0
    count = len(list(folder.glob("*.jpg")))
    shutil.rmtree(folder)
    return count
