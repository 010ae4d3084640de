"""The shared encoder of BS-Net: ResNet-18 with one input channel, returning its five feature maps."""

from __future__ import annotations

import torch
import torch.nn as nn
from torchvision.models import resnet18

__all__ = ["ResNet18Encoder"]


class ResNet18Encoder(nn.Module):
    """ResNet-18 (He et al. 2016) as a feature encoder for grey images.

    It is torchvision's ResNet-18 with a first convolution of ``in_channels`` inputs and no
    classification layers. It returns the stem output and the four stage outputs, at strides 2, 4,
    8, 16 and 32 with 64, 64, 128, 256 and 512 channels. torchvision's model (projection shortcuts,
    type "B") is used rather than MONAI's ``ResNetFeatures``, whose ResNet-18 uses zero-padding
    shortcuts (type "A") that neither TorchScript nor tracing with a variable batch size supports.

    Args:
        in_channels: image channels.
    """

    out_channels: tuple[int, ...] = (64, 64, 128, 256, 512)

    def __init__(self, in_channels: int = 1) -> None:
        super().__init__()
        net = resnet18(weights=None)
        self.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
        nn.init.kaiming_normal_(self.conv1.weight, mode="fan_out", nonlinearity="relu")
        self.bn1, self.relu, self.maxpool = net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))
        c1 = self.layer1(self.maxpool(stem))
        c2 = self.layer2(c1)
        c3 = self.layer3(c2)
        c4 = self.layer4(c3)
        return [stem, c1, c2, c3, c4]
