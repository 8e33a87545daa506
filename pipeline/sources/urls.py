"""Helpers for camera URLs: hide credentials before a URL reaches a log line, an error or an export."""

from __future__ import annotations

import re

# scheme://userinfo@ up to the last "@" before any query: passwords written without percent-encoding may
# hold "@" or "/", and hiding too much of a URL is better than leaking part of a password.
_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^?#]*)@")
# Query parameters that commonly carry secrets in camera URLs (?user=..&password=..).
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:user|username|pass|password|passwd|pwd|token|auth|key|apikey|api_key|secret)=)"
    r"(?P<value>[^&;#]*)",
    re.IGNORECASE,
)


def redact_url(url: str | int) -> str:
    """Return the URL with its user:password and secret query values replaced by `***`.

    `rtsp://user:pass@host/x` -> `rtsp://***@host/x`. Webcam indices and paths come back unchanged.
    """
    text = str(url)
    text = _USERINFO.sub(lambda m: f"{m['scheme']}***@", text, count=1)
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}***", text)


def describe_source(source: str | int) -> str:
    """A short, credential-free name for a source, for logs and error messages."""
    if isinstance(source, int):
        return f"webcam {source}"
    return redact_url(source)
