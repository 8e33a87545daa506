"""From a TrainConfig to a trained VPM-Net: builds data, model, objective and optimizer, then runs the engine."""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from pipeline.errors import PipelineError
from reid.data import ImageDataset, PKSampler, ReIDDataset, build_transforms, load_dataset
from reid.engine import (
    CHECKPOINT_NAME,
    METRICS_NAME,
    Trainer,
    amp_dtype,
    append_jsonl,
    evaluate_model,
    load_checkpoint,
    resolve_device,
    save_checkpoint,
    warmup_cosine,
)
from reid.models.weights import load_vpm_state
from reid.objective import TrainingObjective
from reid.train_config import TrainConfig, config_from_dict

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def build_model(config: TrainConfig, num_classes: int, pretrained: str | None = None) -> nn.Module:
    """The registered model named in `config.model`, in its training mode, with `num_classes` identities."""
    from reid.models import create_model

    overrides = {**config.model.overrides, "num_classes": num_classes}
    try:
        model = create_model(config.model.name, pretrained=pretrained, **overrides)
    except KeyError as exc:
        raise PipelineError(f"model.name: {exc.args[0] if exc.args else exc}") from None
    model.set_mode(config.model.mode)
    return model


def eval_loaders(
    config: TrainConfig, dataset: ReIDDataset, model: nn.Module
) -> tuple[DataLoader, DataLoader]:
    """Query and gallery loaders with test-time transforms."""
    transform = build_transforms(input_size=model.input_size, mean=model.mean, std=model.std, train=False)
    return tuple(  # type: ignore[return-value]
        DataLoader(ImageDataset(samples=samples, transform=transform), batch_size=config.data.eval_batch_size,
                   shuffle=False, num_workers=config.data.num_workers)
        for samples in (dataset.query, dataset.gallery)
    )  # fmt: skip


def train_loader(config: TrainConfig, dataset: ReIDDataset, model: nn.Module) -> DataLoader:
    """PK-sampled training loader with the training augmentations."""
    data = config.data
    transform = build_transforms(
        input_size=model.input_size, mean=model.mean, std=model.std, train=True,
        flip_prob=data.flip_prob, pad=data.pad, erasing_prob=data.erasing_prob,
    )  # fmt: skip
    try:
        sampler = PKSampler([s.pid for s in dataset.train], p=data.p, k=data.k, seed=config.run.seed)
    except ValueError as exc:
        raise PipelineError(f"data.p/data.k for {data.root}: {exc}") from None
    return DataLoader(ImageDataset(samples=dataset.train, transform=transform), batch_sampler=sampler,
                      num_workers=data.num_workers, pin_memory=torch.cuda.is_available())  # fmt: skip


def build_objective(config: TrainConfig, dataset: ReIDDataset) -> TrainingObjective:
    """The loss terms of `config.loss`, with inverse-sqrt identity weights for MINP if asked."""
    loss = config.loss
    counts = np.bincount([s.pid for s in dataset.train], minlength=dataset.num_train_pids).tolist()
    return TrainingObjective(
        id_weight=loss.id_weight, label_smoothing=loss.label_smoothing, minp_weight=loss.minp_weight,
        minp_k=loss.minp_k, minp_tau=loss.minp_tau, minp_margin=loss.minp_margin,
        minp_class_weights=loss.minp_class_weights, class_counts=counts,
        triplet_weight=loss.triplet_weight, triplet_margin=loss.triplet_margin, i2t_weight=loss.i2t_weight,
        i2t_temperature=loss.i2t_temperature,
    )  # fmt: skip


