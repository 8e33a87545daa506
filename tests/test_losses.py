"""Re-ID losses on tiny hand-computed cases, and the limits where MINP becomes the batch-hard triplet loss."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from reid.losses import (
    BatchHardTripletLoss,
    CrossEntropyLabelSmooth,
    ImageTextContrastiveLoss,
    MINPLoss,
)

# 1-D points: identity 0 at 0 and 1, identity 1 at 3 and 4 (distances are plain differences)
POINTS = torch.tensor([[0.0], [1.0], [3.0], [4.0]])
LABELS = torch.tensor([0, 0, 1, 1])


def test_batch_hard_triplet_by_hand():
    # hardest (pos, neg) per anchor: (1, 3), (1, 2), (1, 2), (1, 3); margin 2.5 -> 0.5, 1.5, 1.5, 0.5
    loss = BatchHardTripletLoss(margin=2.5)(POINTS, LABELS)
    assert loss.item() == pytest.approx(1.0, abs=1e-5)
    assert BatchHardTripletLoss(margin=0.3)(POINTS, LABELS).item() == pytest.approx(0.0, abs=1e-6)


def test_minp_pools_k_negatives_by_hand():
    # tau=1, k=2: anchor 0 pools negatives at 3 and 4 -> -log(e^-3 + e^-4) = 3 - log(1 + e^-1); one positive -> 1
    loss = MINPLoss(k=2, tau=1.0, margin=2.5, class_weights=None)(POINTS, LABELS)
    expected = 1.0 + math.log1p(math.exp(-1.0))  # every anchor's hinge grows by log(1 + e^-1) over batch-hard
    assert loss.item() == pytest.approx(expected, abs=1e-5)


def test_minp_inverse_sqrt_weights_by_hand():
    points = torch.tensor([[0.0], [1.0], [3.0], [4.0], [5.0]])
    labels = torch.tensor([0, 0, 1, 1, 1])
    # near-hard limit: per-anchor hinge with margin 2.5 is 0.5, 1.5 (id 0) and 2.5, 0.5, 0.5 (id 1)
    per_anchor = torch.tensor([0.5, 1.5, 2.5, 0.5, 0.5])
    in_batch = torch.tensor([2, 2, 3, 3, 3]).float().rsqrt()
    loss = MINPLoss(k=1, tau=1e-4, margin=2.5, class_weights="inv_sqrt")(points, labels)
    assert loss.item() == pytest.approx(((in_batch * per_anchor).sum() / in_batch.sum()).item(), abs=1e-3)
    # dataset frequencies given: identity 0 seen once, identity 1 a hundred times
    counted = MINPLoss(k=1, tau=1e-4, margin=2.5, class_counts=[1, 100])(points, labels)
    weights = torch.tensor([1.0, 1.0, 0.1, 0.1, 0.1])
    assert counted.item() == pytest.approx(((weights * per_anchor).sum() / weights.sum()).item(), abs=1e-3)
    unweighted = MINPLoss(k=1, tau=1e-4, margin=2.5, class_weights=None)(points, labels)
    assert unweighted.item() == pytest.approx(per_anchor.mean().item(), abs=1e-3)


@pytest.mark.parametrize("k", [1, 5])
def test_minp_reduces_to_batch_hard_triplet(k):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(16, 8, generator=generator)
    labels = torch.arange(4).repeat_interleave(4)  # PK batch: 4 identities x 4 images
    triplet = BatchHardTripletLoss(margin=0.3)(features, labels)
    limit = MINPLoss(k=k, tau=1e-4, margin=0.3, class_weights=None)(features, labels)
    assert limit.item() == pytest.approx(triplet.item(), abs=1e-3)
    # a warmer temperature softens both pools towards harder pairs, so the loss can only grow
    warm = MINPLoss(k=k, tau=0.5, margin=0.3, class_weights=None)(features, labels)
    assert warm.item() > triplet.item()


def test_minp_gradients_finite_with_duplicate_features():
    # an anchor coincides with a negative (distance 0) and with a positive: sqrt's gradient must not blow up
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = MINPLoss()(features, LABELS)
    loss.backward()
    assert torch.isfinite(features.grad).all() and loss.item() > 0


def test_minp_single_identity_batch_is_zero():
    features = torch.randn(4, 3, requires_grad=True)
    loss = MINPLoss()(features, torch.zeros(4, dtype=torch.long))
    assert loss.item() == 0.0
    loss.backward()


def test_minp_rejects_bad_settings():
    with pytest.raises(ValueError, match="class_weights"):
        MINPLoss(class_weights="inverse")
    with pytest.raises(ValueError, match="tau"):
        MINPLoss(tau=0.0)


def test_label_smoothing_cross_entropy():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.5, -1.0, 3.0]])
    labels = torch.tensor([0, 2])
    ours = CrossEntropyLabelSmooth(epsilon=0.1)(logits, labels)
    assert ours.item() == pytest.approx(F.cross_entropy(logits, labels, label_smoothing=0.1).item(), abs=1e-6)
    # by hand for row 0: targets (0.9 + 0.1/3, 0.1/3, 0.1/3), log p0 = 2 - log(e^2 + 2), log p1 = -log(e^2 + 2)
    z = math.log(math.exp(2) + 2)
    row0 = -((0.9 + 0.1 / 3) * (2 - z) + 2 * (0.1 / 3) * (-z))
    single = CrossEntropyLabelSmooth(epsilon=0.1)(logits[:1], labels[:1])
    assert single.item() == pytest.approx(row0, abs=1e-6)
    assert CrossEntropyLabelSmooth(epsilon=0.0)(logits, labels).item() == pytest.approx(
        F.cross_entropy(logits, labels).item(), abs=1e-6
    )


def test_image_text_contrastive_by_hand():
    image = torch.tensor([[1.0, 0.0], [0.0, 2.0]])  # normalised inside
    text = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    loss = ImageTextContrastiveLoss(temperature=1.0)
    # each image: matching text logit 1, other 0 -> -log(e / (e + 1))
    assert loss(image, text).item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
    # same identity for both rows: both texts are positives -> mean of log p over the two
    same = loss(image, text, torch.tensor([7, 7]))
    assert same.item() == pytest.approx(math.log1p(math.e) - 0.5, abs=1e-6)
    symmetric = ImageTextContrastiveLoss(temperature=1.0, symmetric=True)(image, text)
    assert symmetric.item() == pytest.approx(math.log1p(math.exp(-1)), abs=1e-6)
