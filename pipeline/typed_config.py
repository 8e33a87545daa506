"""Typed config machinery: YAML -> frozen dataclasses with dotted-path errors, ${ENV} and key=value overrides.

Shared by the run config (cameras.yaml), the VPM-Net variant configs and the training configs.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or malformed YAML is a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{path}:{where}: malformed YAML: {problem}") from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one `a.b=c` override in place; list items by index or camera id (`cameras.cam_a.fps=5`)."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    parts = key.replace("[", ".").replace("]", "").split(".")
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: i + 1]))
    last = parts[-1]
    parsed = yaml.safe_load(value) if value else None
    if isinstance(node, list):
        node[_list_index(node, last, key)] = parsed
    else:
        node[last] = parsed


def _child(node: Any, part: str, dotted: str) -> Any:
    if isinstance(node, list):
        return node[_list_index(node, part, dotted)]
    if not isinstance(node, dict):
        raise ConfigError(f"--set {dotted}: not a mapping")
    return node.setdefault(part, {})


def _list_index(items: list, part: str, dotted: str) -> int:
    if part.isdigit() and int(part) < len(items):
        return int(part)
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("id") == part:
            return i
    raise ConfigError(f"--set {dotted}: no list item {part!r}")


def expand_env(value: Any, where: str) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string; an unset variable is an error naming the path."""
    if isinstance(value, dict):
        return {k: expand_env(v, f"{where}.{k}" if where else str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [expand_env(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match) -> str:
        name, default = match.group(1), match.group(2)
        if name in os.environ:
            return os.environ[name]
        if default is not None:
            return default
        raise ConfigError(f"{where}: environment variable {name} is not set")

    return _ENV.sub(substitute, value)


def build(cls: type, raw: Any, where: str = "") -> Any:
    """Validate a mapping into dataclass `cls`, recursively; errors name the dotted path of the key."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_type_name(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    aliases = dict(getattr(cls, "config_aliases", ()))  # YAML key -> field name
    kwargs = {}
    for key, value in raw.items():
        name = aliases.get(key, key)
        path = f"{where}.{key}" if where else str(key)
        if name not in fields:
            close = difflib.get_close_matches(str(key), list(fields), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else f"; valid keys: {', '.join(fields)}"
            raise ConfigError(f"{path}: unknown key{hint}")
        kwargs[name] = _coerce(hints[name], value, path)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where + '.' if where else ''}{missing[0]}: required key is missing")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, path: str) -> Any:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, path)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except ConfigError as e:
                errors.append(e)
        expected = " or ".join(_hint_name(a) for a in args)
        raise ConfigError(f"{path}: expected {expected}, got {_type_name(value)}")
    if origin is Literal:
        if value not in args:
            close = difflib.get_close_matches(str(value), [str(a) for a in args], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{path}: expected one of {', '.join(map(str, args))}, got {value!r}{hint}")
        return value
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{path}: expected a list, got {_type_name(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{path}: expected a list of {len(args)} items, got {len(value)}")
        return tuple(_coerce(a, v, f"{path}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{path}: expected a mapping, got {_type_name(value)}")
        return dict(value)
    if hint is float and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{path}: expected {_hint_name(hint)}, got {_type_name(value)}")


def _hint_name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    return {type(None): "null", dict: "mapping", list: "list"}.get(type(value), type(value).__name__)
