"""The batching loop every runtime drives: items from a queue into a MicroBatcher, batches to a stage."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

from pipeline.batching import MicroBatcher
from pipeline.messages import EndOfStream


def serve_batches(inbox, batcher: MicroBatcher, run_batch: Callable[[list], None], take: Callable) -> None:
    """Read `inbox` until EndOfStream, running the batches `batcher` makes of the items `take` accepts.

    `take(message)` returns True for an item to batch and handles any other message itself. A batch runs
    when full or at its deadline, after what was already queued by then; EndOfStream runs what is held.
    `inbox` is any queue with `get(timeout=...)` raising `queue.Empty` (multiprocessing's or the stdlib's).
    """
    while True:
        timeout = batcher.timeout(time.monotonic())
        try:
            message = inbox.get() if timeout is None else inbox.get(timeout=timeout)
        except queue.Empty:
            run_batch(batcher.take())
            continue
        if isinstance(message, EndOfStream):
            run_batch(batcher.take())
            return
        if take(message):
            full = batcher.add(message, time.monotonic())
            if full is not None:
                run_batch(full)
