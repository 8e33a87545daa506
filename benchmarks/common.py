"""Shared pieces of the pipeline benchmarks: config writing, running the CLI, process-tree memory from /proc."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PETS_VIDEO = Path("data") / "PETS09-S2L1" / "vtest.avi"
DETECTOR_WEIGHTS = Path("models") / "yolov8n_int8.onnx"
REID_WEIGHTS = Path("models") / "osnet_x0_25_msmt17.onnx"
_PAGE = os.sysconf("SC_PAGE_SIZE")
MIB = 1024 * 1024


def write_config(path: Path, assets: Path, cameras: Sequence[dict], **sections: dict) -> Path:
    """Write a cameras.yaml with the assets' YOLOv8n detector and OSNet re-ID model; `sections` override."""
    config = {
        "device": "cpu",
        "cameras": list(cameras),
        "detector": {"name": "yolo", "weights": str(assets / DETECTOR_WEIGHTS)},
        "reid": {"embedder": "onnx", "weights": str(assets / REID_WEIGHTS)},
        "runner": {"progress": False},
    }
    for name, values in sections.items():
        config[name] = {**config.get(name, {}), **values}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def median(values: Sequence[float]) -> float:
    """Median of a non-empty sequence (NaN when empty)."""
    return statistics.median(values) if values else float("nan")


# --- process-tree memory -------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    """Direct children of `pid`, from /proc/PID/task/*/children."""
    found: list[int] = []
    try:
        for task in os.scandir(f"/proc/{pid}/task"):
            with open(f"{task.path}/children") as f:
                found.extend(int(c) for c in f.read().split())
    except OSError:
        pass
    return found


def process_tree(pid: int) -> list[int]:
    """`pid` and all its descendants that still exist."""
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo.extend(_children(current))
    return tree


def rss_bytes(pid: int) -> int:
    """Resident set size of one process in bytes (0 once it has gone)."""
    try:
        with open(f"/proc/{pid}/statm") as f:
            return int(f.read().split()[1]) * _PAGE
    except (OSError, IndexError, ValueError):
        return 0


def pss_bytes(pid: int) -> int:
    """Proportional set size in bytes: shared pages (the same libraries in every process) counted once."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except (OSError, IndexError, ValueError):
        pass
    return 0


def start_ticks(pid: int) -> int:
    """When a process started, in clock ticks since boot (orders processes by their start)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return 0


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def label_processes(root: int, pids: Sequence[int], stage_names: Sequence[str]) -> dict[int, str]:
    """Name the runner's processes: `runner`, then its spawned children in start order as `stage_names`.

    The runner starts one process per camera, then the re-ID stage, then the matcher; multiprocessing's
    resource tracker is named as such and anything else by its pid.
    """
    labels = {root: "runner"}
    spawned = []
    for pid in pids:
        if pid == root:
            continue
        command = _cmdline(pid)
        if "resource_tracker" in command:
            labels[pid] = "resource_tracker"
        elif "spawn_main" in command:
            spawned.append(pid)
        else:
            labels[pid] = f"pid {pid}"
    for name, pid in zip(stage_names, sorted(spawned, key=lambda pid: (start_ticks(pid), pid))):
        labels[pid] = name
    for pid in spawned:
        labels.setdefault(pid, f"pid {pid}")
    return labels


@dataclass
class MemorySampler:
    """Samples the RSS of a process tree every `interval_s` in a background thread; keeps the peaks.

    With `stage_names` (camera ids, then "reid", "matcher") the runner's processes are named as
    `label_processes` does; otherwise by pid.
    """

    pid: int
    interval_s: float = 0.2
    stage_names: Sequence[str] = ()
    peak_bytes: int = 0
    peak_pss_bytes: int = 0
    peak_per_process: dict[str, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def sample(self) -> dict[str, int]:
        """RSS in bytes of every process of the tree now, by label; updates the peaks."""
        pids = process_tree(self.pid)
        if any(pid not in self.labels for pid in pids):
            self.labels.update(label_processes(self.pid, pids, self.stage_names))
        per_process = {self.labels[pid]: rss_bytes(pid) for pid in pids}
        self.peak_bytes = max(self.peak_bytes, sum(per_process.values()))
        self.peak_pss_bytes = max(self.peak_pss_bytes, sum(pss_bytes(pid) for pid in pids))
        for label, rss in per_process.items():
            self.peak_per_process[label] = max(self.peak_per_process.get(label, 0), rss)
        return per_process

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def __enter__(self) -> MemorySampler:
        self._thread = threading.Thread(target=self._loop, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


# --- running the pipeline ------------------------------------------------------------------------------


@dataclass(frozen=True)
class PipelineRun:
    """One `reid-pipeline run`: its run.json, the command's wall seconds and the tree's peak RSS."""

    out_dir: Path
    info: dict
    command_seconds: float
    peak_rss_bytes: int
    peak_rss_per_process: dict[str, int]
    peak_pss_bytes: int = 0

    @property
    def frames(self) -> int:
        """Frames processed over all cameras."""
        return sum(c.get("frames_processed", 0) for c in self.info["cameras"].values())

    @property
    def run_seconds(self) -> float:
        """The runner's own wall time from run.json (processes started, run, outputs written)."""
        return float(self.info["wall_seconds"])

    def camera_seconds(self, camera_id: str) -> dict[str, float]:
        """Seconds per step (detect, track, sample, send, video) a camera worker spent."""
        return dict(self.info["cameras"][camera_id]["seconds"])


def pipeline_command(
    config: Path, out_dir: Path, max_frames: int | None = None, overrides: Sequence[str] = ()
) -> list[str]:
    """The `reid-pipeline run` command line, through this interpreter; `overrides` are `--set` values."""
    command = [sys.executable, "-m", "pipeline.cli", "-q", "run", str(config), "-o", str(out_dir)]
    command += ["--no-progress"]
    for override in overrides:
        command += ["--set", override]
    if max_frames:
        command += ["--max-frames", str(max_frames)]
    return command


def run_pipeline(
    config: Path,
    out_dir: Path,
    *,
    max_frames: int | None = None,
    overrides: Sequence[str] = (),
    env: dict[str, str] | None = None,
    stage_names: Sequence[str] = (),
    sample_interval_s: float | None = 0.2,
    timeout_s: float | None = None,
) -> PipelineRun:
    """Run the CLI on `config` to its end, sampling the tree's RSS (unless the interval is None)."""
    command = pipeline_command(config, out_dir, max_frames, overrides)
    environment = {**os.environ, **(env or {})}
    began = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=ROOT, env=environment, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    sampler = MemorySampler(process.pid, sample_interval_s or 0.2, stage_names)
    if sample_interval_s is None:
        _, stderr = process.communicate(timeout=timeout_s)
    else:
        with sampler:
            _, stderr = process.communicate(timeout=timeout_s)
    seconds = time.perf_counter() - began
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited with {process.returncode}:\n{stderr[-2000:]}")
    info = json.loads((out_dir / "run.json").read_text())
    return PipelineRun(
        out_dir, info, seconds, sampler.peak_bytes, sampler.peak_per_process, sampler.peak_pss_bytes
    )


def benchmark_parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with `--assets`, which defaults to REID_ASSETS."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--assets", type=Path, default=os.environ.get("REID_ASSETS"))
    return parser


def begin(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Log progress to stderr; stop with a usage error when no assets folder was given."""
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    if args.assets is None:
        parser.error("--assets is required when REID_ASSETS is unset")
