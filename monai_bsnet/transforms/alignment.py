"""The canonical form of a lung mask: the target of BS-Net's alignment training."""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import CropForeground, MapTransform, Resize, Rotate, Transform
from monai.utils.type_conversion import convert_to_dst_type
from skimage.measure import regionprops

__all__ = ["CanonicalLungAlignment", "CanonicalLungAlignmentd", "lung_orientation"]


def lung_orientation(mask: np.ndarray) -> float:
    """Tilt of a 2D lung mask, in radians, in [-pi/4, pi/4).

    The principal axes of the mask (of both lungs together, from its second moments) are compared with
    the image axes; the result is the smallest rotation that makes them parallel, whichever axis is
    the longer one. Positive values mean the mask is turned counter-clockwise on screen.
    """
    props = regionprops(mask.astype(np.uint8))
    if not props:
        raise ValueError("the lung mask is empty: no canonical form")
    # skimage: angle from the row axis to the major axis, counter-clockwise, in [-pi/2, pi/2]
    return (props[0].orientation + math.pi / 4) % (math.pi / 2) - math.pi / 4


class CanonicalLungAlignment(Transform):
    """Turn a lung mask into its canonical form: upright, cropped to its box plus a margin, resized.

    This is the target of BS-Net's alignment stage: a spatial transformer that warps a (distorted) lung
    mask onto this form has learnt to put the lungs upright and make them fill the frame.

    Steps, with MONAI transforms: rotate by :func:`lung_orientation` so that the principal axes are
    upright (``Rotate``), crop to the bounding box plus ``margin`` pixels (``CropForeground``), resize
    back to the input size or ``spatial_size`` (``Resize``), binarise at 0.5.

    Args:
        spatial_size: output (H, W); default: the input's size.
        margin: pixels kept around the bounding box (3 in BS-Net).
        threshold: mask value above which a pixel is lung.

    Input: a channel-first mask (1, H, W), numpy or torch. Output: same type, (1, *spatial_size), 0/1.
    """

    backend = [Rotate.backend]

    def __init__(self, spatial_size: Sequence[int] | None = None, margin: int = 3, threshold: float = 0.5) -> None:
        self.spatial_size = None if spatial_size is None else tuple(int(s) for s in spatial_size)
        self.margin = margin
        self.threshold = threshold

    def __call__(self, mask):  # type: ignore[override]
        binary = torch.as_tensor(np.asarray(mask) if not isinstance(mask, torch.Tensor) else mask).float()
        binary = (binary > self.threshold).float()
        if binary.ndim != 3 or binary.shape[0] != 1:
            raise ValueError(f"expected a channel-first 2D mask (1, H, W), got shape {tuple(binary.shape)}")
        angle = lung_orientation(binary[0].numpy() > 0)
        # skimage measures the tilt in (row, col) axes and MONAI's Rotate turns by an angle in the same
        # axes, so rotating by the measured tilt undoes it (tests check the result is upright)
        upright = Rotate(angle, keep_size=True, mode="bilinear", padding_mode="zeros")(binary)
        cropped = CropForeground(select_fn=lambda x: x > 0.5, margin=self.margin, allow_smaller=True)(upright)
        size = self.spatial_size or tuple(binary.shape[1:])
        canonical = (Resize(size, mode="bilinear", anti_aliasing=False)(cropped) > 0.5).float()
        out, *_ = convert_to_dst_type(canonical.as_tensor() if hasattr(canonical, "as_tensor") else canonical, mask)
        return out


class CanonicalLungAlignmentd(MapTransform):
    """Dictionary version of :class:`CanonicalLungAlignment` (replaces the masks under ``keys``)."""

    def __init__(
        self,
        keys: KeysCollection,
        spatial_size: Sequence[int] | None = None,
        margin: int = 3,
        threshold: float = 0.5,
        allow_missing_keys: bool = False,
    ) -> None:
        super().__init__(keys, allow_missing_keys)
        self.transform = CanonicalLungAlignment(spatial_size, margin, threshold)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.transform(d[key])
        return d
