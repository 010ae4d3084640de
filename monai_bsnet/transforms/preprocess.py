"""BS-Net preprocessing (resize to the network's square, equalise) and its inverse mapping."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection, NdarrayOrTensor
from monai.data import MetaTensor
from monai.transforms import Compose, EnsureType, EnsureTyped, HistogramNormalize, HistogramNormalized, MapTransform, Resize, Resized, Transform
from monai.utils import convert_to_dst_type, convert_to_numpy

__all__ = [
    "NETWORK_SIZE",
    "EqualiseHistogram",
    "EqualiseHistogramd",
    "cxr_preprocessing",
    "cxr_preprocessingd",
    "equalise_histogram",
    "to_original_geometry",
]

#: The side of the square images BS-Net reads.
NETWORK_SIZE = 512


def equalise_histogram(image: NdarrayOrTensor, num_bins: int = 256, lo: float = 0.0, hi: float | None = None) -> np.ndarray:
    """Global histogram equalisation onto [0, 1] with ``num_bins`` bins over [``lo``, ``hi``].

    The cumulative histogram, less its first bin and rescaled to [0, 1], interpolated between bin centres:
    MONAI's ``HistogramNormalize(min=0, max=1)`` except for where the bins lie. MONAI spreads them over the
    image's own [min, max]; here the lower end is fixed (0 by default, where every loaded CXR starts) and the
    upper end is the image's maximum unless given. Why: with the lower end at the image's minimum, a large
    dark background near the first bin's edge jumps between bins when the file is re-encoded (a JPEG's noise
    reaches 0 where the original's minimum was 0.001) and then every grey level moves: the expected global
    score of one public image moved by 3.1 under the GPU pack's JPEG. With bins over [0, max] it moves by
    0.19 at most, and a picture that fills only part of [0, 1] (a 16-bit file of 12-bit values) keeps all
    its bins (``benchmarks/reencoding.py``; ``bundle/docs/experiments.md``, "Preprocessing: histogram
    equalisation with bins over [0, the image's maximum]?"). It is not :func:`cxr_preprocessing`'s: with
    the scoring stages fitted again on it, the served ratings cross-validated worse (zone MAE with the zone
    context stage 0.627 against 0.617 over three sets of draws; 0.618 against 0.612 with the stage's strength
    chosen on its rows, as served since 0.3.5), so the shipped weights keep MONAI's.

    Args:
        image: the grey levels, any shape, at least ``lo``.
        num_bins: the histogram's bins.
        lo: the lower end of the bins.
        hi: their upper end (default: the image's maximum). An image with nothing above ``lo`` (all black) gives 0s.

    Returns:
        float64 array of the image's shape, in [0, 1].
    """
    values = convert_to_numpy(image, dtype=np.float64)
    top = float(values.max()) if hi is None else float(hi)
    if not top > lo:  # all black: nothing to spread
        return np.zeros_like(values)
    counts, edges = np.histogram(values, num_bins, range=(lo, top))
    cumulative = counts.cumsum().astype(np.float64)
    cumulative = (cumulative - cumulative[0]) / max(cumulative[-1] - cumulative[0], 1.0)
    return np.interp(values, (edges[:-1] + edges[1:]) / 2, cumulative)


class EqualiseHistogram(Transform):
    """:func:`equalise_histogram` as a MONAI transform: bins over [0, the image's maximum] by default.
    Not the shipped preprocessing (see :func:`equalise_histogram`); for a model trained with it.

    Args:
        num_bins: the histogram's bins.
        lo: the lower end of the bins.
        hi: their upper end (default: each image's maximum).
    """

    def __init__(self, num_bins: int = 256, lo: float = 0.0, hi: float | None = None) -> None:
        self.num_bins, self.lo, self.hi = num_bins, lo, hi

    def __call__(self, img: NdarrayOrTensor) -> NdarrayOrTensor:
        equalised = equalise_histogram(img, self.num_bins, self.lo, self.hi)
        return convert_to_dst_type(equalised, dst=img, dtype=torch.float32)[0]  # MONAI maps the dtype to numpy's for arrays


class EqualiseHistogramd(MapTransform):
    """Dictionary version of :class:`EqualiseHistogram`."""

    def __init__(self, keys: KeysCollection, num_bins: int = 256, lo: float = 0.0, hi: float | None = None, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.equalise = EqualiseHistogram(num_bins, lo, hi)

    def __call__(self, data: Mapping[Hashable, NdarrayOrTensor]) -> dict[Hashable, NdarrayOrTensor]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.equalise(d[key])
        return d


def cxr_preprocessing(spatial_size: int = NETWORK_SIZE) -> Compose:
    """Preprocess a loaded CXR (1, H, W) in [0, 1] the way BS-Net was trained.

    1. Resize to ``spatial_size`` x ``spatial_size`` without keeping the aspect ratio, as the authors
       did ("area" interpolation, which averages when shrinking and so needs no extra anti-aliasing).
    2. Global histogram equalisation (256 bins over the image's [min, max]) onto [0, 1]. It also makes the
       input independent of any monotonic grey-level mapping left by the source (window, gamma, 8- or
       16-bit storage). Where a large dark area lies at the edge of the first bin, the JPEG noise of a
       re-encoded copy can move every grey level (:class:`EqualiseHistogram` is robust to that, but the
       shipped scoring stages scored worse on it).
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
