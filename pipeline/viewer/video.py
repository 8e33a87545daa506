"""Browser-playable copies of the annotated videos: H.264 MP4 transcoded with ffmpeg, cached under OUT/viewer."""

from __future__ import annotations

import logging
import shutil
import subprocess
import threading
from pathlib import Path

from pipeline.atomic import partial_path
from pipeline.errors import PipelineError

logger = logging.getLogger(__name__)

CACHE = "viewer"
CONTAINERS = ("avi", "mkv", "mp4")
_locks: dict[Path, threading.Lock] = {}
_locks_guard = threading.Lock()


def annotated_video(out_dir: Path, camera: str) -> Path | None:
    """The finished annotated video of `camera`, whatever its container; None while there is none."""
    for container in CONTAINERS:
        path = out_dir / "videos" / f"{camera}.{container}"
        if path.is_file():
            return path
    return None


def browser_video(out_dir: Path, camera: str, ffmpeg: str | None = None) -> Path:
    """An H.264 (yuv420p, faststart) MP4 of the camera's annotated video, transcoded once and cached.

    A cached copy older than its video (re-rendered by `forget`, or a new run) is transcoded again.
    """
    source = annotated_video(out_dir, camera)
    if source is None:
        raise PipelineError(f"camera {camera} has no finished annotated video yet")
    ffmpeg = ffmpeg or shutil.which("ffmpeg")
    if ffmpeg is None:
        raise PipelineError("ffmpeg is not installed: it is needed to play videos in the browser")
    target = out_dir / CACHE / f"{camera}.mp4"
    with _lock_for(target):
        if target.is_file() and target.stat().st_mtime >= source.stat().st_mtime:
            return target
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = partial_path(target)
        command = [
            ffmpeg, "-nostdin", "-loglevel", "error", "-y", "-i", str(source),
            "-c:v", "libx264", "-preset", "veryfast", "-crf", "23", "-pix_fmt", "yuv420p",
            "-movflags", "+faststart", "-an", str(tmp),
        ]  # fmt: skip
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            tmp.unlink(missing_ok=True)
            detail = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise PipelineError(f"ffmpeg could not transcode {source.name}: {detail}")
        tmp.replace(target)
        logger.info("transcoded %s to %s", source, target)
        return target


def _lock_for(path: Path) -> threading.Lock:
    with _locks_guard:
        return _locks.setdefault(path, threading.Lock())
