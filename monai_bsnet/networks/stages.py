"""Views of one :class:`BSNet` for the staged training: each trains one part of the same network.

A view holds the whole BS-Net (so that checkpoints always hold every stage) and exposes the input
and output that its training stage needs, as MONAI's ``SupervisedTrainer`` expects:
one tensor in, one tensor out.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from monai_bsnet.networks.alignment import warp
from monai_bsnet.networks.bsnet import BSNet

__all__ = ["LungSegmenter", "MaskAligner", "ZoneScorer"]


class LungSegmenter(nn.Module):
    """Stage a: image (B, 1, H, W) -> lung logits (B, 1, H, W), through the encoder and the U-Net++."""

    def __init__(self, bsnet: BSNet) -> None:
        super().__init__()
        self.bsnet = bsnet

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.bsnet.segmentation(self.bsnet.encoder(image))


class MaskAligner(nn.Module):
    """Stage b: lung mask (B, 1, h, w) -> the mask warped by the predicted theta (B, 1, h, w).

    Trained on synthetic distortions of real masks against their canonical form
    (:class:`~monai_bsnet.transforms.CanonicalLungAlignment`).
    """

    def __init__(self, bsnet: BSNet) -> None:
        super().__init__()
        self.bsnet = bsnet

    def forward(self, mask: torch.Tensor) -> torch.Tensor:
        return warp(mask, self.bsnet.alignment(mask))


class ZoneScorer(nn.Module):
    """Stage c: image (B, 1, H, W) -> zone logits (B, 6, 4), through the whole network."""

    def __init__(self, bsnet: BSNet) -> None:
        super().__init__()
        self.bsnet = bsnet

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.bsnet.outputs(image).zone_logits
