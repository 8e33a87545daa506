"""Helpers for camera URLs: hide credentials before a URL reaches a log line, an error or an export."""

from __future__ import annotations

import re

# A scheme and its slashes, however many were typed: "rtsp://", the mistyped "rtsp:/" or "rtsp:///", and
# "admin:" in a scheme-less "admin:pw@host/x" (where it hides the password and keeps the user name).
_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/*")
# `${NAME}` references (not `${NAME:-default}`, whose default may be a literal): no secret in the text itself.
_ENV_REFS = re.compile(r"(?:\$\{[A-Za-z_][A-Za-z0-9_]*\})+")
# Query parameters that commonly carry secrets in camera URLs (?user=..&password=..).
_SECRET_QUERY = re.compile(
    r"(?P<key>[?&;](?:user|username|pass|password|passwd|pwd|token|auth|key|apikey|api_key|secret)=)"
    r"(?P<value>[^&;#]*)",
    re.IGNORECASE,
)


def redact_url(url: str | int) -> str:
    """Return the text with any `user:password@` and secret query values replaced by `***`.

    `rtsp://user:pass@host/x` -> `rtsp://***@host/x`, whatever the scheme and however many slashes follow
    it; a scheme-less `admin:pw@host/x` -> `admin:***@host/x`. A password that is only `${VAR}` references
    (config text not yet expanded) holds no secret and stays, so a run can be resumed from it. Webcam
    indices and plain paths come back unchanged.
    """
    return _SECRET_QUERY.sub(lambda m: f"{m['key']}***", _hide_userinfo(str(url)))


def _hide_userinfo(text: str) -> str:
    scheme = _SCHEME.match(text)
    start = scheme.end() if scheme else 0
    # Up to the last "@": passwords written without percent-encoding may hold "@", "/", "?" or "#", and
    # hiding too much of a URL is better than leaking part of a password.
    at = text.rfind("@", start)
    if at < 0:
        return text
    if scheme:
        userinfo = text[start:at]
        user, colon, secret = userinfo.partition(":")
        if not scheme.group().endswith("/"):  # "admin:pw@host": what follows the "scheme" is the secret
            secret = userinfo
        if _ENV_REFS.fullmatch(secret if colon else user):
            return text
        return f"{text[:start]}***{text[at:]}"
    colon = text.find(":", 0, at)  # no scheme: a "user:secret@" inside the text
    if colon < 0 or _ENV_REFS.fullmatch(text[colon + 1 : at]):
        return text
    begin = max(text.rfind(c, 0, colon) for c in "/\\ \t=") + 1
    return f"{text[:begin]}***{text[at:]}"


def describe_source(source: str | int) -> str:
    """A short, credential-free name for a source, for logs and error messages."""
    if isinstance(source, int):
        return f"webcam {source}"
    return redact_url(source)
