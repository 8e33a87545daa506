"""VPM-Net training loop (AMP, warmup + cosine, atomic checkpoints, resume) and Market-1501 evaluation."""

from __future__ import annotations

import contextlib
import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from pipeline.errors import ConfigError, PipelineError
from reid.metrics import evaluate_rank, re_ranking
from reid.models.weights import load_torch_file, save_torch_file

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "checkpoint.pt"
METRICS_NAME = "metrics.jsonl"


def resolve_device(name: str = "auto") -> torch.device:
    """`auto` -> cuda when available, else cpu; a missing CUDA device or a bad name is a ConfigError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"device: expected 'auto', 'cpu' or 'cuda[:N]', got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r}: no CUDA device is available here; use 'cpu' or 'auto'")
    return device


def amp_dtype(device: torch.device, amp: str = "auto") -> torch.dtype | None:
    """Autocast dtype: None on CPU or when off; bf16 where the GPU supports it for `auto`."""
    if device.type != "cuda" or amp == "off":
        return None
    if amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[amp]


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def warmup_cosine(
    optimizer: torch.optim.Optimizer, *, total_iters: int, warmup_iters: int, warmup_factor: float,
    min_lr_ratio: float,
) -> torch.optim.lr_scheduler.LambdaLR:  # fmt: skip
    """Per-iteration schedule: linear from warmup_factor to 1 over warmup_iters, then cosine to min_lr_ratio."""

    def factor(it: int) -> float:
        if it < warmup_iters:
            return warmup_factor + (1.0 - warmup_factor) * it / warmup_iters
        progress = min(1.0, (it - warmup_iters) / max(1, total_iters - warmup_iters))
        return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _worker_safe(loader: Iterable) -> Iterator:
    """Iterate a DataLoader, turning a PipelineError raised in a worker back into its one-line message."""
    try:
        yield from loader
    except PipelineError as exc:
        lines = [line for line in str(exc).splitlines() if line.strip()]
        last = lines[-1] if lines else str(exc)
        raise PipelineError(last.split("PipelineError: ", 1)[-1]) from None


class Trainer:
    """Runs training epochs of `model` under `objective`; owns optimizer, schedule, AMP scaler and checkpoints."""

    def __init__(
        self,
        *,
        model: nn.Module,
        objective: nn.Module,
        optimizer: torch.optim.Optimizer,
        scheduler: torch.optim.lr_scheduler.LRScheduler,
        device: torch.device,
        amp: torch.dtype | None = None,
        grad_clip: float | None = None,
        progress: bool = True,
    ) -> None:
        self.model, self.objective = model.to(device), objective.to(device)
        self.optimizer, self.scheduler = optimizer, scheduler
        self.device, self.amp, self.grad_clip, self.progress = device, amp, grad_clip, progress
        self.scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)

    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, float]:
        """One optimisation step on a batch; returns the named loss terms and the learning rate."""
        self.model.train()
        images, labels = images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)
        with _autocast(self.device, self.amp):
            outputs = self.model(images)
            text = self.model.text_features_for_labels(labels) if self.objective.needs_text else None
            terms = self.objective(outputs, labels, text)
        if not torch.isfinite(terms["loss"]):
            raise FloatingPointError(
                f"training loss is {terms['loss'].item()}; lower optim.lr or use amp: bf16"
            )
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(terms["loss"]).backward()
        if self.grad_clip:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        lr = max(group["lr"] for group in self.optimizer.param_groups)
        self.scheduler.step()
        return {**{name: float(value.detach()) for name, value in terms.items()}, "lr": lr}

    def train_epoch(self, loader: DataLoader, epoch: int, num_epochs: int) -> dict[str, float]:
        """One pass over `loader`; returns the mean of each logged value."""
        from tqdm import tqdm

        sums: dict[str, float] = defaultdict(float)
        steps = 0
        bar = tqdm(
            total=len(loader), desc=f"epoch {epoch}/{num_epochs}", disable=not self.progress, leave=False
        )
        for images, labels, _ in _worker_safe(loader):
            logged = self.train_step(images, labels)
            steps += 1
            for name, value in logged.items():
                sums[name] += value
            bar.set_postfix(loss=f"{logged['loss']:.3f}", lr=f"{logged['lr']:.2e}")
            bar.update()
        bar.close()
        if hasattr(self.model, "refresh_knowledge_bank") and self.objective.needs_text:
            self.model.refresh_knowledge_bank()
        return {name: total / max(steps, 1) for name, total in sums.items()}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume: model, optimizer, schedule, scaler and the torch RNG."""
        state = {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": torch.get_rng_state(),
        }
        if torch.cuda.is_available():
            state["cuda_rng"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` saved."""
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        torch.set_rng_state(state["rng"])
        if "cuda_rng" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda_rng"])


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> None:
    """Write `state` as tensors and plain data (it loads with weights_only=True), atomically."""
    save_torch_file(state, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a training checkpoint (tensors and plain data only); a missing or unusable file is a PipelineError."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise PipelineError(f"checkpoint {path} not found; pass the checkpoint.pt a training run wrote")
    state = load_torch_file(path, "checkpoint", map_location)
    if not isinstance(state, dict) or "model" not in state or "train_config" not in state:
        raise PipelineError(
            f"{path} is not a VPM-Net training checkpoint (no 'model' and 'train_config' entries)"
        )
    return state


def append_jsonl(path: str | Path, record: dict[str, Any]) -> None:
    """Append one JSON line and flush it."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()


@torch.no_grad()
def extract_features(
    model: nn.Module, loader: DataLoader, device: torch.device | None = None, amp: torch.dtype | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised features (N, D) float32, pids (N,) and camids (N,) of every image in `loader`."""
    device = device or next(model.parameters()).device
    model.eval()
    feats, pids, camids = [], [], []
    for images, batch_pids, batch_camids in _worker_safe(loader):
        with _autocast(device, amp):
            feats.append(model.encode(images.to(device)).float().cpu())
        pids.append(np.asarray(batch_pids))
        camids.append(np.asarray(batch_camids))
    return torch.cat(feats).numpy(), np.concatenate(pids), np.concatenate(camids)


def evaluate_model(
    model: nn.Module,
    query_loader: DataLoader,
    gallery_loader: DataLoader,
    rerank: bool = False,
    device: torch.device | None = None,
    amp: torch.dtype | None = None,
) -> dict[str, float]:
    """Rank-1/5/10 and mAP of `model` (its `encode`) on query vs gallery, Market-1501 protocol, cosine distance."""
    q_feat, q_pids, q_cams = extract_features(model, query_loader, device, amp)
    g_feat, g_pids, g_cams = extract_features(model, gallery_loader, device, amp)
    distmat = np.clip(1.0 - q_feat @ g_feat.T, 0.0, None)  # (Q, G)
    if rerank:
        q_q = np.clip(1.0 - q_feat @ q_feat.T, 0.0, None)
        g_g = np.clip(1.0 - g_feat @ g_feat.T, 0.0, None)
        distmat = re_ranking(distmat, q_q, g_g)
    cmc, mean_ap = evaluate_rank(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    return {f"rank{r}": float(cmc[min(r, len(cmc)) - 1]) for r in (1, 5, 10)} | {"mAP": float(mean_ap)}
