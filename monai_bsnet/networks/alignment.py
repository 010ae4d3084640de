"""The alignment stage of BS-Net: a spatial transformer that puts the lungs upright and fills the frame."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["LungAlignmentNet", "warp"]


def warp(image: torch.Tensor, theta: torch.Tensor, size: list[int] | None = None, mode: str = "bilinear") -> torch.Tensor:
    """Resample ``image`` (B, C, H, W) into the aligned frame given by the affine ``theta`` (B, 2, 3).

    ``theta`` maps normalised output coordinates (x, y in [-1, 1]) to normalised input coordinates,
    as :func:`torch.nn.functional.affine_grid` defines it; the identity leaves the image unchanged.
    Points outside the image read zero.

    Args:
        image: images, masks or feature maps to warp.
        theta: affine matrices, one per batch item.
        size: output spatial size (H, W); default: the input's.
        mode: interpolation, ``"bilinear"`` or ``"nearest"``.
    """
    out_hw = list(image.shape[-2:]) if size is None else size
    grid = F.affine_grid(theta, [image.shape[0], image.shape[1], out_hw[0], out_hw[1]], align_corners=False)
    return F.grid_sample(image, grid.to(image.dtype), mode=mode, padding_mode="zeros", align_corners=False)


class LungAlignmentNet(nn.Module):
    """Localisation network of the spatial transformer: lung probability map -> affine ``theta``.

    The map is max-pooled to ``mask_size`` x ``mask_size`` (any input size works), then goes through
    ``[2x2 max-pool, 5x5 conv]`` blocks, a dense layer with ReLU and a dense layer of six outputs. The
    last layer starts with zero weights and the identity as bias, so that an untrained network
    leaves images unchanged (Jaderberg et al.). As in the BS-Net reference, the convolutions have
    no activation of their own.

    Args:
        mask_size: side of the pooled lung map the network reads (128 in BS-Net).
        conv_blocks: ``(filters, kernel size)`` of each convolution block.
        dense_features: width of the hidden dense layer.

    Reference:
        Jaderberg et al., "Spatial Transformer Networks", NeurIPS 2015.
        Signoroni et al., Medical Image Analysis 71 (2021) 102046, section 3.3.
    """

    def __init__(
        self, mask_size: int = 128, conv_blocks: Sequence[tuple[int, int]] = ((20, 5), (20, 5)), dense_features: int = 50
    ) -> None:
        super().__init__()
        self.mask_size = mask_size
        layers: list[nn.Module] = []
        channels, side = 1, mask_size
        for filters, kernel in conv_blocks:
            layers += [nn.MaxPool2d(2), nn.Conv2d(channels, filters, kernel)]
            channels, side = filters, side // 2 - kernel + 1
        if side < 1:
            raise ValueError(f"mask_size {mask_size} is too small for the convolution blocks {conv_blocks}")
        self.features = nn.Sequential(*layers, nn.Flatten())
        self.regressor = nn.Sequential(nn.Linear(channels * side * side, dense_features), nn.ReLU(), nn.Linear(dense_features, 6))
        identity = self.regressor[-1]
        nn.init.zeros_(identity.weight)
        with torch.no_grad():
            identity.bias.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0]))

    def forward(self, lung_probability: torch.Tensor) -> torch.Tensor:
        """Return ``theta`` (B, 2, 3) for lung probability maps (B, 1, H, W)."""
        x = F.adaptive_max_pool2d(lung_probability, self.mask_size)
        return self.regressor(self.features(x)).view(-1, 2, 3)
