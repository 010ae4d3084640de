"""BS-Net preprocessing (equalise, resize to the network's square) and its inverse mapping."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureType, EnsureTyped, HistogramNormalize, HistogramNormalized, Resize, Resized

__all__ = ["NETWORK_SIZE", "cxr_preprocessing", "cxr_preprocessingd", "to_original_geometry"]

#: The side of the square images BS-Net reads.
NETWORK_SIZE = 512


def cxr_preprocessing(spatial_size: int = NETWORK_SIZE) -> Compose:
    """Preprocess a loaded CXR (1, H, W) in [0, 1] the way BS-Net was trained.

    1. Resize to ``spatial_size`` x ``spatial_size`` without keeping the aspect ratio, as the authors
       did ("area" interpolation, which averages when shrinking and so needs no extra anti-aliasing).
    2. Global histogram equalisation (256 bins) onto [0, 1]. It also makes the input independent of
       any monotonic grey-level mapping left by the source (window, gamma, 8- or 16-bit storage).
       Equalising after the resize gives the same picture as before it (the histogram of an
       area-averaged image is a smoothed copy) at a sixteenth of the cost for a 2000 px radiograph.
    """
    return Compose(
        [
            Resize((spatial_size, spatial_size), mode="area"),
            HistogramNormalize(num_bins=256, min=0, max=1),
            EnsureType(dtype=torch.float32),
        ]
    )


def cxr_preprocessingd(keys: KeysCollection = "image", spatial_size: int = NETWORK_SIZE) -> Compose:
    """Dictionary version of :func:`cxr_preprocessing`."""
    return Compose(
        [
            Resized(keys, (spatial_size, spatial_size), mode="area"),
            HistogramNormalized(keys, num_bins=256, min=0, max=1),
            EnsureTyped(keys, dtype=torch.float32),
        ]
    )


def to_original_geometry(maps: torch.Tensor, original_size: Sequence[int], mode: str = "bilinear") -> torch.Tensor:
    """Map network-frame outputs (C, h, w) (probability maps, zone maps) back onto the original image.

    The inverse of the resize in :func:`cxr_preprocessing`: both resamplings align pixel areas (not
    corners), so a structure at a given fraction of the network frame lands at the same fraction of
    the original image. Use ``mode="nearest"`` for label maps and ``"bilinear"`` for probabilities.

    Args:
        maps: channel-first maps in the network frame.
        original_size: (H, W) of the original image (``meta["spatial_shape"]`` of :class:`LoadCXR`).
        mode: interpolation mode.
    """
    size = (int(original_size[0]), int(original_size[1]))
    restored = Resize(size, mode=mode, anti_aliasing=False)(torch.as_tensor(maps))
    return restored.as_tensor() if isinstance(restored, MetaTensor) else restored
