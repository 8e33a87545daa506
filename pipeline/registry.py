"""One registry for everything built by name: detectors, embedders, re-ID models, dataset readers."""

from __future__ import annotations

import difflib
import importlib
import importlib.util
from collections.abc import Callable
from typing import Any, Generic, TypeVar, overload

from pipeline.errors import UnknownNameError

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


class Registry(Generic[T]):
    """Factories of `T` by name: `register(name)` adds one, `create(name, **kwargs)` builds one.

    `kind` says in errors what the registry holds: ``unknown detector 'yollo'; did you mean yolo?``.
    A name registered again replaces the earlier factory.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._factories: dict[str, Callable[..., T]] = {}
        self._lazy: dict[str, str] = {}  # name -> the module that registers it when imported

    @overload
    def register(self, name: str) -> Callable[[F], F]: ...

    @overload
    def register(self, name: str, factory: F) -> F: ...

    def register(self, name: str, factory: F | None = None) -> F | Callable[[F], F]:
        """Add `factory` under `name`; without one, a decorator that adds the function or class it wraps."""
        if factory is not None:
            self._factories[name] = factory
            return factory

        def decorate(wrapped: F) -> F:
            self._factories[name] = wrapped
            return wrapped

        return decorate

    def register_lazy(self, name: str, module: str) -> bool:
        """List `name` now and import `module`, which registers it, only when it is first asked for.

        Returns False, and lists nothing, when `module` is not installed.
        """
        if name in self._factories:
            return True
        try:
            found = importlib.util.find_spec(module) is not None
        except ModuleNotFoundError:  # its parent package is missing
            found = False
        if found:
            self._lazy[name] = module
        return found

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._factories.keys() | self._lazy.keys())

    def __contains__(self, name: object) -> bool:
        return name in self._factories or name in self._lazy

    def get(self, name: str) -> Callable[..., T]:
        """The factory registered under `name`; UnknownNameError listing the close matches if there is none."""
        if name not in self._factories:
            module = self._lazy.get(name)
            if module is None:
                raise UnknownNameError(self._unknown(name))
            importlib.import_module(module)
            if name not in self._factories:
                raise KeyError(f"module {module} does not register a {self.kind} named {name!r}")
        return self._factories[name]

    def create(self, name: str, **kwargs: Any) -> T:
        """Build the `T` registered under `name` from its keyword arguments."""
        return self.get(name)(**kwargs)

    def _unknown(self, name: str) -> str:
        close = difflib.get_close_matches(name, self.names(), n=3)
        if close:
            return f"unknown {self.kind} {name!r}; did you mean {', '.join(close)}?"
        if not self.names():
            return f"unknown {self.kind} {name!r}; none is registered"
        return f"unknown {self.kind} {name!r}; choose from {', '.join(self.names())}"
