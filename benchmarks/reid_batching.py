"""Re-ID stage throughput with the OSNet onnx model: batch 1 against dynamic batching, in one run.

Producer processes (one per simulated camera) put PETS09-S2L1 person crops on a bounded queue as fast as
the stage takes them; the stage runs in this process. Prints crops/s of both settings and their ratio.

    python benchmarks/reid_batching.py --assets "$REID_ASSETS" --producers 4 --crops 200
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
import statistics
import threading
import time
from pathlib import Path

import cv2
import numpy as np
from common import begin, benchmark_parser

from pipeline.batching import MicroBatcher
from pipeline.embedders.onnx import OnnxEmbedder
from pipeline.messages import Crop, Embedding, EndOfStream
from pipeline.reid_stage import ReIDStage
from pipeline.runtime.serving import serve_batches

logger = logging.getLogger("reid_batching")


def pets_crops(assets: Path, frames: int) -> list[np.ndarray]:
    """Ground-truth person crops (BGR) of the first `frames` frames of PETS09-S2L1."""
    root = assets / "data" / "PETS09-S2L1"
    gt = np.loadtxt(root / "gt" / "gt.txt", delimiter=",", ndmin=2)
    capture = cv2.VideoCapture(str(root / "vtest.avi"))
    crops = []
    for index in range(1, frames + 1):
        ok, image = capture.read()
        if not ok:
            break
        height, width = image.shape[:2]
        for _, _, x, y, w, h in gt[gt[:, 0] == index][:, :6]:
            x1, y1 = max(int(x), 0), max(int(y), 0)
            x2, y2 = min(int(x + w), width), min(int(y + h), height)
            if x2 - x1 >= 8 and y2 - y1 >= 16:
                crops.append(image[y1:y2, x1:x2].copy())
    capture.release()
    return crops


def produce(camera: str, crops: list[np.ndarray], count: int, inbox, start) -> None:
    """One camera worker: waits for the start signal, then sends `count` crops."""
    start.wait()
    for i in range(count):
        inbox.put(Crop(camera, i % 50, i + 1, i / 7.0, crops[i % len(crops)], 1.0))


def serve(stage: ReIDStage, inbox, outbox) -> None:
    """The local runtime's re-ID loop: the stage's batches as its micro-batcher makes them."""

    def run_batch(crops: list[Crop]) -> None:
        for embedding in stage.update_batch(crops):
            outbox.put(embedding)

    serve_batches(inbox, MicroBatcher(stage.max_batch, stage.max_wait_ms), run_batch, take=lambda m: True)
    outbox.put(EndOfStream("reid"))


def measure(stage: ReIDStage, crops: list[np.ndarray], producers: int, count: int) -> float:
    """Crops per second from the start signal to the last embedding received."""
    context = mp.get_context("spawn")
    inbox, outbox, start = context.Queue(maxsize=256), context.Queue(), context.Event()
    workers = [
        context.Process(target=produce, args=(f"cam{i}", crops, count, inbox, start), daemon=True)
        for i in range(producers)
    ]
    for worker in workers:
        worker.start()
    runner = threading.Thread(target=serve, args=(stage, inbox, outbox), daemon=True)
    runner.start()
    time.sleep(2.0)  # let the spawned producers import and block on the start signal
    began = time.perf_counter()
    start.set()
    received = 0
    for worker in workers:
        worker.join()
    inbox.put(EndOfStream("benchmark"))
    while not isinstance(message := outbox.get(), EndOfStream):
        received += isinstance(message, Embedding)
    elapsed = time.perf_counter() - began
    runner.join()
    if received != producers * count:
        raise RuntimeError(f"expected {producers * count} embeddings, got {received}")
    return received / elapsed


def main() -> None:
    parser = benchmark_parser(__doc__.splitlines()[0])
    parser.add_argument("--producers", type=int, default=4, help="producer processes (cameras)")
    parser.add_argument("--crops", type=int, default=200, help="crops sent by each producer")
    parser.add_argument("--max-batch", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3, help="alternating runs of each setting")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    begin(parser, args)

    embedder = OnnxEmbedder(args.assets / "models" / "osnet_x0_25_msmt17.onnx", device=args.device)
    crops = pets_crops(args.assets, frames=60)
    embedder.embed(crops[: args.max_batch])  # warm up
    logger.info("%d PETS crops, %d producers x %d crops", len(crops), args.producers, args.crops)

    settings = {"batch 1": (1, 0.0), "dynamic": (args.max_batch, args.max_wait_ms)}
    rates: dict[str, list[float]] = {name: [] for name in settings}
    batch_sizes: dict[str, float] = {}
    embed_rates: dict[str, list[float]] = {name: [] for name in settings}
    for repeat in range(args.repeats):
        for name, (max_batch, max_wait_ms) in settings.items():
            stage = ReIDStage(embedder, max_batch=max_batch, max_wait_ms=max_wait_ms)
            rates[name].append(measure(stage, crops, args.producers, args.crops))
            batch_sizes[name] = stage.stats()["mean_batch_size"]
            embed_rates[name].append(stage.stats()["crops_per_second"])
            logger.info("run %d %-8s %.1f crops/s", repeat + 1, name, rates[name][-1])

    single = statistics.median(rates["batch 1"])
    dynamic = statistics.median(rates["dynamic"])
    print(f"cpu cores: {os.cpu_count()}, providers: {embedder.session.get_providers()}")
    for name, rate in (("batch 1", single), ("dynamic", dynamic)):
        max_batch, max_wait_ms = settings[name]
        print(
            f"{name}: {rate:.1f} crops/s end to end, {statistics.median(embed_rates[name]):.1f} crops/s in the "
            f"model (max_batch {max_batch}, max_wait_ms {max_wait_ms}, mean batch {batch_sizes[name]:.1f}); "
            f"runs {', '.join(f'{r:.0f}' for r in rates[name])}"
        )
    print(f"ratio:    {dynamic / single:.2f}x")


if __name__ == "__main__":
    main()
