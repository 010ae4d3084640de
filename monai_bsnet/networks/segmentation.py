"""The lung segmentation stage of BS-Net: a nested U-Net (U-Net++) decoder over ResNet features."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.nets.basic_unet import UpCat

__all__ = ["UNetPlusPlusDecoder"]


class UNetPlusPlusDecoder(nn.Module):
    """U-Net++ decoder that reads the five feature maps of a ResNet encoder.

    Node ``x[i][j]`` sits at depth ``i`` (resolution ``1 / 2**(i + 1)`` of the input) and column ``j``.
    Column 0 holds the encoder features; every other node up-samples the node below-left of it
    (``x[i + 1][j - 1]``) and concatenates all earlier nodes of its own row (the dense skip
    connections of U-Net++). The last up-sampling goes back to the input resolution, where no encoder
    feature exists, and a 3x3 convolution gives one lung logit per pixel.

    Each node is MONAI's :class:`~monai.networks.nets.basic_unet.UpCat` (transpose-convolution
    up-sampling that halves the channels, then two conv-batchnorm-ReLU blocks). The BS-Net authors'
    Keras blocks use one conv after a 4x4 transpose convolution; the two-conv node is MONAI's.

    Args:
        encoder_channels: channels of the encoder features, finest first (for ResNet-18:
            ``(64, 64, 128, 256, 512)`` at strides 2, 4, 8, 16, 32).
        decoder_channels: filters per decoder depth, deepest first. The first entry is the filters of
            depth ``len(encoder_channels) - 2`` and the last one the filters at input resolution;
            BS-Net uses ``(256, 128, 64, 32, 16)``.
        out_channels: number of output maps (1: the lung).
        act: activation of the decoder blocks.
        norm: normalisation of the decoder blocks.

    Reference:
        Zhou et al., "UNet++: A Nested U-Net Architecture for Medical Image Segmentation", DLMIA 2018.
        Signoroni et al., "BS-Net: learning COVID-19 pneumonia severity on a large chest X-ray
        dataset", Medical Image Analysis 71 (2021) 102046.
    """

    def __init__(
        self,
        encoder_channels: Sequence[int] = (64, 64, 128, 256, 512),
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        out_channels: int = 1,
        act: str | tuple = ("relu", {"inplace": True}),
        norm: str | tuple = "batch",
    ) -> None:
        super().__init__()
        depth = len(encoder_channels) - 1  # number of skip levels; the last feature is the bottom
        if len(decoder_channels) != depth + 1:
            raise ValueError(f"need {depth + 1} decoder channels for {len(encoder_channels)} encoder features")
        # filters[i]: filters of the nodes at depth i; decoder_channels[-1] is for the input resolution
        filters = list(reversed(decoder_channels[:-1]))

        def node(in_chns: int, cat_chns: int, out_chns: int) -> UpCat:
            return UpCat(2, in_chns, cat_chns, out_chns, act=act, norm=norm, bias=False, upsample="deconv", halves=True)

        # One flat list of nodes in the order they can be computed (column by column), with the row
        # of each: a flat list keeps the decoder scriptable with TorchScript.
        self.nodes = nn.ModuleList()
        self.node_rows: list[int] = []
        for j in range(1, depth + 1):
            for i in range(depth - j + 1):
                in_chns = encoder_channels[i + 1] if j == 1 else filters[i + 1]
                self.nodes.append(node(in_chns, encoder_channels[i] + (j - 1) * filters[i], filters[i]))
                self.node_rows.append(i)
        self.to_input_resolution = node(filters[0], 0, decoder_channels[-1])
        self.head = Convolution(2, decoder_channels[-1], out_channels, kernel_size=3, conv_only=True)
        self.depth = depth

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        """Return lung logits at twice the resolution of the finest feature (the input resolution)."""
        grid: list[list[torch.Tensor]] = [[f] for f in features]
        for k, up_cat in enumerate(self.nodes):
            i = self.node_rows[k]
            j = len(grid[i])  # the column this node fills
            grid[i].append(up_cat(grid[i + 1][j - 1], torch.cat(grid[i], dim=1)))
        x = self.to_input_resolution(grid[0][self.depth], None)
        return self.head(x)
