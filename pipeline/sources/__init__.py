"""Camera sources: video files, image sequences, live streams and webcams behind one `Source` interface."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal
from urllib.parse import unquote, urlsplit

from pipeline.errors import SourceError
from pipeline.sources.base import Source
from pipeline.sources.file import FileSource
from pipeline.sources.images import ImageSequenceSource, is_sequence_pattern
from pipeline.sources.urls import redact_url

__all__ = ["FileSource", "ImageSequenceSource", "Source", "SourceSpec", "create_source", "parse_source"]

LIVE_SCHEMES = ("rtsp", "rtsps", "http", "https")
_URL = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")
# A stream scheme followed by at most one slash ("rtsp:/cam", "http:cam"): a typo, not a file name.
_MISTYPED_URL = re.compile(rf"^({'|'.join(LIVE_SCHEMES)}):(?!//)", re.IGNORECASE)

SourceKind = Literal["video", "images", "stream", "webcam"]


@dataclass(frozen=True)
class SourceSpec:
    """What a camera's `source` names: its kind and what to open (a path, a URL or a webcam index).

    `video`: a video file (Path); `images`: a folder of frames, a printf pattern (`img1/%06d.jpg`) or a
    glob (`frames/*.png`) (Path); `stream`: an rtsp://, rtsps:// or http(s):// URL (str); `webcam`: a
    device index (int).
    """

    kind: SourceKind
    target: str | int | Path

    @property
    def live(self) -> bool:
        """True for streams and webcams: sources that run in real time and reconnect."""
        return self.kind in ("stream", "webcam")


def parse_source(camera_id: str, source: str | int | Path) -> SourceSpec:
    """Decide what a camera's `source` is; raise SourceError (credentials redacted) when it is none.

    An integer or a string of digits is a webcam index (`0`, `"0"`; write `./0` for a file named 0).
    `file://` URLs and `~` become paths. A path that exists as a file is a video; a folder, a printf
    pattern or a glob is an image sequence.
    """
    where = f"camera {camera_id}"
    if isinstance(source, bool) or not isinstance(source, str | int | Path):
        raise SourceError(f"{where}: source must be a path, URL or webcam index, not {source!r}")
    if isinstance(source, int):
        if source < 0:
            raise SourceError(f"{where}: webcam index must be >= 0, but got {source}")
        return SourceSpec("webcam", source)
    if isinstance(source, Path):
        return _path_spec(source.expanduser())
    text = source.strip()
    if not text:
        raise SourceError(f"{where}: source is empty; give a path, URL or webcam index")
    if text.isdigit():
        return SourceSpec("webcam", int(text))
    if match := _URL.match(text):
        scheme = match.group(1).lower()
        if scheme in LIVE_SCHEMES:
            return SourceSpec("stream", text)
        if scheme == "file":
            return _path_spec(_file_url_path(camera_id, text))
        raise SourceError(
            f"{where}: unsupported source URL scheme {scheme!r} in {redact_url(text)}; "
            f"use a file path, a webcam index or one of {', '.join(s + '://' for s in LIVE_SCHEMES)}"
        )
    path = Path(text).expanduser()
    if (match := _MISTYPED_URL.match(text)) and not path.exists():
        scheme = match.group(1).lower()
        raise SourceError(
            f"{where}: source {redact_url(text)} looks like a {scheme} URL without '//'; "
            f"write {scheme}://host/path"
        )
    return _path_spec(path)


def create_source(camera_id: str, source: str | int | Path | SourceSpec, **kwargs) -> Source:
    """Build the source for a camera: FileSource, ImageSequenceSource or LiveSource, by `parse_source`."""
    spec = source if isinstance(source, SourceSpec) else parse_source(camera_id, source)
    if spec.live:
        from pipeline.sources.live import LiveSource  # streams need their own reconnecting reader

        return LiveSource(camera_id, spec.target, **kwargs)
    if spec.kind == "images":
        return ImageSequenceSource(camera_id, spec.target, **kwargs)
    return FileSource(camera_id, spec.target, **kwargs)


def _path_spec(path: Path) -> SourceSpec:
    if path.is_file():
        return SourceSpec("video", path)
    if path.is_dir() or is_sequence_pattern(path):
        return SourceSpec("images", path)
    return SourceSpec("video", path)  # FileSource.open says that it does not exist


def _file_url_path(camera_id: str, url: str) -> Path:
    """`file:///x.mp4` and `file://localhost/x.mp4` -> /x.mp4 (percent-escapes decoded)."""
    parts = urlsplit(url)
    if parts.netloc not in ("", "localhost"):
        raise SourceError(
            f"camera {camera_id}: {redact_url(url)} names a file on host {redact_url(parts.netloc)!r}; "
            "only local files can be read (file:///path)"
        )
    return Path(unquote(parts.path)).expanduser()
