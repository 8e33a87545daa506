"""Exclusive locks on a run's output folder and identity store, so two runs never write into one."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from pipeline.errors import PipelineError


class RunLock:
    """An advisory `flock` on `path`, holding the owner's PID; the kernel drops it when the owner dies.

    A second holder is refused with one line naming what is locked and the PID that holds it.
    """

    def __init__(self, path: Path, what: str) -> None:
        self.path = Path(path)
        self.what = what
        self._fd: int | None = None

    def check(self) -> None:
        """Refuse now if another run holds the lock, creating nothing; `acquire` takes it later."""
        try:
            fd = os.open(self.path, os.O_RDWR)
        except FileNotFoundError:
            return
        self._lock(fd)
        os.close(fd)

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self._lock(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def _lock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise PipelineError(
                f"{self.what} is in use by another run (PID {holder}); wait for it to end or use another one"
            ) from None

    def release(self) -> None:
        # The file stays: unlinking a lock file lets a waiting run lock a name another run then recreates.
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self._fd, 0)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
