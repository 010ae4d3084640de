"""The ``bsnet`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from monai_bsnet import __version__

DISCLAIMER = "Research use only: not a medical device, not for diagnosis."


def architecture_table(image_size: int = 512) -> str:
    """The BS-Net stages with their parameter counts and output shapes for one image, as text."""
    import torch

    from monai_bsnet.networks import STAGES, BSNet

    net = BSNet().eval()
    counts = net.parameter_counts()
    with torch.no_grad():
        out = net(torch.zeros(1, 1, image_size, image_size))
    shapes = {
        "encoder": "5 feature maps, strides 2..32, 64-512 channels",
        "segmentation": f"lung_logits {tuple(out.lung_logits.shape)}",
        "alignment": f"theta {tuple(out.theta.shape)}, aligned_lung {tuple(out.aligned_lung.shape)}",
        "scoring": f"zone_logits {tuple(out.zone_logits.shape)} (zones A..F x scores 0..3)",
    }
    lines = [f"BS-Net, input (1, 1, {image_size}, {image_size})", f"{'stage':<14}{'parameters':>12}  output"]
    lines += [f"{name:<14}{counts[name]:>12,}  {shapes[name]}" for name in STAGES]
    lines.append(f"{'total':<14}{counts['total']:>12,}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bsnet", description=f"BS-Net Brixia scoring of chest X-rays. {DISCLAIMER}")
    parser.add_argument("--version", action="version", version=f"monai-bsnet {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    arch = commands.add_parser("architecture", help="print the network's stages with parameter counts")
    arch.add_argument("--image-size", type=int, default=512, help="input side in pixels (multiple of 32)")
    args = parser.parse_args(argv)

    if args.command == "architecture":
        if args.image_size % 32 or args.image_size < 64:
            parser.error("--image-size must be a multiple of 32, at least 64")
        print(architecture_table(args.image_size))
    return 0


if __name__ == "__main__":
    sys.exit(main())
