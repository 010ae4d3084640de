"""BS-Net: Brixia score prediction from a frontal chest X-ray, end to end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
from monai_bsnet.networks.alignment import LungAlignmentNet, warp
from monai_bsnet.networks.encoder import ResNet18Encoder
from monai_bsnet.networks.scoring import ZoneScoringHead
from monai_bsnet.networks.segmentation import UNetPlusPlusDecoder

__all__ = ["BSNet", "BSNetOutput", "BSNetZoneProbabilities", "STAGES"]

#: The four parts of BS-Net that the staged training trains (and freezes) one after the other.
STAGES: tuple[str, ...] = ("encoder", "segmentation", "alignment", "scoring")


class BSNetOutput(NamedTuple):
    """What :class:`BSNet` returns for a batch of B images of size H x W.

    Attributes:
        zone_logits: (B, 6, 4) score logits of zones A..F (see :mod:`monai_bsnet.zones`).
        lung_logits: (B, 1, H, W) lung segmentation logits in the input frame.
        theta: (B, 2, 3) affine from the aligned frame to the input frame (``affine_grid`` convention).
        aligned_lung: (B, 1, H, W) lung probability warped into the aligned frame.
    """

    zone_logits: torch.Tensor
    lung_logits: torch.Tensor
    theta: torch.Tensor
    aligned_lung: torch.Tensor


class BSNet(nn.Module):
    """BS-Net (Signoroni et al. 2021): multi-zone Brixia scoring with lung segmentation and alignment.

    A ResNet-18 encoder (one input channel) feeds three heads that run in sequence:

    1. ``segmentation``: a U-Net++ decoder gives the lung probability map;
    2. ``alignment``: a spatial transformer reads that map and predicts the affine ``theta`` that puts
       the lungs upright and makes them fill the frame (identity at initialisation);
    3. ``scoring``: the four ResNet stage features are warped by ``theta`` into the aligned frame,
       optionally multiplied by the aligned lung map ("hard self-attention"), cropped into the six
       overlapping zone boxes with ROI align, merged by a feature pyramid, and scored by one small
       classifier per zone.

    Each stage (``encoder``, ``segmentation``, ``alignment``, ``scoring``) can be frozen on its own
    with :meth:`freeze`, for the authors' "from the part to the whole" training. A frozen stage's
    parameters get no gradient and its batch-norm statistics stay fixed in training mode.

    Args:
        in_channels: image channels (1: a grey radiograph).
        decoder_channels: U-Net++ filters, deepest first (BS-Net: 256, 128, 64, 32, 16).
        alignment_mask_size: side of the lung map the alignment network reads (BS-Net: 128).
        hard_attention: multiply the aligned features by the aligned lung map.
        pyramid_features: width of the finest pyramid level (BS-Net: 64).
        classifier_width: filters of the zone classifiers (BS-Net: 8).
        classifier_depth: hidden blocks of the zone classifiers (BS-Net: 3).
        zone_size: (h, w) of the zone crops at the finest scale, halved at each coarser scale; default
            None keeps each scale's full feature size, as the authors did.
        shared_zone_classifier: train one zone classifier for all six zones (see
            :class:`~monai_bsnet.networks.scoring.ZoneScoringHead`); the weights load either way.
        zone_classifier: ``"bsnet"`` (the authors' pyramid and convolutional zone classifiers) or
            ``"pooled_linear"`` (pooled zone crops and one linear map, the shipped model's form; see
            :class:`~monai_bsnet.networks.scoring.ZoneScoringHead`). :func:`~monai_bsnet.networks.load_weights`
            switches it to the form the checkpoint holds.

    The input's height and width must be multiples of 32 (the ResNet stride); 512 x 512 is the
    reference size.

    Reference:
        Signoroni et al., "BS-Net: learning COVID-19 pneumonia severity on a large chest X-ray
        dataset", Medical Image Analysis 71 (2021) 102046, https://doi.org/10.1016/j.media.2021.102046
    """

    def __init__(
        self,
        in_channels: int = 1,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        alignment_mask_size: int = 128,
        hard_attention: bool = True,
        pyramid_features: int = 64,
        classifier_width: int = 8,
        classifier_depth: int = 3,
        zone_size: Sequence[int] | None = None,
        shared_zone_classifier: bool = False,
        zone_classifier: str = "bsnet",
    ) -> None:
        super().__init__()
        self.encoder = ResNet18Encoder(in_channels)
        encoder_channels = ResNet18Encoder.out_channels
        self.segmentation = UNetPlusPlusDecoder(encoder_channels, decoder_channels, out_channels=1)
        self.alignment = LungAlignmentNet(mask_size=alignment_mask_size)
        self.scoring = ZoneScoringHead(
            encoder_channels[1:], hard_attention, pyramid_features, classifier_width, classifier_depth, zone_size,
            shared_zone_classifier, zone_classifier,
        )
        self.frozen: set[str] = set()

    # ---- staged training -------------------------------------------------------------------------
    def stage(self, name: str) -> nn.Module:
        """The sub-module of a stage: ``encoder``, ``segmentation``, ``alignment`` or ``scoring``."""
        if name not in STAGES:
            raise ValueError(f"unknown BS-Net stage {name!r}, expected one of {STAGES}")
        return getattr(self, name)

    def freeze(self, stages: str | Iterable[str], frozen: bool = True) -> BSNet:
        """Freeze (or unfreeze, with ``frozen=False``) one stage or several; returns the network."""
        for name in [stages] if isinstance(stages, str) else list(stages):
            for p in self.stage(name).parameters():
                p.requires_grad_(not frozen)
            self.frozen.discard(name)
            if frozen:
                self.frozen.add(name)
        return self.train(self.training)

    def train(self, mode: bool = True) -> BSNet:
        """Set training mode, but keep frozen stages in evaluation mode (fixed batch-norm statistics)."""
        super().train(mode)
        for name in self.frozen:
            self.stage(name).eval()
        return self

    # ---- forward -----------------------------------------------------------------------------------
    def forward(self, image: torch.Tensor) -> BSNetOutput:
        """Score a batch of images (B, 1, H, W) with intensities in [0, 1]."""
        return self.outputs(image)

    def outputs(self, image: torch.Tensor) -> BSNetOutput:
        """All outputs of the network (what :meth:`forward` returns; subclasses may return less)."""
        features, lung_logits, theta, aligned_lung = self.scoring_inputs(image)
        zone_logits = self.scoring(features[1:], theta, aligned_lung)
        return BSNetOutput(zone_logits, lung_logits, theta, aligned_lung)

    def scoring_inputs(
        self, image: torch.Tensor
    ) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor, torch.Tensor]:
        """What the first three stages hand to the scoring stage: the encoder features (all five,
        finest first), the lung logits, ``theta`` and the aligned lung probability map."""
        if image.shape[-2] % 32 or image.shape[-1] % 32:
            raise ValueError(f"BSNet needs height and width that are multiples of 32, got {list(image.shape[-2:])}")
        features = self.encoder(image)
        lung_logits = self.segmentation(features)
        lung = torch.sigmoid(lung_logits)
        theta = self.alignment(lung)
        return features, lung_logits, theta, warp(lung, theta)

    def parameter_counts(self) -> dict[str, int]:
        """Number of parameters of each stage and of the whole network."""
        counts = {name: sum(p.numel() for p in self.stage(name).parameters()) for name in STAGES}
        counts["total"] = sum(p.numel() for p in self.parameters())
        return counts


class BSNetZoneProbabilities(BSNet):
    """BS-Net that returns one tensor: the zone probabilities (B, 6, 4), zones A..F x scores 0..3.

    This is the form MONAI Bundle tools (``verify_net_in_out``, ``ckpt_export``) and TorchScript
    expect from a network. It is a :class:`BSNet` (same arguments, same state-dict keys, so the same
    checkpoints load into both); :meth:`BSNet.outputs` still gives every output.
    """

    def forward(self, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.softmax(self.outputs(image).zone_logits, dim=-1)
