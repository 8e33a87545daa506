"""Ids that name files and folders (camera ids): one rule, so no id can leave the folder it is written in."""

from __future__ import annotations

import re

from pipeline.errors import ConfigError

MAX_ID_LENGTH = 64
_ID_PATTERN = re.compile(r"[A-Za-z0-9_.-]+")


def id_problem(value: object) -> str | None:
    """Why `value` cannot name a file (letters, digits, '_', '-', '.'; not '.' or '..'; <= 64 chars), or None."""
    if not isinstance(value, str):
        return f"expected a string id, got {type(value).__name__}"
    if not value:
        return "the id is empty"
    if len(value) > MAX_ID_LENGTH:
        return f"{value[:20]!r}... is {len(value)} characters long; ids have at most {MAX_ID_LENGTH}"
    if not _ID_PATTERN.fullmatch(value):
        return f"{value!r} may use only letters, digits, '_', '-', '.'"
    if value in (".", ".."):
        return f"{value!r} is not a usable name; ids may not be '.' or '..'"
    return None


def check_id(value: object, where: str) -> str:
    """`value` when it is a valid id, else ConfigError "`where`: why" (where: a dotted path or a flag)."""
    problem = id_problem(value)
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return value  # type: ignore[return-value]
