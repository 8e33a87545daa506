"""A camera read from an image sequence: a folder of frames, a printf pattern or a glob (MOTChallenge img1/)."""

from __future__ import annotations

import glob
import logging
import math
import re
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import PipelineError, SourceError
from pipeline.motchallenge import read_seqinfo
from pipeline.sources.file import FileSource

logger = logging.getLogger(__name__)

# What OpenCV's imread decodes in a stock build; other files in a folder of frames are ignored.
IMAGE_EXTENSIONS = (
    *(".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".dib", ".tif", ".tiff", ".webp", ".jp2"),
    *(".pbm", ".pgm", ".ppm", ".pnm", ".sr", ".ras", ".exr", ".hdr", ".pic"),
)
DEFAULT_SEQUENCE_FPS = 25.0  # when neither the camera config nor a seqinfo.ini states a frame rate
MAX_NUMBER_SPAN = 1_000_000  # frames a printf pattern may span (its gaps count as failed frames)
_PRINTF = re.compile(r"%(0?\d*)d")
_GLOB = re.compile(r"[*?[]")
_SEQINFO = "seqinfo.ini"


def is_sequence_pattern(path: str | Path) -> bool:
    """Whether `path` is a printf pattern (`img1/%06d.jpg`, in the file name) or a glob (`*.png`)."""
    path = Path(path)
    return bool(_PRINTF.search(path.name) or _GLOB.search(str(path)))


class ImageSequenceSource(FileSource):
    """Reads an image sequence as a camera; frame `i` is the sequence's i-th image (1-based).

    `path` is a folder (its images in natural order: 2.jpg before 10.jpg), a printf pattern
    (`img1/%06d.jpg`: numbered from the lowest number present, and a missing number is a failed frame, so
    indices stay those of the ground truth) or a glob (`frames/*.png`, natural order). A folder without
    images whose seqinfo.ini names its image folder (a MOTChallenge sequence folder) reads that folder.

    Timestamps use `fps` when given, else the frameRate of a seqinfo.ini beside the images' folder (the
    MOTChallenge layout: seq/seqinfo.ini next to seq/img1/), else `fps_cap` (so every frame is kept),
    else 25. `start_frame`, `max_frames`, `fps_cap`, `loop` and `time_offset_s` work as for videos. An
    image that cannot be decoded, or whose size differs from the first one's, counts in `frames_failed`
    and the sequence goes on.
    """

    max_consecutive_failures = None

    def __init__(self, camera_id: str, path: str | Path, **kwargs) -> None:
        super().__init__(camera_id, path, **kwargs)
        self._files: list[Path | None] = []  # None: a number missing from a printf sequence
        self._position = 0  # index into _files of the next image to read
        self._size: tuple[int, int] | None = None  # (H, W) of the first decoded image
        self._decoded_this_lap = 0

    def open(self) -> None:
        """List the sequence's images and settle its frame rate; raise SourceError when there are none."""
        where = f"camera {self.camera_id}: image sequence {self.name}"
        folder, files = self._list(where)
        if not files:
            found = "holds no images" if self.path.is_dir() else "matches no image file"
            raise SourceError(
                f"{where} {found} ({', '.join(IMAGE_EXTENSIONS[:5])}, ...); give a folder of frames, "
                "a pattern such as img1/%06d.jpg or a glob such as frames/*.png"
            )
        missing = files.count(None)
        if missing:
            logger.warning(
                "camera %s: %s lacks %d of %d numbered images; they count as failed frames",
                self.camera_id,
                self.name,
                missing,
                len(files),
            )
        if self.start_frame > len(files):
            raise SourceError(f"{where} has {len(files)} images, fewer than start_frame {self.start_frame}")
        self._files = files
        self._frame_count = len(files)
        self._position = self.start_frame - 1
        self._size = None
        self._decoded_this_lap = 0
        self._fps, origin = self._frame_rate(folder)
        self._state = "live"
        logger.debug(
            "camera %s: opened %s (%d images, %.2f fps from %s)",
            self.camera_id,
            self.name,
            len(files),
            self._fps,
            origin,
        )

    def close(self) -> None:
        """End the sequence; safe to call more than once."""
        self._first = None
        self._state = "ended"

    def _list(self, where: str) -> tuple[Path, list[Path | None]]:
        """The images' folder and the sequence's images in frame order."""
        path = self.path
        if path.is_dir():
            files = _images_in(path)
            if not files and (inner := _seqinfo_image_dir(path)) is not None:
                path, files = inner, _images_in(inner)
            return path, files
        if _PRINTF.search(path.name) and not _GLOB.search(str(path.parent)):
            if not path.parent.is_dir():
                raise SourceError(f"{where}: folder {path.parent} does not exist; check the camera's source")
            return path.parent, _numbered(path, where)
        if not _GLOB.search(str(path)):
            raise SourceError(f"{where} does not exist; check the camera's source path")
        matches = [Path(p) for p in glob.glob(str(path)) if Path(p).suffix.lower() in IMAGE_EXTENSIONS]
        files = sorted((p for p in matches if p.is_file()), key=_natural_key)
        return (files[0].parent if files else path.parent), files

    def _frame_rate(self, folder: Path) -> tuple[float, str]:
        if self._fps_override is not None:
            return self._fps_override, "the camera's fps"
        for candidate in (folder / _SEQINFO, folder.parent / _SEQINFO):
            if candidate.is_file() and (rate := _seqinfo_rate(candidate)) is not None:
                return rate, str(candidate)
        if self.fps_cap is not None:
            return self.fps_cap, "the camera's fps"
        logger.warning(
            "camera %s: %s states no frame rate (no fps: in the camera config, no seqinfo.ini); "
            "assuming %.0f fps",
            self.camera_id,
            self.name,
            DEFAULT_SEQUENCE_FPS,
        )
        return DEFAULT_SEQUENCE_FPS, "the default"

    def _next_image(self) -> np.ndarray | None:
        if self._position >= len(self._files):
            return None
        path = self._files[self._position]
        self._position += 1
        if path is None:
            return None
        image = _decode(path)
        if image is None:
            return None
        if self._size is None:
            self._size = image.shape[:2]
        elif image.shape[:2] != self._size:
            logger.warning(
                "camera %s: %s is %dx%d, the sequence %dx%d; skipped",
                self.camera_id,
                path.name,
                image.shape[1],
                image.shape[0],
                self._size[1],
                self._size[0],
            )
            return None
        self._decoded_this_lap += 1
        return image

    def _at_end(self) -> bool:
        return self._position >= len(self._files)

    def _rewind(self) -> bool:
        """Loop: start again at `start_frame`, unless the lap just read held no readable image."""
        if not self._decoded_this_lap:
            return False
        self._frame_count = 0  # indices now run past the sequence's length
        self._position = self.start_frame - 1
        self._decoded_this_lap = 0
        return True


def _decode(path: Path) -> np.ndarray | None:
    """The image as (H, W, 3) uint8 BGR, or None when it cannot be read or decoded."""
    try:
        data = path.read_bytes()
    except OSError as e:
        logger.warning("%s cannot be read (%s)", path, e.strerror)
        return None
    # A JPEG cut short lacks its end marker; libjpeg would print to stderr and return a half-grey image.
    if path.suffix.lower() in (".jpg", ".jpeg", ".jpe") and b"\xff\xd9" not in data:
        return None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    return image if image is not None and image.size else None


def _images_in(folder: Path) -> list[Path | None]:
    files = [
        p
        for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    ]
    return sorted(files, key=_natural_key)


def _numbered(pattern: Path, where: str) -> list[Path | None]:
    """The files a printf pattern names, from its lowest number to its highest; None for gaps."""
    match = _PRINTF.search(pattern.name)
    head, tail = pattern.name[: match.start()], pattern.name[match.end() :]
    conversion = f"%{match.group(1)}d"
    found: dict[int, Path] = {}
    for entry in pattern.parent.iterdir():
        name = entry.name
        digits = name[len(head) : len(name) - len(tail)]
        if (
            name.startswith(head)
            and name.endswith(tail)
            and digits.isdigit()
            and head + conversion % int(digits) + tail == name
            and entry.is_file()
        ):
            found[int(digits)] = entry
    if not found:
        return []
    first, last = min(found), max(found)
    if last - first >= MAX_NUMBER_SPAN:
        raise SourceError(
            f"{where}: numbers run from {first} to {last}, more than {MAX_NUMBER_SPAN} frames; "
            "use a glob (frames/*.jpg) for sparse numbering"
        )
    return [found.get(number) for number in range(first, last + 1)]


def _seqinfo_image_dir(folder: Path) -> Path | None:
    """A MOTChallenge sequence folder's image folder (seqinfo.ini's imDir, img1 by default)."""
    seqinfo = folder / _SEQINFO
    if not seqinfo.is_file():
        return None
    try:
        name = read_seqinfo(seqinfo).get("imDir", "img1")
    except PipelineError:
        name = "img1"
    inner = folder / name
    return inner if inner.is_dir() else None


def _seqinfo_rate(path: Path) -> float | None:
    try:
        value = read_seqinfo(path).get("frameRate")
        rate = float(value) if value is not None else None
    except (PipelineError, ValueError):
        rate = None
    if rate is None or not math.isfinite(rate) or rate <= 0:
        logger.warning("%s states no usable frameRate; ignoring it", path)
        return None
    return rate


def _natural_key(path: Path) -> list:
    """Sort key that orders 2.jpg before 10.jpg: digit runs compare as numbers."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]
