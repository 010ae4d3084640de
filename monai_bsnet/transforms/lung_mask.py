"""Clean-up of the network's lung map before it becomes the lung mask users see."""

from __future__ import annotations

import torch
from monai.transforms import Compose, FillHoles, KeepLargestConnectedComponent

__all__ = ["clean_lung_probability"]

# the clean-up must not move the boundary of what it keeps: a margin this small never does in practice
_MARGIN = 1e-4


def clean_lung_probability(lung: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """The lung probability map (1, h, w) edited so that its mask at ``threshold`` is two lungs.

    The mask (``lung > threshold``) keeps its two largest connected regions (the two lungs) and has
    its holes filled, with MONAI's ``KeepLargestConnectedComponent`` and ``FillHoles``. The map, not
    the mask, is returned, so that it can still be resized to the image's geometry before the
    threshold: probabilities of removed regions are capped just below the threshold, those of filled
    holes raised just above it, and every other value is left alone. On the lungseg test split this lifts
    the mean Dice of the shipped model's masks from 0.933 to 0.937 and the worst one from 0.70 to 0.77
    (``train_recipe.py evaluate_segmentation``). Runs at the network's resolution (~40 ms at 512 px;
    about a second at 2500 px, hence not after resizing).

    Args:
        lung: lung probabilities (1, h, w) in [0, 1].
        threshold: probability above which a pixel is lung.
    """
    # both transforms edit their input in place: give them a mask of their own
    mask = Compose([KeepLargestConnectedComponent(num_components=2), FillHoles()])((lung > threshold).float())
    keep = torch.as_tensor(mask).bool()
    return torch.where(keep, lung.clamp(min=threshold + _MARGIN), lung.clamp(max=threshold - _MARGIN))
