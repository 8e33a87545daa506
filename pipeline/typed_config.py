"""Typed config machinery: YAML -> frozen dataclasses with dotted-path errors, ${ENV} and key=value overrides.

Shared by the run config (cameras.yaml), the VPM-Net variant configs and the training configs.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, Literal

import yaml

from pipeline.errors import ConfigError

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_MAX_DEPTH = 64  # nesting levels a config may use; deeper is a mistake or an attack on the parser


class _NotAllowed(yaml.MarkedYAMLError):
    """Valid YAML this loader refuses: duplicate keys, anchors and aliases, absurd nesting."""


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys and anchors/aliases (an alias bomb expands exponentially)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent, index):
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _NotAllowed(
                problem="anchors and aliases (&name, *name) are not allowed", problem_mark=event.start_mark
            )
        self._depth += 1
        if self._depth > _MAX_DEPTH:
            raise _NotAllowed(
                problem=f"nested more than {_MAX_DEPTH} levels deep", problem_mark=event.start_mark
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node, deep=False):
        self.flatten_mapping(node)  # `<<` merge keys first, as SafeLoader does
        first_line: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                if key in first_line:
                    raise _NotAllowed(
                        problem=f"duplicate key {key!r} (first on line {first_line[key]})",
                        problem_mark=key_node.start_mark,
                    )
                first_line[key] = key_node.start_mark.line + 1
            except TypeError:  # an unhashable key: SafeLoader reports it
                break
        return super().construct_mapping(node, deep)


def parse_yaml(text: str) -> Any:
    """Parse YAML text with the config loader; errors are yaml.YAMLError."""
    loader = _ConfigLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def _yaml_problem(e: yaml.YAMLError) -> str:
    """`line L, column C: problem` of a YAML error, in one line."""
    mark = getattr(e, "problem_mark", None)
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    label = "" if isinstance(e, _NotAllowed) else "malformed YAML: "
    return f"{where}{label}{problem}"


def read_yaml(path: str | Path) -> Any:
    """Parse a YAML file; a missing file or malformed YAML is a one-line ConfigError naming the file."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder, not a config file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a text file (a config is UTF-8 YAML)") from None
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config ({e.strerror})") from None
    try:
        return parse_yaml(text)
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: {_yaml_problem(e)}") from None


def apply_override(raw: dict, item: str) -> None:
    """Apply one `a.b=c` override in place; list items by index or camera id (`cameras.cam_a.fps=5`)."""
    key, sep, value = item.partition("=")
    key = key.strip()
    if not sep:
        raise ConfigError(f"--set {_redact(item)}: expected KEY=VALUE")
    if not key:
        raise ConfigError("--set: an argument has no key before '=' (expected KEY=VALUE)")
    parts = key.replace("[", ".").replace("]", "").split(".")
    if "" in parts:
        raise ConfigError(f"--set {key}: empty name in the key")
    try:
        parsed = parse_yaml(value) if value.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: the value is not valid YAML ({_yaml_problem(e)})") from None
    node: Any = raw
    for i, part in enumerate(parts[:-1]):
        node = _child(node, part, ".".join(parts[: i + 1]), key)
    last = parts[-1]
    if isinstance(node, list):
        index = _list_index(node, last, key)
        _check_replaceable(node[index], parsed, key)
        node[index] = parsed
    else:
        _check_replaceable(node.get(last), parsed, key)
        node[last] = parsed


def _child(node: dict | list, part: str, dotted: str, key: str) -> dict | list:
    """The mapping or list at `part` of `node`, created as an empty mapping where the key is unset."""
    if isinstance(node, list):
        child = node[_list_index(node, part, dotted)]
    else:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
    if not isinstance(child, dict | list):
        raise ConfigError(f"--set {key}: {dotted} holds a single value ({_type_name(child)}), not a mapping")
    return child


def _check_replaceable(old: Any, new: Any, key: str) -> None:
    """A mapping or list is replaced only by another of its kind: `--set detector=5` is a slip."""
    for kind, name in ((dict, "mapping"), (list, "list")):
        if isinstance(old, kind) and not isinstance(new, kind):
            hint = f"; set one of its keys ({key}.KEY=VALUE)" if kind is dict else ""
            raise ConfigError(f"--set {key}: {key} is a {name}, got {_type_name(new)}{hint}")


