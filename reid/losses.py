"""Re-ID losses as standalone modules on tensors: MINP, label-smoothed CE, batch-hard triplet, image-text."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CLASS_WEIGHTS = ("inv_sqrt", None)


def pairwise_distance(features: torch.Tensor) -> torch.Tensor:
    """Euclidean distances (B, B) between rows of (B, F); the clamp keeps sqrt's gradient finite at zero."""
    sq = features.pow(2).sum(dim=1, keepdim=True)  # (B, 1)
    d2 = sq + sq.T - 2.0 * features @ features.T  # (B, B)
    return d2.clamp(min=1e-12).sqrt()


def _pair_masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(positive mask without the diagonal, negative mask), both (B, B) bool."""
    same = labels.view(-1, 1) == labels.view(1, -1)
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same


class MINPLoss(nn.Module):
    """Multi-instance negative pooling on Euclidean distances of a PK batch.

    For anchor i with positives P and its k nearest negatives N_k (distances d):
        pos_i = tau * logsumexp(d_P / tau)          smooth maximum: the (soft) farthest positive
        neg_i = -tau * logsumexp(-d_Nk / tau)       smooth minimum: the (soft) nearest of k negatives
        l_i = max(0, margin + pos_i - neg_i)
    and loss = sum_i w_i l_i / sum_i w_i with w_i = n(y_i)^-1/2 ("inv_sqrt"; n = class_counts when given,
    else in-batch frequency) or w_i = 1. With k=1, tau -> 0 and no weights it is the batch-hard triplet loss.
    Anchors without a positive or a negative in the batch are skipped.
    """

    def __init__(
        self,
        k: int = 5,
        tau: float = 0.1,
        margin: float = 0.3,
        class_weights: str | None = "inv_sqrt",
        class_counts: Sequence[int] | torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        if k < 1 or tau <= 0:
            raise ValueError(f"MINPLoss needs k >= 1 and tau > 0, got k={k}, tau={tau}")
        if class_weights not in CLASS_WEIGHTS:
            raise ValueError(f"class_weights: expected 'inv_sqrt' or None, got {class_weights!r}")
        self.k, self.tau, self.margin, self.class_weights = int(k), float(tau), float(margin), class_weights
        counts = None if class_counts is None else torch.as_tensor(class_counts, dtype=torch.float32)
        self.register_buffer("class_counts", counts, persistent=False)

    def _weights(self, labels: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if self.class_weights is None:
            return torch.ones(len(labels), dtype=dtype, device=labels.device)
        if self.class_counts is not None:
            counts = self.class_counts.to(labels.device)[labels]
        else:
            _, inverse, batch_counts = torch.unique(labels, return_inverse=True, return_counts=True)
            counts = batch_counts[inverse]
        return counts.to(dtype).clamp(min=1).rsqrt()

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Features (B, F) and identity labels (B,) -> scalar loss."""
        dist = pairwise_distance(features.float())  # (B, B)
        pos_mask, neg_mask = _pair_masks(labels)
        inf = torch.tensor(float("inf"), device=dist.device)
        pos = self.tau * torch.logsumexp(torch.where(pos_mask, dist, -inf) / self.tau, dim=1)  # (B,)
        k = min(self.k, dist.shape[1])
        nearest = (
            torch.where(neg_mask, dist, inf).topk(k, dim=1, largest=False).values
        )  # (B, k), inf if absent
        neg = -self.tau * torch.logsumexp(-nearest / self.tau, dim=1)  # (B,)
        valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        if not bool(valid.any()):
            return features.sum() * 0.0  # keeps the graph; a batch of one identity carries no metric signal
        per_anchor = F.relu(self.margin + pos[valid] - neg[valid])
        weights = self._weights(labels[valid], per_anchor.dtype)
        return (weights * per_anchor).sum() / weights.sum()


class BatchHardTripletLoss(nn.Module):
    """Hermans et al. 2017: for each anchor, farthest positive vs nearest negative, hinge with margin."""

    def __init__(self, margin: float = 0.3) -> None:
        super().__init__()
        self.margin = float(margin)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Features (B, F) and identity labels (B,) -> scalar loss (mean over anchors with a pos and a neg)."""
        dist = pairwise_distance(features.float())  # (B, B)
        pos_mask, neg_mask = _pair_masks(labels)
        hardest_pos = torch.where(pos_mask, dist, torch.zeros_like(dist)).amax(dim=1)
        hardest_neg = torch.where(neg_mask, dist, torch.full_like(dist, float("inf"))).amin(dim=1)
        valid = pos_mask.any(dim=1) & neg_mask.any(dim=1)
        if not bool(valid.any()):
            return features.sum() * 0.0
        return F.relu(hardest_pos[valid] - hardest_neg[valid] + self.margin).mean()


class CrossEntropyLabelSmooth(nn.Module):
    """Cross-entropy against (1 - epsilon) * one-hot + epsilon / C (Szegedy et al. 2016)."""

    def __init__(self, epsilon: float = 0.1) -> None:
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"epsilon must be in [0, 1), got {epsilon}")
        self.epsilon = float(epsilon)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Logits (B, C) and labels (B,) -> scalar loss."""
        log_probs = F.log_softmax(logits.float(), dim=1)  # (B, C)
        targets = torch.full_like(log_probs, self.epsilon / logits.shape[1])
        targets.scatter_(1, labels.view(-1, 1), 1.0 - self.epsilon + self.epsilon / logits.shape[1])
        return -(targets * log_probs).sum(dim=1).mean()


class ImageTextContrastiveLoss(nn.Module):
    """Image-to-text contrastive loss over a batch; texts sharing an image's label all count as positives.

    logits = norm(image) @ norm(text).T / temperature; loss_i = -mean_{j: y_j = y_i} log softmax_j(logits_i).
    Without labels, row i's positive is text i (CLIP's loss). `symmetric` adds the text-to-image direction.
    """

    def __init__(self, temperature: float = 0.07, symmetric: bool = False) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.symmetric = symmetric

    @staticmethod
    def _direction(logits: torch.Tensor, positives: torch.Tensor) -> torch.Tensor:
        log_probs = F.log_softmax(logits, dim=1)  # (B, B)
        return -((log_probs * positives).sum(dim=1) / positives.sum(dim=1)).mean()

    def forward(
        self, image_features: torch.Tensor, text_features: torch.Tensor, labels: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Image (B, E) and text (B, E) features, row-aligned, with optional labels (B,) -> scalar loss."""
        image = F.normalize(image_features.float(), dim=-1)
        text = F.normalize(text_features.float(), dim=-1)
        logits = image @ text.T / self.temperature  # (B, B)
        if labels is None:
            positives = torch.eye(len(image), device=image.device)
        else:
            positives = (labels.view(-1, 1) == labels.view(1, -1)).float()
        loss = self._direction(logits, positives)
        if self.symmetric:
            loss = 0.5 * (loss + self._direction(logits.T, positives.T))
        return loss
