"""VPM-Net GPU benchmark: embedding throughput (fp16 autocast) and one training step's time (MINP + CE).

Run from the repository root: `python benchmarks/vpm_gpu.py` (random weights; no download, no data needed).
Prints one line per figure and a final JSON line. Exits 0 with a message when no CUDA device exists.
`--device cpu --model vpm_tiny` runs the same code on a CPU as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from pipeline.embedders.vpm import VPMEmbedder
from reid.losses import CrossEntropyLabelSmooth, MINPLoss

logger = logging.getLogger("vpm_gpu")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda" else nullcontext()


def time_encode(model, device: torch.device, batch: int, iters: int, warmup: int) -> float:
    """Crops per second of model.encode on a resident (batch, 3, H, W) tensor under fp16 autocast."""
    images = torch.randn(batch, 3, *model.input_size, device=device)
    with torch.inference_mode(), _autocast(device):
        for _ in range(warmup):
            model.encode(images)
        _sync(device)
        start = time.perf_counter()
        for _ in range(iters):
            model.encode(images)
        _sync(device)
    return batch * iters / (time.perf_counter() - start)


def time_embedder(embedder: VPMEmbedder, batch: int, iters: int, warmup: int) -> float:
    """Crops per second through the pipeline embedder: BGR crops of mixed sizes, resize, transfer, encode."""
    rng = np.random.default_rng(0)
    sizes = zip(rng.integers(80, 300, batch), rng.integers(40, 150, batch), strict=True)
    crops = [rng.integers(0, 256, (int(h), int(w), 3), dtype=np.uint8) for h, w in sizes]
    for _ in range(warmup):
        embedder.embed(crops)
    start = time.perf_counter()
    for _ in range(iters):
        embedder.embed(crops)
    return batch * iters / (time.perf_counter() - start)


def time_train_step(model, device: torch.device, batch: int, mode: str, iters: int, warmup: int) -> dict:
    """Seconds per optimizer step (forward, CE + MINP, backward, Adam) on a PK batch, with AMP on CUDA."""
    model.set_mode(mode).train()
    optimizer = torch.optim.Adam(model.param_groups(base_lr=5e-6, prompt_lr_scale=10))
    scaler = torch.amp.GradScaler("cuda", enabled=device.type == "cuda")
    ce, minp = CrossEntropyLabelSmooth(0.1), MINPLoss(k=5, tau=0.1, margin=0.3)
    k = 4
    labels = torch.arange(batch // k, device=device).repeat_interleave(k) % model.num_classes
    images = torch.randn(len(labels), 3, *model.input_size, device=device)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with _autocast(device):
            out = model(images)
            loss = ce(out["logits"], labels) + minp(out["feat"], labels)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        return float(loss.detach())

    for _ in range(warmup):
        step()
    _sync(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    losses = [step() for _ in range(iters)]
    _sync(device)
    seconds = (time.perf_counter() - start) / max(iters, 1)
    peak = round(torch.cuda.max_memory_allocated(device) / 2**30, 2) if device.type == "cuda" else None
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.eval()
    return {"seconds": seconds, "peak_gib": peak, "trainable_params": trainable, "loss": losses[-1]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="vpm_vit_b16")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu for a smoke run")
    parser.add_argument("--batches", type=int, nargs="+", default=[64, 128, 256])
    parser.add_argument("--train-batch", type=int, default=64)
    parser.add_argument("--modes", nargs="+", default=["prompt", "full"], choices=["prompt", "full"])
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)

    if args.device.startswith("cuda") and not torch.cuda.is_available():
        logger.info(
            "no CUDA device here: nothing to benchmark (use --device cpu --model vpm_tiny for a smoke run)"
        )
        return 0
    device = torch.device(args.device)
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    embedder = VPMEmbedder(model=args.model, device=str(device), batch_size=max(args.batches))
    model = embedder.model  # random weights: speed does not depend on them
    params = sum(p.numel() for p in model.parameters())
    image_params = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("text_encoder."))
    results: dict = {
        "model": args.model,
        "device": name,
        "torch": torch.__version__,
        "params_total": params,
        "params_without_text_tower": image_params,
        "embed_dim": model.embed_dim,
        "input_size": list(model.input_size),
        "encode_crops_per_s": {},
        "embedder_crops_per_s": {},
        "train_step": {},
    }
    logger.info(
        "%s on %s: %.1fM parameters (%.1fM without the text tower), embedding %d, input %s",
        args.model,
        name,
        params / 1e6,
        image_params / 1e6,
        model.embed_dim,
        model.input_size,
    )
    precision = "fp16 autocast" if device.type == "cuda" else "fp32"
    for batch in args.batches:
        rate = time_encode(model, device, batch, args.iters, args.warmup)
        results["encode_crops_per_s"][batch] = round(rate, 1)
        logger.info("encode, %s, batch %4d: %10.1f crops/s", precision, batch, rate)
    batch = args.batches[0]
    rate = time_embedder(embedder, batch, max(args.iters // 2, 1), min(args.warmup, 2))
    results["embedder_crops_per_s"][batch] = round(rate, 1)
    logger.info("vpm embedder (BGR crops, cpu resize + transfer), batch %d: %.1f crops/s", batch, rate)
    for mode in args.modes:
        step = time_train_step(model, device, args.train_batch, mode, args.iters, args.warmup)
        results["train_step"][mode] = step
        logger.info(
            "train step (%s mode, CE + MINP, %s), batch %d: %.1f ms, peak %s GiB, %.2fM trainable",
            mode,
            precision,
            args.train_batch,
            step["seconds"] * 1e3,
            step["peak_gib"],
            step["trainable_params"] / 1e6,
        )
    line = json.dumps(results)
    logger.info("%s", line)
    if args.json is not None:
        args.json.write_text(line + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
