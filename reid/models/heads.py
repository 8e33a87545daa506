"""BNNeck (Luo et al. 2019) and the identity classifier."""

from __future__ import annotations

import torch
from torch import nn


class BNNeckHead(nn.Module):
    """BatchNorm without a learnt shift, then a bias-free linear identity classifier."""

    def __init__(self, *, in_dim: int, num_classes: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm1d(in_dim)
        self.bn.bias.requires_grad_(
            False
        )  # BNNeck: no shift, so the BN feature stays centred for cosine search
        self.classifier = nn.Linear(in_dim, num_classes, bias=False)
        nn.init.ones_(self.bn.weight)
        nn.init.zeros_(self.bn.bias)
        nn.init.normal_(self.classifier.weight, std=0.001)

    def forward(self, feat: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """Feature (B, F) -> logits (B, C), or the BN feature (B, F) when pre_logits."""
        bn_feat = self.bn(feat)
        return bn_feat if pre_logits else self.classifier(bn_feat)