def _list_index(items: list, part: str, dotted: str) -> int:
    if part.isdecimal() and int(part) < len(items):
        return int(part)
    for i, item in enumerate(items):
        if isinstance(item, dict) and item.get("id") == part:
            return i
    raise ConfigError(
        f"--set {dotted}: no list item {part!r} (give an index below {len(items)} or a camera id)"
    )


def _redact(text: str) -> str:
    """`text` with anything that looks like `user:password@` masked, for echoing a malformed argument."""
    return re.sub(r"[^\s/@]+@", "***@", text)


def expand_env(value: Any, where: str, _done: dict[int, Any] | None = None) -> Any:
    """Expand ${VAR} and ${VAR:-default} in every string; an unset variable is an error naming the path.

    A mapping or list that occurs several times (shared references) is expanded once and shared again.
    """
    done = {} if _done is None else _done
    if isinstance(value, dict | list):
        if id(value) in done:
            return done[id(value)]
        if isinstance(value, dict):
            out = done[id(value)] = {}
            for k, v in value.items():
                out[k] = expand_env(v, f"{where}.{k}" if where else str(k), done)
        else:
            out = done[id(value)] = []
            out.extend(expand_env(v, f"{where}[{i}]", done) for i, v in enumerate(value))
        return out
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


@dataclasses.dataclass(frozen=True)
class Limits:
    """The values a numeric setting allows; for a tuple setting, each of its items."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    multiple_of: int | None = None
    nonzero: bool = False

    def check(self, value: Any, path: str) -> None:
        """Raise a ConfigError naming `path` and the allowed range when `value` is outside it."""
        if isinstance(value, tuple):
            for i, item in enumerate(value):
                self.check(item, f"{path}[{i}]")
            return
        if value is None or isinstance(value, bool) or not isinstance(value, int | float):
            return
        low_ok = (self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
        if not low_ok or (self.le is not None and value > self.le):
            raise ConfigError(f"{path}: must be {self.describe()}, got {value!r}")
        if self.multiple_of and value % self.multiple_of:
            raise ConfigError(f"{path}: must be a multiple of {self.multiple_of}, got {value!r}")
        if self.nonzero and value == 0:
            raise ConfigError(f"{path}: must not be 0")

    def describe(self) -> str:
        """The allowed range in words: `>= 1`, `> 0`, `in [0, 1]`."""
        low = f"{self.ge:g}" if self.ge is not None else f"{self.gt:g}" if self.gt is not None else None
        if low is not None and self.le is not None:
            return f"in {'[' if self.ge is not None else '('}{low}, {self.le:g}]"
        if low is not None:
            return f"{'>=' if self.ge is not None else '>'} {low}"
        return f"<= {self.le:g}" if self.le is not None else "any number"


def bounded(default: Any = dataclasses.MISSING, **limits: Any) -> Any:
    """A dataclass field whose value must satisfy `Limits(**limits)`, checked by `build`."""
    return dataclasses.field(default=default, metadata={"limits": Limits(**limits)})


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
        if "limits" in fields[name].metadata:
            fields[name].metadata["limits"].check(kwargs[name], path)
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
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, path)
            except _BadNumber:  # the right type, a wrong value: that is the error to report
                raise
            except ConfigError:
                pass
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
        return _finite(value, path)
    if hint is Any or (isinstance(value, hint) and not (hint is int and isinstance(value, bool))):
        return value
    raise ConfigError(f"{path}: expected {_hint_name(hint)}, got {_type_name(value)}")


class _BadNumber(ConfigError):
    """A number the config cannot take whatever the field: NaN, an infinity, past float range."""


def _finite(value: int | float, path: str) -> float:
    """`value` as a float; NaN, the infinities (YAML .nan, .inf) and numbers past float range are errors."""
    try:
        number = float(value)
    except OverflowError:
        raise _BadNumber(f"{path}: number too large") from None
    if not math.isfinite(number):
        raise _BadNumber(f"{path}: expected a finite number, got {value!r}")
    return number


def _hint_name(hint: Any) -> str:
    return "null" if hint is type(None) else getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    return {type(None): "null", dict: "mapping", list: "list"}.get(type(value), type(value).__name__)
