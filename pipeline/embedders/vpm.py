"""The `vpm` embedder: VPM-Net in torch behind the Embedder protocol (cuda + fp16 autocast, else cpu fp32)."""

from __future__ import annotations

import logging
import os
from contextlib import nullcontext

import numpy as np
import torch

from pipeline.embedders.base import crops_to_batch, l2_normalize, register_embedder
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)


@register_embedder("vpm")
class VPMEmbedder:
    """Embeds BGR person crops with VPM-Net; features are L2-normalised float32 (N, dim)."""

    def __init__(
        self,
        checkpoint: str | os.PathLike | None = None,
        model: str = "vpm_vit_b16",
        pretrained: str | os.PathLike | None = None,
        device: str = "auto",
        batch_size: int = 64,
    ) -> None:
        from reid.engine import resolve_device
        from reid.models import create_model

        if checkpoint is not None and pretrained is not None:
            raise ConfigError(
                "vpm embedder: give either checkpoint (a trained VPM-Net) or pretrained, not both"
            )
        if batch_size < 1:
            raise ConfigError(f"vpm embedder batch_size: expected >= 1, got {batch_size}")
        if checkpoint is None and pretrained is None:
            logger.warning("vpm embedder has no checkpoint or pretrained weights: its embeddings are random")
        self.device = resolve_device(device)
        self.batch_size = int(batch_size)
        try:
            self.model = create_model(model, pretrained=checkpoint if checkpoint is not None else pretrained)
        except KeyError as exc:  # an unknown model name; the message lists the close matches
            raise ConfigError(f"vpm embedder model: {exc.args[0] if exc.args else exc}") from None
        self.model.eval().to(self.device)
        self.dim = int(self.model.embed_dim)
        self.input_size = tuple(self.model.input_size)
        self.mean = tuple(self.model.mean)
        self.std = tuple(self.model.std)
        self.fp16 = self.device.type == "cuda"
        logger.info(
            "vpm embedder %s on %s (%s), dim %d, batch %d",
            model,
            self.device,
            "fp16 autocast" if self.fp16 else "fp32",
            self.dim,
            self.batch_size,
        )

    def preprocess(self, crops: list[np.ndarray]) -> torch.Tensor:
        """BGR uint8 crops of any size -> normalised RGB batch (N, 3, H, W) float32 on the model's device."""
        return torch.from_numpy(crops_to_batch(crops, self.input_size, self.mean, self.std)).to(self.device)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """L2-normalised features (N, dim) of BGR crops of any sizes."""
        if not crops:
            return np.zeros((0, self.dim), np.float32)
        outputs = []
        autocast = torch.autocast("cuda", dtype=torch.float16) if self.fp16 else nullcontext()
        with torch.inference_mode(), autocast:
            for start in range(0, len(crops), self.batch_size):
                images = self.preprocess(crops[start : start + self.batch_size])
                outputs.append(self.model.encode(images).float().cpu().numpy())
        return l2_normalize(np.concatenate(outputs))  # renormalise: fp16 rounding moves norms slightly


def check_weights(
    checkpoint: str | os.PathLike | None = None,
    model: str = "vpm_vit_b16",
    pretrained: str | os.PathLike | None = None,
) -> None:
    """Build the embedder once on the CPU, as the re-ID stage will: a checkpoint or tag that cannot load fails here.

    Loading is the only complete check of a VPM-Net checkpoint (its architecture must fit the model's), so this
    costs one model build; with neither weights nor a tag there is nothing to load and only the name is checked.
    """
    from reid.models.registry import check_model_name

    try:
        check_model_name(model)
    except KeyError as exc:
        raise ConfigError(f"vpm embedder model: {exc.args[0]}") from None
    if checkpoint is None and pretrained is None:
        return
    embedder = VPMEmbedder(checkpoint=checkpoint, model=model, pretrained=pretrained, device="cpu")
    del embedder
