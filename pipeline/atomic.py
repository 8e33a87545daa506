"""Write files under a temporary name and rename them into place when complete."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def partial_path(path: Path) -> Path:
    """The temporary name a file is written under: `name.partial.ext`, so tools still know its type."""
    return path.with_name(f"{path.stem}.partial{path.suffix}")


@contextmanager
def atomic_open(path: Path, mode: str = "w") -> Iterator[IO]:
    """Open `path` for writing; the file appears under its name only when the block succeeds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = partial_path(path)
    with open(tmp, mode) as f:
        yield f
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def write_json(path: Path, data: object) -> None:
    """Write JSON atomically."""
    with atomic_open(path) as f:
        json.dump(data, f, indent=1)
        f.write("\n")
