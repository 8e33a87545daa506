"""Knowledge-aware network (KAN): visual tokens attend to a bank of CLIP text embeddings, gated into CLS."""

from __future__ import annotations

import torch
from torch import nn

from reid.models.backbone import TextEncoder


class IdentityTextContext(nn.Module):
    """Learnable per-identity context tokens spliced into a text template (CLIP-ReID stage 1)."""

    def __init__(self, *, text_encoder: TextEncoder, template: str, num_classes: int) -> None:
        super().__init__()
        ids = text_encoder.tokenize([template])[0].cpu()  # (L,)
        placeholder = int(text_encoder.tokenize(["X"])[0, 1])
        slots = (ids == placeholder).nonzero().flatten()
        assert len(slots) >= 1 and bool((slots.diff() == 1).all()), (
            f"X slots must be contiguous in {template!r}"
        )
        eot = int(ids.argmax())
        self.start, self.num_ctx = int(slots[0]), len(slots)
        self.register_buffer("template_ids", ids[: eot + 1].clone(), persistent=False)  # (L',)
        self.eot_index = eot
        self.num_classes = num_classes
        self.ctx = nn.Parameter(
            torch.randn(num_classes, self.num_ctx, text_encoder.width) * 0.02
        )  # (C, X, Dt)

    def forward(
        self, labels: torch.Tensor, token_embedding: nn.Embedding
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings (B, L', Dt) of each label's prompt and their end-of-text positions (B,)."""
        template = token_embedding(self.template_ids).to(self.ctx.dtype)  # (L', Dt)
        template = template.unsqueeze(0).expand(len(labels), -1, -1)  # (B, L', Dt)
        ctx = self.ctx[labels]  # (B, X, Dt)
        end = self.start + self.num_ctx
        embeddings = torch.cat([template[:, : self.start], ctx, template[:, end:]], dim=1)
        eot = torch.full((len(labels),), self.eot_index, dtype=torch.long, device=labels.device)
        return embeddings, eot


class KnowledgeAttention(nn.Module):
    """Cross-attention from visual tokens to a knowledge bank (attribute + identity text features), gated into CLS."""

    def __init__(
        self,
        *,
        width: int,
        text_dim: int,
        attribute_bank: torch.Tensor,
        num_classes: int,
        heads: int,
        dim: int,
    ) -> None:
        super().__init__()
        assert attribute_bank.ndim == 2 and attribute_bank.shape[1] == text_dim, attribute_bank.shape
        # both banks live in state_dict so a loaded checkpoint carries the knowledge it was trained with
        self.register_buffer("attribute_bank", attribute_bank.clone())  # (A, E)
        self.register_buffer("identity_bank", torch.zeros(num_classes, text_dim))  # (C, E)
        self.norm = nn.LayerNorm(width)
        self.query = nn.Linear(width, dim)
        self.attn = nn.MultiheadAttention(dim, heads, kdim=text_dim, vdim=text_dim, batch_first=True)
        self.out = nn.Linear(dim, width)
        self.gate = nn.Linear(2 * width, width)
        nn.init.constant_(
            self.gate.bias, -2.0
        )  # start mostly closed: the CLIP feature dominates early training

    @property
    def bank(self) -> torch.Tensor:
        """The knowledge bank (A + C, E): unit-length attribute and identity text features."""
        return torch.cat([self.attribute_bank, self.identity_bank], dim=0)

    def set_identity_bank(self, features: torch.Tensor) -> None:
        """Replace the identity part of the bank with (C, E) text features (normalised here)."""
        assert features.shape == self.identity_bank.shape, (features.shape, self.identity_bank.shape)
        self.identity_bank.copy_(nn.functional.normalize(features.detach().float(), dim=-1))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """Visual tokens (B, T, D) with CLS first -> knowledge-fused CLS (B, D)."""
        cls = tokens[:, 0]  # (B, D)
        query = self.query(self.norm(tokens))  # (B, T, d)
        bank = self.bank.to(query.dtype).unsqueeze(0).expand(tokens.shape[0], -1, -1)  # (B, K, E)
        context, _ = self.attn(query, bank, bank, need_weights=False)  # (B, T, d)
        knowledge = self.out(context).mean(dim=1)  # (B, D)
        gate = torch.sigmoid(self.gate(torch.cat([cls, knowledge], dim=-1)))  # (B, D)
        return cls + gate * knowledge
