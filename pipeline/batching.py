"""Dynamic micro-batching as a pure policy: when to run a batch, with no queues and no clocks of its own."""

from __future__ import annotations

from typing import Generic, TypeVar

T = TypeVar("T")


class MicroBatcher(Generic[T]):
    """Gathers items into batches of up to `max_batch`, each held at most `max_wait_ms` (Triton-style).

    A batch is due when it holds `max_batch` items or `max_wait_ms` after its first item arrived,
    whichever comes first. The caller passes the time (`time.monotonic()` seconds) and runs the batches.
    """

    def __init__(self, max_batch: int = 32, max_wait_ms: float = 20.0) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, but got {max_batch}")
        if max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, but got {max_wait_ms}")
        self.max_batch = max_batch
        self.max_wait_s = max_wait_ms / 1000.0
        self._items: list[T] = []
        self._deadline = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: T, now: float) -> list[T] | None:
        """Hold `item`; returns the batch when it is full, else None."""
        if not self._items:
            self._deadline = now + self.max_wait_s
        self._items.append(item)
        return self.take() if len(self._items) >= self.max_batch else None

    def timeout(self, now: float) -> float | None:
        """Seconds until the held batch is due (0 when due now); None when nothing is held."""
        return max(self._deadline - now, 0.0) if self._items else None

    def due(self, now: float) -> bool:
        return bool(self._items) and now >= self._deadline

    def take(self) -> list[T]:
        """The held items as one batch, in arrival order; the batcher is empty afterwards."""
        items, self._items = self._items, []
        return items
