"""The scoring stage of BS-Net: zone pooling, a feature pyramid and one classifier per Brixia zone
(or, instead of the pyramid and the classifiers, one pooled linear zone classifier)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from monai.networks.blocks import Convolution
from torchvision.ops import roi_align

from monai_bsnet.networks.alignment import warp
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES, ZONE_BOXES, ZoneBox

__all__ = [
    "ZONE_CLASSIFIERS",
    "zone_boxes",
    "pool_zones",
    "ZonePyramid",
    "ZoneClassifier",
    "ZonePooling",
    "LinearZoneClassifier",
    "ZoneScoringHead",
]

#: The forms of the zone classifier: the authors' convolutional one, and the pooled linear one.
ZONE_CLASSIFIERS = ("bsnet", "pooled_linear")


def zone_boxes(boxes: Sequence[ZoneBox] = ZONE_BOXES) -> torch.Tensor:
    """Zone boxes as a (6, 4) tensor of ``(x1, y1, x2, y2)`` fractions of the frame, zones A..F."""
    return torch.tensor([[b.left, b.top, b.right, b.bottom] for b in boxes], dtype=torch.float32)


def pool_zones(features: torch.Tensor, boxes: torch.Tensor, output_size: list[int] | None = None) -> torch.Tensor:
    """Crop zone boxes out of aligned features with :func:`torchvision.ops.roi_align`.

    Args:
        features: aligned feature maps (B, C, H, W).
        boxes: (Z, 4) boxes as fractions of the frame, from :func:`zone_boxes`.
        output_size: (h, w) of each crop; default: (H, W), the BS-Net choice, so that every zone keeps
            the resolution of its feature scale.

    Returns:
        ``(B * Z, C, h, w)``, batch-major (all zones of image 0, then of image 1, ...).
    """
    b, h, w = features.shape[0], features.shape[2], features.shape[3]
    size = [h, w] if output_size is None else output_size
    scale = torch.tensor([w, h, w, h], dtype=features.dtype, device=features.device)
    pixel_boxes = (boxes.to(features) * scale).repeat(b, 1)
    index = torch.arange(b, dtype=features.dtype, device=features.device).repeat_interleave(boxes.shape[0])
    rois = torch.cat([index[:, None], pixel_boxes], dim=1)
    return roi_align(features, rois, output_size=size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


class ZonePyramid(nn.Module):
    """The BS-Net feature pyramid that merges zone crops of several scales, finest to coarsest.

    At each scale a 1x1 lateral convolution is added to what came from the finer scale; the sum is
    resized to the next (coarser) scale and refined by a 3x3 convolution with swish. The width
    doubles at each scale (``feature_size``, ``2 * feature_size``, ...). Unlike the top-down FPN of Lin
    et al. (MONAI's ``FeaturePyramidNetwork``), information flows from the fine scales to the coarse
    one, and only the coarsest output feeds the zone classifiers, as in the authors' model.

    Args:
        in_channels: channels of each scale, finest first (ResNet-18 stages: 64, 128, 256, 512).
        feature_size: width of the finest pyramid level (64 in BS-Net).
    """

    def __init__(self, in_channels: Sequence[int] = (64, 128, 256, 512), feature_size: int = 64) -> None:
        super().__init__()
        widths = [feature_size * 2**k for k in range(len(in_channels))]
        lateral_widths = [widths[0]] + widths[:-1]
        self.laterals = nn.ModuleList(
            Convolution(2, c, lw, kernel_size=1, conv_only=True) for c, lw in zip(in_channels, lateral_widths)
        )
        self.refines = nn.ModuleList(
            Convolution(2, lw, w, kernel_size=3, act="swish", norm=None) for lw, w in zip(lateral_widths, widths)
        )
        self.out_channels = widths[-1]

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Merge crops ``(N, C_k, h_k, w_k)`` of each scale, finest first, into ``(N, out_channels, h, w)``
        at the coarsest scale's size."""
        merged = torch.zeros(0)
        last = len(features) - 1
        for k, (lateral, refine) in enumerate(zip(self.laterals, self.refines)):
            x = lateral(features[k])
            if k > 0:
                x = x + merged
            if k < last:
                x = F.interpolate(x, size=features[k + 1].shape[-2:], mode="bilinear", align_corners=False)
            merged = refine(x)
        return merged


class ZoneClassifier(nn.Module):
    """Score classifier of one zone: ``depth`` conv-batchnorm-swish blocks, a 3x3 conv to the classes,
    global average pooling (the RetinaNet-style head of BS-Net).

    Args:
        in_channels: channels of the pyramid output.
        width: filters of the hidden blocks (8 in BS-Net).
        depth: number of hidden blocks (3 in BS-Net).
        num_classes: score classes (4: Brixia 0..3).
    """

    def __init__(self, in_channels: int, width: int = 8, depth: int = 3, num_classes: int = NUM_SCORES) -> None:
        super().__init__()
        blocks = [
            Convolution(2, in_channels if d == 0 else width, width, kernel_size=3, act="swish", norm="batch")
            for d in range(depth)
        ]
        self.blocks = nn.Sequential(*blocks, Convolution(2, width, num_classes, kernel_size=3, conv_only=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (N, num_classes)."""
        return self.blocks(x).mean(dim=(-2, -1))


class ZonePooling(nn.Module):
    """Global average and maximum pooling of every scale's zone crops, concatenated.

    It takes the place of :class:`ZonePyramid` in the pooled linear zone classifier: crops
    ``(N, C_k, h_k, w_k)`` of each scale become one vector ``(N, 2 * sum(C_k))``: the means of every
    scale, then the maxima (1920 numbers for ResNet-18's stages 64, 128, 256, 512). It has no weights.
    """

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        means = [f.mean(dim=(-2, -1)) for f in features]
        maxima = [f.amax(dim=(-2, -1)) for f in features]
        return torch.cat(means + maxima, dim=1)


class LinearZoneClassifier(nn.Module):
    """Standardised features, then one linear map to the score logits: a multinomial logistic regression.

    The standardisation (``feature_mean``, ``feature_scale``) is part of the module, so that a
    regression fitted by scikit-learn on standardised features (``monai_bsnet.pooled_head``) is
    stored, loaded and run as a network layer.

    Args:
        in_features: length of the pooled zone vector.
        num_classes: score classes (4: Brixia 0..3).
    """

    def __init__(self, in_features: int, num_classes: int = NUM_SCORES) -> None:
        super().__init__()
        self.register_buffer("feature_mean", torch.zeros(in_features))
        self.register_buffer("feature_scale", torch.ones(in_features))
        self.linear = nn.Linear(in_features, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class logits (N, num_classes) of pooled zone vectors (N, in_features)."""
        return self.linear((x - self.feature_mean) / self.feature_scale)


class ZoneScoringHead(nn.Module):
    """The whole scoring stage: align the encoder features, pool the zones, merge the scales, classify.

    Args:
        in_channels: channels of the encoder stages used, finest first.
        hard_attention: multiply the aligned features by the aligned lung probability map.
        pyramid_features: width of the finest pyramid level.
        classifier_width: filters of the zone classifiers.
        classifier_depth: hidden blocks of the zone classifiers.
        zone_size: (h, w) of the zone crops at the finest scale, halved at each coarser scale; None
            keeps each scale's full feature size (the authors' choice).
        shared_classifier: for the ``bsnet`` form, one classifier, its weights shared by the six zones,
            instead of one per zone (the authors' choice). It learns from six zone crops per image instead of
            one: that helped a linear probe of the zone features on the 138 public images, while for this head
            the cross-validated gain stayed within the noise (``bundle/docs/experiments.md``). It is applied
            to the six crops as one batch, so that its batch-norm statistics are those of all zones in
            training as at inference. The weights keep the six-classifier layout (six equal copies), so a head
            trained shared loads into the default head and scores the same.
        zone_classifier: ``"bsnet"``, the authors' form (a feature pyramid merges the scales, then
            convolutional classifiers), or ``"pooled_linear"``: each zone crop of each scale pooled into
            its mean and maximum per channel (:class:`ZonePooling`), then one linear map shared by the six
            zones (:class:`LinearZoneClassifier`), fitted as an L2-regularised logistic regression
            (``monai_bsnet.pooled_head``). On the 138 public images the second form cross-validated
            better than every trained ``bsnet`` head (``bundle/docs/experiments.md``); it is what the
            shipped model uses. Its weights keep the same six-classifier layout (six equal copies).
    """

    __jit_ignored_attributes__ = ["settings"]

    def __init__(
        self,
        in_channels: Sequence[int] = (64, 128, 256, 512),
        hard_attention: bool = True,
        pyramid_features: int = 64,
        classifier_width: int = 8,
        classifier_depth: int = 3,
        zone_size: Sequence[int] | None = None,
        shared_classifier: bool = False,
        zone_classifier: str = "bsnet",
    ) -> None:
        super().__init__()
        if zone_classifier not in ZONE_CLASSIFIERS:
            raise ValueError(f"unknown zone classifier {zone_classifier!r}, expected one of {ZONE_CLASSIFIERS}")
        # what with_zone_classifier() needs to build the same head with the other classifier (left out of
        # TorchScript by __jit_ignored_attributes__)
        self.settings = {"in_channels": tuple(in_channels), "hard_attention": hard_attention, "pyramid_features": pyramid_features,
                         "classifier_width": classifier_width, "classifier_depth": classifier_depth, "zone_size": zone_size,
                         "shared_classifier": shared_classifier}
        self.zone_classifier = zone_classifier
        if zone_classifier == "pooled_linear":
            # the pooling stands where the pyramid merges the scales; one linear map serves the six zones
            self.pyramid: nn.Module = ZonePooling()
            shared_classifier = True
            self.classifiers = nn.ModuleList([LinearZoneClassifier(2 * sum(in_channels))] * NUM_ZONES)
        else:
            self.pyramid = ZonePyramid(in_channels, feature_size=pyramid_features)
            width = self.pyramid.out_channels
            if shared_classifier:
                self.classifiers = nn.ModuleList([ZoneClassifier(width, classifier_width, classifier_depth)] * NUM_ZONES)
            else:
                self.classifiers = nn.ModuleList(ZoneClassifier(width, classifier_width, classifier_depth) for _ in range(NUM_ZONES))
        self.shared_classifier = shared_classifier
        self.hard_attention = hard_attention
        # [0, 0] stands for None (TorchScript cannot type an empty list attribute)
        self.zone_size = [0, 0] if zone_size is None else [int(s) for s in zone_size]
        self.register_buffer("boxes", zone_boxes(), persistent=False)

    def with_zone_classifier(self, zone_classifier: str) -> ZoneScoringHead:
        """A new head (new weights) with the same settings but the given zone classifier form, on this
        head's device."""
        settings = dict(self.settings, zone_classifier=zone_classifier)
        return ZoneScoringHead(**settings).to(self.boxes.device)

    def share_classifier(self, classifier: nn.Module) -> None:
        """Make ``classifier`` (moved to this head's device) the one zone classifier of all six zones, as a
        fitted pooled linear classifier is (``monai_bsnet.pooled_head``)."""
        self.classifiers = nn.ModuleList([classifier.to(self.boxes.device)] * NUM_ZONES)

    def forward(self, features: list[torch.Tensor], theta: torch.Tensor, aligned_lung: torch.Tensor) -> torch.Tensor:
        """Zone logits (B, 6, 4) in the order A..F.

        Args:
            features: encoder features in the input frame, finest first.
            theta: (B, 2, 3) alignment.
            aligned_lung: (B, 1, H, W) lung probability in the aligned frame.
        """
        return self.classify(self.zone_crops(features, theta, aligned_lung))

    def zone_crops(self, features: list[torch.Tensor], theta: torch.Tensor, aligned_lung: torch.Tensor) -> list[torch.Tensor]:
        """The parameter-free half of the head: per scale, the features warped into the aligned frame,
        weighted by the lung map and cropped into the six zones, ``(B * 6, C_k, h_k, w_k)``."""
        crops: list[torch.Tensor] = []
        for k, feature in enumerate(features):
            aligned = warp(feature, theta)
            if self.hard_attention:
                lung = F.interpolate(aligned_lung, size=aligned.shape[-2:], mode="bilinear", align_corners=False)
                aligned = aligned * lung
            size: list[int] | None = None
            if self.zone_size[0] > 0:
                size = [self.zone_size[0] >> k, self.zone_size[1] >> k]
            crops.append(pool_zones(aligned, self.boxes, size))
        return crops

    def classify(self, crops: list[torch.Tensor]) -> torch.Tensor:
        """The trainable half of the head: zone logits (B, 6, 4) from the crops of :meth:`zone_crops`."""
        merged = self.pyramid(crops)
        if self.shared_classifier:  # (B * zones, ...) is batch-major: all zones of image 0, then of image 1, ...
            logits = self.classifiers[0](merged)
            return logits.view(-1, len(self.classifiers), logits.shape[-1])
        merged = merged.view(-1, len(self.classifiers), merged.shape[1], merged.shape[2], merged.shape[3])  # (B, zones, ...)
        logits = [classifier(merged[:, z]) for z, classifier in enumerate(self.classifiers)]
        return torch.stack(logits, dim=1)
