"""Training losses of the three BS-Net stages."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.losses import DiceCELoss, DiceLoss

__all__ = ["BrixiaScoreLoss", "LungSegmentationLoss", "AlignmentLoss", "expected_score"]


def expected_score(zone_logits: torch.Tensor) -> torch.Tensor:
    """Expected score of each zone under the softmax, (B, 6, K) -> (B, 6), differentiable."""
    probabilities = torch.softmax(zone_logits, dim=-1)
    values = torch.arange(zone_logits.shape[-1], dtype=probabilities.dtype, device=probabilities.device)
    return (probabilities * values).sum(dim=-1)


class BrixiaScoreLoss(nn.Module):
    """Scoring loss of BS-Net: per-zone cross-entropy plus a differentiable mean absolute error.

    ``loss = CE(logits, scores) + mae_weight * mean |E[score] - score|``, where ``E[score]`` is the
    expected score under the softmax of each zone. Cross-entropy alone treats a 0 predicted for a 3 like
    a 2 predicted for a 3; the MAE term makes far-off errors cost more than near ones.

    Args:
        mae_weight: weight of the MAE term (0 gives plain cross-entropy).
        label_smoothing: label smoothing of the cross-entropy.

    Inputs: ``zone_logits`` (B, 6, 4) and integer ``scores`` (B, 6) in 0..3.
    """

    def __init__(self, mae_weight: float = 1.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.mae_weight = mae_weight
        self.label_smoothing = label_smoothing

    def forward(self, zone_logits: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if zone_logits.ndim != 3 or scores.shape != zone_logits.shape[:2]:
            raise ValueError(f"expected logits (B, 6, 4) and scores (B, 6), got {tuple(zone_logits.shape)}, {tuple(scores.shape)}")
        scores = scores.long()
        ce = F.cross_entropy(zone_logits.flatten(0, 1), scores.flatten(), label_smoothing=self.label_smoothing)
        mae = (expected_score(zone_logits) - scores.to(zone_logits.dtype)).abs().mean()
        return ce + self.mae_weight * mae


class LungSegmentationLoss(DiceCELoss):
    """Segmentation loss of BS-Net: soft Dice plus binary cross-entropy on lung logits (B, 1, H, W).

    MONAI's :class:`~monai.losses.DiceCELoss` with a sigmoid; for one channel it uses
    ``BCEWithLogitsLoss`` as the cross-entropy term.
    """

    def __init__(self, lambda_dice: float = 1.0, lambda_ce: float = 1.0) -> None:
        super().__init__(sigmoid=True, lambda_dice=lambda_dice, lambda_ce=lambda_ce)


class AlignmentLoss(DiceLoss):
    """Alignment loss of BS-Net: soft Dice between a lung mask warped by the predicted ``theta`` and
    the mask's canonical form (see :class:`monai_bsnet.transforms.CanonicalLungAlignment`).

    Inputs are probabilities in [0, 1] (B, 1, H, W); no activation is applied.
    """

    def __init__(self) -> None:
        super().__init__(sigmoid=False, softmax=False, include_background=True)
