"""Camera sources: video files, live streams and webcams behind one `Source` interface."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.errors import SourceError
from pipeline.sources.base import Source
from pipeline.sources.file import FileSource

__all__ = ["FileSource", "Source", "create_source"]

LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def create_source(camera_id: str, source: str | int | Path, **kwargs) -> Source:
    """Build the source for a camera: a FileSource for paths, a LiveSource for stream URLs and webcams."""
    if isinstance(source, bool):
        raise SourceError(f"camera {camera_id}: source must be a path, URL or webcam index, not {source!r}")
    if isinstance(source, str) and source.strip().isdigit() and not Path(source).exists():
        source = int(source)
    if isinstance(source, int) or (isinstance(source, str) and _scheme(source) in LIVE_SCHEMES):
        from pipeline.sources.live import LiveSource  # streams need their own reconnecting reader

        return LiveSource(camera_id, source, **kwargs)
    if isinstance(source, str) and (scheme := _scheme(source)) and scheme != "file":
        raise SourceError(
            f"camera {camera_id}: unsupported source URL scheme {scheme!r} in {source}; "
            f"use a file path, a webcam index or one of {', '.join(s + '://' for s in LIVE_SCHEMES)}"
        )
    if isinstance(source, str) and _scheme(source) == "file":
        source = source[len("file://") :]
    return FileSource(camera_id, source, **kwargs)


def _scheme(source: str) -> str | None:
    match = _URL.match(source)
    return match.group(1).lower() if match else None
