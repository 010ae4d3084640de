"""Where each Brixia zone lies in the input image: the aligned-frame zone grid mapped back through theta."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["ZONE_BANDS", "zone_index_map", "zone_label_map"]

#: Non-overlapping row bands of the aligned frame for drawing zones: the scoring boxes overlap
#: (rows 0-0.4, 0.3-0.7, 0.6-1.0), so a map splits each overlap in its middle.
ZONE_BANDS = (0.35, 0.65)


def zone_index_map(theta: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zone index (0..5 for A..F, -1 outside the aligned frame) of every pixel of an (H, W) image.

    ``theta`` (2, 3) maps aligned-frame coordinates to input coordinates (both normalised to
    [-1, 1], pixel centres as in ``affine_grid(..., align_corners=False)``); each input pixel is taken
    to the aligned frame by its inverse. Being in normalised coordinates, the same ``theta`` serves
    the network frame and the original image.
    """
    height, width = int(size[0]), int(size[1])
    inverse = torch.linalg.inv(theta.detach().double().cpu()[:, :2]).float()
    shift = theta.detach().float().cpu()[:, 2]
    xs = ((torch.arange(width, dtype=torch.float32) * 2 + 1) / width - 1 - shift[0])[None, :]
    ys = ((torch.arange(height, dtype=torch.float32) * 2 + 1) / height - 1 - shift[1])[:, None]
    # aligned = inverse @ (point - shift), written out so that rows and columns broadcast
    u = (inverse[0, 0] * xs + inverse[0, 1] * ys + 1) / 2  # fractions of the aligned frame
    v = (inverse[1, 0] * xs + inverse[1, 1] * ys + 1) / 2
    row = (v >= ZONE_BANDS[0]).long() + (v >= ZONE_BANDS[1]).long()
    column = (u >= 0.5).long()  # image left = patient's right lung = zones A, B, C
    index = column * 3 + row
    inside = (u >= 0) & (u < 1) & (v >= 0) & (v < 1)
    return torch.where(inside, index, torch.full_like(index, -1))


def zone_label_map(zone_index: torch.Tensor, scores: Sequence[int], lung: torch.Tensor) -> torch.Tensor:
    """Label map (H, W) uint8: the score + 1 (1..4) of each zone inside the lungs, 0 elsewhere.

    Pixels on the border between two zones are set to 0, so that the zones stay apart when drawn
    (and when a radiologist repaints one of them).

    Args:
        zone_index: from :func:`zone_index_map`.
        scores: six zone scores, A..F.
        lung: (H, W) boolean lung mask in the same geometry.
    """
    # index -1 (outside the frame) picks the leading 0, zones 0..5 their score + 1
    lookup = torch.as_tensor([0] + [int(s) + 1 for s in scores], dtype=torch.uint8)
    out = lookup[zone_index + 1]
    out[~lung.bool()] = 0
    # a pixel next to (or diagonal to) another zone is a border pixel
    z = zone_index
    border = torch.zeros(z.shape, dtype=torch.bool)
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        a = z[dy:, max(dx, 0) : z.shape[1] + min(dx, 0)]
        b = z[: z.shape[0] - dy, max(-dx, 0) : z.shape[1] - max(dx, 0)]
        differs = a != b
        border[dy:, max(dx, 0) : z.shape[1] + min(dx, 0)] |= differs
        border[: z.shape[0] - dy, max(-dx, 0) : z.shape[1] - max(dx, 0)] |= differs
    out[border] = 0
    return out
