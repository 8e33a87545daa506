"""Running a config: checks before anything starts, the output folder and its lock, then the runtime.

The runtime owns the stages' loops and channels: `pipeline.runtime.local` (processes and queues on this
machine, the default) or `pipeline.runtime.ray` (Ray actors, `runner.engine: ray`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
from pathlib import Path

from pipeline import build
from pipeline.config import RunConfig
from pipeline.errors import PipelineError
from pipeline.run_lock import RunLock
from pipeline.runtime.results import RunResult

log = logging.getLogger(__name__)

LOCK_NAME = ".lock"
# What a resumed run rewrites (and a fresh run moves to previous/<n>/).
EXPORTS = (
    "tracks.json",
    "mot",
    "videos",
    "run.json",
    "topology.json",
    "topology",
    "thumbnails",
    "report.html",
)


def run(
    config: RunConfig,
    out_dir: Path,
    *,
    max_frames: int | None = None,
    device: str | None = None,
    resume: bool = False,
    overwrite: bool = False,
    log_level: int = logging.WARNING,
    invocation: dict | None = None,
) -> RunResult:
    """Run every camera of `config` to its end (or until SIGINT/SIGTERM) and write the outputs.

    Everything is checked before OUT is touched; then OUT (and a shared store) is locked for the run.
    A fresh run into an OUT that holds an earlier run moves that run to OUT/previous/<n>/, or removes it
    with `overwrite`.
    """
    out_dir = Path(out_dir)
    device = device or config.device
    if config.runner.engine != "ray":  # Ray looks for GPUs in its cluster, not on this machine
        device = build.resolve_device(device)
    store = build.store_path(config, out_dir)
    _check_output(out_dir, store, resume)
    locks = [RunLock(out_dir / LOCK_NAME, f"output folder {out_dir}")]
    if config.store.path is not None:
        locks.append(RunLock(store.with_name(store.name + ".lock"), f"identity store {store}"))
    for lock in locks:
        lock.check()
    _check_engine(config)
    build.check_weights(config)
    fps = _preflight_sources(config)
    with contextlib.ExitStack() as held:
        for lock in locks:
            held.enter_context(lock)
        _prepare_output(config, out_dir, resume, overwrite)
        return _run_stages(config, out_dir, device, fps, max_frames, log_level, invocation)


def _run_stages(config, out_dir, device, fps, max_frames, log_level, invocation) -> RunResult:
    if config.runner.engine == "ray":
        from pipeline.runtime import ray as runtime
    else:
        from pipeline.runtime import local as runtime
    return runtime.run(config, out_dir, device, fps, max_frames, log_level, invocation)


def _check_engine(config: RunConfig) -> None:
    """The Ray engine needs the [ray] extra; say so before anything starts."""
    if config.runner.engine == "ray":
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            raise PipelineError(
                "runner.engine: ray needs Ray; install the extra: pip install 'reid-pipeline[ray]'"
            )


def _check_output(out_dir: Path, store: Path, resume: bool) -> None:
    """Refuse an output folder or store path the run cannot use, before anything is written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise PipelineError(f"output folder {out_dir} is a file; give a folder with -o")
    existing = next(p for p in (out_dir, *out_dir.resolve().parents) if p.exists())
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PipelineError(f"output folder {out_dir} is not writable ({existing}: permission denied)")
    if store.is_dir():
        raise PipelineError(f"store.path: {store} is a folder; give the path of a database file")
    if resume and not store.is_file():
        raise PipelineError(f"{out_dir}: nothing to resume (no identity store from an earlier run)")


def _prepare_output(config: RunConfig, out_dir: Path, resume: bool, overwrite: bool) -> None:
    try:
        probe = out_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise PipelineError(f"output folder {out_dir} is not writable ({e.strerror})") from None
    if resume:
        _archive(out_dir, EXPORTS)
        return
    # A fresh run starts a fresh gallery and event log; an earlier run's are kept unless asked otherwise.
    names = [*EXPORTS, "events.jsonl", *(["store"] if config.store.path is None else [])]
    if overwrite:
        for name in names:
            path = out_dir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        return
    archive = _archive(out_dir, names)
    if archive is not None:
        log.info("%s held an earlier run: moved its outputs to %s", out_dir, archive)


def _archive(out_dir: Path, names: list[str]) -> Path | None:
    """Move the outputs `names` of an earlier run to previous/<n>/, so this run cannot overwrite them."""
    names = [n for n in names if (out_dir / n).exists()]
    if not names:
        return None
    taken = [int(p.name) for p in (out_dir / "previous").glob("*") if p.name.isdigit()]
    archive = out_dir / "previous" / str(max(taken, default=0) + 1)
    archive.mkdir(parents=True)
    for name in names:
        (out_dir / name).replace(archive / name)
    return archive


def _preflight_sources(config: RunConfig) -> dict[str, float]:
    """Open every file source once so a missing or unreadable video fails before any process starts."""
    from pipeline.sources.file import FileSource

    fps = {}
    for camera in config.cameras:
        source = build.build_source(camera)
        if isinstance(source, FileSource):
            source.open()
            fps[camera.id] = source.fps
            source.close()
    return fps
