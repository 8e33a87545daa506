"""Deep visual prompt tuning (Jia et al. 2022): learnable tokens after CLS, replaced at every layer."""

from __future__ import annotations

import math

import torch
from torch import nn


class DeepPrompts(nn.Module):
    """`num_prompts` learnable tokens per transformer layer, inserted after CLS at layer 0 and replaced after."""

    def __init__(
        self, *, num_layers: int, num_prompts: int, width: int, patch_area: int, dropout: float = 0.0
    ) -> None:
        super().__init__()
        assert num_layers >= 1 and num_prompts >= 1, (num_layers, num_prompts)
        self.num_layers = num_layers
        self.num_prompts = num_prompts
        # VPT's Xavier-uniform range over (patch area x 3 channels, width)
        bound = math.sqrt(6.0 / float(3 * patch_area + width))
        self.tokens = nn.Parameter(torch.empty(num_layers, num_prompts, width).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, layer: int) -> torch.Tensor:
        """Tokens entering `layer`: (B, 1+N, D) -> (B, 1+P+N, D) at layer 0, (B, 1+P+N, D) replaced after."""
        prompts = self.dropout(self.tokens[layer]).to(x.dtype)  # (P, D)
        prompts = prompts.unsqueeze(0).expand(x.shape[0], -1, -1)  # (B, P, D)
        rest = x[:, 1:] if layer == 0 else x[:, 1 + self.num_prompts :]  # (B, N, D)
        return torch.cat([x[:, :1], prompts, rest], dim=1)  # (B, 1+P+N, D)
