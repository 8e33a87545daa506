"""VPM-Net: a CLIP image encoder with deep visual prompts, a knowledge-aware network and a BNNeck head."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from reid.models.backbone import ImageEncoder, TextEncoder
from reid.models.config import MODES
from reid.models.heads import BNNeckHead
from reid.models.kan import IdentityTextContext, KnowledgeAttention
from reid.models.prompts import DeepPrompts

# parameters that belong to the pretrained CLIP image tower (frozen in prompt mode)
_BACKBONE_PREFIX = "image_encoder."
# never trained: the text tower defines the joint space the knowledge bank lives in; BNNeck has no shift
_ALWAYS_FROZEN_PREFIXES = ("text_encoder.", "head.bn.bias")
_NO_DECAY_NAMES = ("prompts.tokens", "identity_text.ctx", "positional_embedding", "class_embedding")


class VPMNet(nn.Module):
    """Person re-ID network; `forward` returns logits and features for training, `encode` the search embedding.

    Use `encode` (normalised [pre-BN CLS, projected] concatenation, `embed_dim` wide) for image-to-image
    retrieval, and `encode_image_proj` (normalised projected feature, `text_dim` wide) against `encode_text`
    for text-to-image search: only the projected feature shares CLIP's joint space with the text encoder.
    """

    def __init__(
        self,
        *,
        image_encoder: ImageEncoder,
        text_encoder: TextEncoder,
        num_classes: int,
        vpt: bool = True,
        num_prompts: int = 8,
        prompt_dropout: float = 0.0,
        kan: bool = True,
        kan_heads: int = 8,
        kan_dim: int = 256,
        attributes: Sequence[str] = (),
        attribute_template: str = "a photo of a person {}.",
        identity_template: str = "a photo of a X X X X person.",
        mode: str = "prompt",
        mean: Sequence[float] = (0.48145466, 0.4578275, 0.40821073),
        std: Sequence[float] = (0.26862954, 0.26130258, 0.27577711),
    ) -> None:
        super().__init__()
        self.image_encoder = image_encoder
        self.text_encoder = text_encoder
        self.num_classes = int(num_classes)
        self.input_size: tuple[int, int] = tuple(image_encoder.input_size)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        width, text_dim = image_encoder.width, image_encoder.output_dim
        assert text_encoder.output_dim == text_dim, (text_encoder.output_dim, text_dim)
        self.text_dim = text_dim
        self.embed_dim = width + text_dim
        self.num_prompts = int(num_prompts) if vpt else 0
        self.prompts = (
            DeepPrompts(
                num_layers=image_encoder.num_layers,
                num_prompts=num_prompts,
                width=width,
                patch_area=image_encoder.patch_size[0] * image_encoder.patch_size[1],
                dropout=prompt_dropout,
            )
            if vpt
            else None
        )
        self.identity_text = IdentityTextContext(
            text_encoder=text_encoder, template=identity_template, num_classes=self.num_classes
        )
        self.kan = None
        if kan:
            with torch.no_grad():
                phrases = [attribute_template.format(a) for a in attributes]
                bank = self.encode_text(phrases) if phrases else torch.zeros(0, text_dim)
                # until refresh_knowledge_bank() runs, every identity slot holds the generic "person" prompt
                generic = self.encode_text([attribute_template.format("").replace(" .", ".")])
            self.kan = KnowledgeAttention(
                width=width, text_dim=text_dim, attribute_bank=bank, num_classes=self.num_classes,
                heads=kan_heads, dim=kan_dim,
            )  # fmt: skip
            self.kan.set_identity_bank(generic.expand(self.num_classes, -1))
        self.head = BNNeckHead(in_dim=self.embed_dim, num_classes=self.num_classes)
        self.mode = mode
        self.set_mode(mode)

    # ---- features -------------------------------------------------------------------------------------
    def forward_features(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Images (B, 3, H, W) -> {"cls": (B, D) pre-BN CLS, "proj": (B, E) joint-space, "tokens": (B, N, D)}."""
        x = self.image_encoder.embed(images)  # (B, 1+N, D)
        for i, block in enumerate(self.image_encoder.blocks):
            if self.prompts is not None:
                x = self.prompts(x, i)  # (B, 1+P+N, D)
            x = block(x)
        x = self.image_encoder.norm(x)
        visual = torch.cat([x[:, :1], x[:, 1 + self.num_prompts :]], dim=1)  # (B, 1+N, D), prompts dropped
        cls = self.kan(visual) if self.kan is not None else visual[:, 0]  # (B, D)
        proj = self.image_encoder.project(cls)  # (B, E)
        return {"cls": cls, "proj": proj, "tokens": visual[:, 1:]}

    def forward_head(self, features: dict[str, torch.Tensor], pre_logits: bool = False) -> torch.Tensor:
        """Identity logits (B, C) from forward_features' dict, or the BNNeck feature (B, D+E) when pre_logits."""
        feat = torch.cat([features["cls"], features["proj"]], dim=-1)  # (B, D+E)
        return self.head(feat, pre_logits=pre_logits)

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """Training outputs: "logits" (B, C), "feat" (B, D+E) pre-BN retrieval feature, "proj" (B, E), "cls"."""
        features = self.forward_features(images)
        feat = torch.cat([features["cls"], features["proj"]], dim=-1)
        return {"logits": self.head(feat), "feat": feat, "proj": features["proj"], "cls": features["cls"]}

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised retrieval embeddings (B, embed_dim); the caller owns device, precision and no_grad."""
        features = self.forward_features(images)
        return F.normalize(torch.cat([features["cls"], features["proj"]], dim=-1), dim=-1)

    def encode_image_proj(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image features in CLIP's joint space (B, text_dim): compare with encode_text."""
        return F.normalize(self.forward_features(images)["proj"], dim=-1)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """L2-normalised text features (T, text_dim) in the space of encode_image_proj."""
        return F.normalize(self.text_encoder(self.text_encoder.tokenize(list(texts))), dim=-1)

    def text_features_for_labels(self, labels: torch.Tensor) -> torch.Tensor:
        """Features (B, text_dim), not normalised, of each label's learnable identity prompt (for i2t losses)."""
        embeddings, eot = self.identity_text(labels, self.text_encoder.token_embedding)  # (B, L, Dt), (B,)
        return self.text_encoder.encode_embeddings(embeddings, eot)

    @torch.no_grad()
    def refresh_knowledge_bank(self, batch_size: int = 256) -> None:
        """Recompute the identity part of KAN's bank from the learnt identity context (call after it trains)."""
        if self.kan is None:
            return
        device = self.identity_text.ctx.device
        labels = torch.arange(self.num_classes, device=device)
        features = [self.text_features_for_labels(chunk) for chunk in labels.split(batch_size)]
        self.kan.set_identity_bank(torch.cat(features))

    # ---- training setup -------------------------------------------------------------------------------
    def set_mode(self, mode: str) -> VPMNet:
        """'prompt': freeze the CLIP towers (prompts, KAN, heads, identity context train); 'full': image tower too."""
        if mode not in MODES:
            raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
        for name, param in self.named_parameters():
            if name.startswith(_ALWAYS_FROZEN_PREFIXES):
                param.requires_grad_(False)
            elif name.startswith(_BACKBONE_PREFIX):
                param.requires_grad_(mode == "full")
            else:
                param.requires_grad_(True)
        self.mode = mode
        return self

    def param_groups(
        self, base_lr: float, prompt_lr_scale: float = 10.0, weight_decay: float = 1e-4
    ) -> list[dict]:
        """Optimizer groups of trainable parameters: CLIP tower at base_lr, new parts at base_lr*prompt_lr_scale."""
        buckets: dict[tuple[str, bool], list[nn.Parameter]] = {}
        for name, param in self.named_parameters():
            if not param.requires_grad:
                continue
            part = "backbone" if name.startswith(_BACKBONE_PREFIX) else "new"
            decay = param.ndim >= 2 and not any(n in name for n in _NO_DECAY_NAMES)
            buckets.setdefault((part, decay), []).append(param)
        groups = []
        for (part, decay), params in sorted(buckets.items()):
            lr = base_lr if part == "backbone" else base_lr * prompt_lr_scale
            name = f"{part}{'' if decay else '_no_decay'}"
            groups.append(
                {"name": name, "params": params, "lr": lr, "weight_decay": weight_decay if decay else 0.0}
            )
        return groups
