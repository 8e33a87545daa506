"""The VPM-Net training objective: a weighted sum of the loss terms of reid.losses, reported by name."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class TrainingObjective(nn.Module):
    """w_id*CE(label smoothing) + w_minp*MINP + w_triplet*triplet + w_i2t*image-text; zero weights are skipped.

    MINP weighs identities by 1/sqrt(their count in `class_counts`, the training set) when minp_class_weights.
    """

    def __init__(
        self,
        *,
        id_weight: float = 1.0,
        label_smoothing: float = 0.1,
        minp_weight: float = 1.0,
        minp_k: int = 3,
        minp_tau: float = 0.1,
        minp_margin: float = 0.3,
        minp_class_weights: bool = True,
        class_counts: Sequence[int] | None = None,
        triplet_weight: float = 0.0,
        triplet_margin: float = 0.3,
        i2t_weight: float = 0.0,
        i2t_temperature: float = 0.07,
    ) -> None:
        super().__init__()
        from reid import losses

        self.weights = {"id": id_weight, "minp": minp_weight, "triplet": triplet_weight, "i2t": i2t_weight}
        self.terms = nn.ModuleDict()
        if id_weight:
            self.terms["id"] = losses.CrossEntropyLabelSmooth(epsilon=label_smoothing)
        if minp_weight:
            self.terms["minp"] = losses.MINPLoss(
                k=minp_k,
                tau=minp_tau,
                margin=minp_margin,
                class_counts=class_counts,
                class_weights="inv_sqrt" if minp_class_weights else None,
            )
        if triplet_weight:
            self.terms["triplet"] = losses.BatchHardTripletLoss(margin=triplet_margin)
        if i2t_weight:
            self.terms["i2t"] = losses.ImageTextContrastiveLoss(temperature=i2t_temperature)

    @property
    def needs_text(self) -> bool:
        """Whether `forward` needs per-label text features."""
        return "i2t" in self.terms

    def forward(
        self,
        outputs: dict[str, torch.Tensor],
        labels: torch.Tensor,
        text_features: torch.Tensor | None = None,
    ) -> dict[str, torch.Tensor]:
        """Named weighted terms ("id", "minp", ...) and their sum under "loss"."""
        terms: dict[str, torch.Tensor] = {}
        if "id" in self.terms:
            terms["id"] = self.terms["id"](outputs["logits"].float(), labels)
        if "minp" in self.terms:
            terms["minp"] = self.terms["minp"](outputs["feat"].float(), labels)
        if "triplet" in self.terms:
            terms["triplet"] = self.terms["triplet"](outputs["feat"].float(), labels)
        if "i2t" in self.terms:
            if text_features is None:
                raise ValueError("the image-text term needs text_features for the batch labels")
            terms["i2t"] = self.terms["i2t"](outputs["proj"].float(), text_features.float(), labels)
        terms = {name: self.weights[name] * value for name, value in terms.items()}
        terms["loss"] = torch.stack(list(terms.values())).sum()
        return terms
