"""Losses of the three training stages."""

from __future__ import annotations

import pytest
import torch

from monai_bsnet.losses import AlignmentLoss, BrixiaScoreLoss, LungSegmentationLoss, expected_score
from monai_bsnet.networks import warp


def peaked_logits(classes: list[int], strength: float = 6.0) -> torch.Tensor:
    logits = torch.zeros(1, 6, 4)
    for zone, c in enumerate(classes):
        logits[0, zone, c] = strength
    return logits


def test_expected_score_is_the_mean_under_the_softmax():
    logits = torch.log(torch.tensor([[[0.1, 0.2, 0.3, 0.4]] * 6]))
    assert torch.allclose(expected_score(logits), torch.full((1, 6), 0.2 + 0.6 + 1.2))


def test_mae_term_grows_with_the_distance_between_true_and_predicted_class():
    target = torch.zeros(1, 6, dtype=torch.long)
    with_mae = BrixiaScoreLoss(mae_weight=1.0)
    ce_only = BrixiaScoreLoss(mae_weight=0.0)
    losses = [with_mae(peaked_logits([k] * 6), target).item() for k in range(4)]
    assert losses[0] < losses[1] < losses[2] < losses[3]
    # cross-entropy alone cannot tell a near miss from a far one
    ce = [ce_only(peaked_logits([k] * 6), target).item() for k in range(1, 4)]
    assert max(ce) - min(ce) < 1e-6
    # and the gap between consecutive distances is the MAE weight times about one score step
    assert losses[3] - losses[2] == pytest.approx(1.0, abs=0.05)


def test_scoring_loss_has_gradients_and_checks_shapes():
    logits = torch.randn(3, 6, 4, requires_grad=True)
    loss = BrixiaScoreLoss(mae_weight=0.5)(logits, torch.randint(0, 4, (3, 6)))
    loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    with pytest.raises(ValueError, match=r"\(B, 6, 4\)"):
        BrixiaScoreLoss()(torch.randn(3, 6, 4), torch.zeros(3, 5))


def test_segmentation_loss_is_low_for_a_right_mask_and_high_for_a_wrong_one():
    mask = torch.zeros(2, 1, 32, 32)
    mask[..., 8:24, 4:14] = 1
    mask[..., 8:24, 18:28] = 1
    loss = LungSegmentationLoss()
    right = loss((mask * 2 - 1) * 10, mask).item()
    wrong = loss((1 - 2 * mask) * 10, mask).item()
    assert right < 0.01
    assert wrong > 1.0


def test_alignment_loss_is_zero_when_the_warped_mask_matches_its_canonical_form():
    mask = torch.zeros(1, 1, 64, 64)
    mask[..., 16:48, 16:48] = 1
    canonical = torch.ones(1, 1, 64, 64)  # the square, cropped to its box and resized: the full frame
    zoom = torch.tensor([[[0.5, 0.0, 0.0], [0.0, 0.5, 0.0]]])  # samples the central half: zoom in x2
    identity = torch.eye(2, 3)[None]
    loss = AlignmentLoss()
    assert loss(warp(mask, zoom), canonical).item() < 0.02
    assert loss(warp(mask, identity), canonical).item() > 0.3