def build_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The configured optimizer over `model.param_groups` (trainable parameters only)."""
    optim = config.optim
    groups = model.param_groups(
        optim.lr, prompt_lr_scale=optim.prompt_lr_scale, weight_decay=optim.weight_decay
    )
    if optim.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum)
    cls = torch.optim.AdamW if optim.optimizer == "adamw" else torch.optim.Adam
    return cls(groups, lr=optim.lr)


def train(
    config: TrainConfig, out_dir: str | Path, resume: str | Path | None = None, stop_after: int | None = None
) -> dict[str, Any]:
    """Train per `config`, writing checkpoint.pt, metrics.jsonl and config.yaml to `out_dir`; returns a summary.

    `stop_after` ends the run after that epoch (the schedule still spans optim.epochs), as an interruption
    would; `resume` continues from a checkpoint.
    """
    threads = torch.get_num_threads()
    if config.run.cpu_threads:
        torch.set_num_threads(config.run.cpu_threads)
    try:
        return _train(config, Path(out_dir), resume, stop_after)
    finally:
        torch.set_num_threads(threads)


def _train(
    config: TrainConfig, out_dir: Path, resume: str | Path | None, stop_after: int | None
) -> dict[str, Any]:
    checkpoint_path = out_dir / CHECKPOINT_NAME
    if resume is None and checkpoint_path.exists():
        raise PipelineError(f"{out_dir} already holds {CHECKPOINT_NAME}; pass --resume to continue it "
                            "or choose another output folder")  # fmt: skip
    state = load_checkpoint(resume) if resume is not None else None
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(config.to_dict(), sort_keys=False))
    seed_everything(config.run.seed)
    device = resolve_device(config.run.device)
    dataset = load_dataset(config.data.format, config.data.root)
    model = build_model(config, dataset.num_train_pids, pretrained=None if state else config.model.pretrained)
    loader = train_loader(config, dataset, model)
    optim = config.optim
    iters = len(loader)
    optimizer = build_optimizer(config, model)
    scheduler = warmup_cosine(
        optimizer, total_iters=optim.epochs * iters, warmup_iters=round(optim.warmup_epochs * iters),
        warmup_factor=optim.warmup_factor, min_lr_ratio=optim.min_lr_ratio,
    )  # fmt: skip
    trainer = Trainer(
        model=model, objective=build_objective(config, dataset), optimizer=optimizer, scheduler=scheduler,
        device=device, amp=amp_dtype(device, config.run.amp), grad_clip=optim.grad_clip,
        progress=config.run.progress,
    )  # fmt: skip
    start_epoch = 0
    if state is not None:
        saved_config = state["train_config"]
        if (
            state.get("num_classes") != dataset.num_train_pids
            or not isinstance(saved_config, dict)
            or saved_config.get("model") != config.to_dict()["model"]
        ):
            raise PipelineError(
                f"checkpoint {resume} was trained with another model or dataset than "
                f"{config.data.root}; resume with the config it was written with"
            )
        epoch = state.get("epoch")
        if not isinstance(epoch, int) or isinstance(epoch, bool) or epoch < 0:
            raise PipelineError(f"checkpoint {resume}: epoch must be an integer >= 0, got {epoch!r}")
        try:
            trainer.load_state_dict(state)
        except (KeyError, ValueError, TypeError, RuntimeError) as exc:
            raise PipelineError(
                f"checkpoint {resume} has no usable training state to resume "
                f"({exc.__class__.__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            ) from None
        start_epoch = epoch
        logger.info("resumed %s at epoch %d", resume, start_epoch)
    can_eval = bool(dataset.query) and bool(dataset.gallery)
    queries = eval_loaders(config, dataset, model) if can_eval else None
    metrics_path, last_eval = out_dir / METRICS_NAME, {}
    if config.run.eval_at_start and start_epoch == 0 and queries:
        last_eval = evaluate_model(model, *queries, rerank=config.run.rerank, device=device, amp=trainer.amp)
        append_jsonl(metrics_path, {"epoch": 0, **last_eval})
    last_epoch = min(optim.epochs, stop_after or optim.epochs)
    for epoch in range(start_epoch + 1, last_epoch + 1):
        loader.batch_sampler.set_epoch(epoch)
        started = time.perf_counter()
        logged = trainer.train_epoch(loader, epoch, optim.epochs)
        record = {"epoch": epoch, "lr": logged.pop("lr"), "loss": logged.pop("loss")}
        record |= {f"loss_{name}": value for name, value in logged.items()}
        record["train_s"] = round(time.perf_counter() - started, 3)
        due = config.run.eval_every and epoch % config.run.eval_every == 0
        if queries and (due or epoch == optim.epochs):
            last_eval = evaluate_model(
                model, *queries, rerank=config.run.rerank, device=device, amp=trainer.amp
            )
            record |= last_eval
        save_checkpoint(checkpoint_path, _checkpoint(trainer, config, epoch, dataset.num_train_pids))
        append_jsonl(metrics_path, record)
        logger.info(
            "epoch %d/%d %s", epoch, optim.epochs, " ".join(f"{k} {v:.4g}" for k, v in record.items())
        )
    if not can_eval:
        logger.warning("%s has no query/gallery split: trained without evaluation", config.data.root)
    return {"checkpoint": str(checkpoint_path), "epoch": last_epoch, "metrics": last_eval}


def _checkpoint(trainer: Trainer, config: TrainConfig, epoch: int, num_classes: int) -> dict[str, Any]:
    """Resumable state plus "config" (the model architecture, so create_model(pretrained=path) loads it)
    and "train_config" (the whole training config)."""
    model_config = getattr(trainer.model, "config", None)
    return {
        **trainer.state_dict(),
        "epoch": epoch,
        "config": model_config.to_dict() if model_config is not None else {"name": config.model.name},
        "train_config": config.to_dict(),
        "num_classes": num_classes,
    }


def model_from_checkpoint(
    state: dict[str, Any], device: torch.device | str = "cpu"
) -> tuple[nn.Module, TrainConfig]:
    """Rebuild the trained model (eval mode) and its training config from a loaded checkpoint."""
    num_classes, weights = state.get("num_classes"), state.get("model")
    if not isinstance(num_classes, int) or isinstance(num_classes, bool) or num_classes < 1:
        raise PipelineError(f"checkpoint num_classes: expected a positive integer, got {num_classes!r}")
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise PipelineError("checkpoint model: expected a state dict of tensors")
    config = config_from_dict(state["train_config"], source="checkpoint train_config")
    model = build_model(config, num_classes)
    load_vpm_state(model, weights, "checkpoint")
    return model.to(device).eval(), config
