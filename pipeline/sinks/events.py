"""events.jsonl: one JSON line per identity event, flushed as it happens so a stopped run keeps them."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

from pipeline.messages import IdentityEvent


class EventLog:
    """Appends events to a JSONL file, one flushed line each."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._file = open(path, "a", buffering=1)  # noqa: SIM115 (open for the whole run)

    def write(self, event: IdentityEvent | dict) -> None:
        record = dataclasses.asdict(event) if isinstance(event, IdentityEvent) else event
        record = {**record, "emitted_at": round(time.time(), 4)}  # Unix time written: latency measurements
        self._file.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
