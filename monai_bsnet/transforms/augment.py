"""Training augmentation that knows the Brixia zone convention."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import Flip, MapTransform, RandomizableTransform

__all__ = ["LATERAL_ZONE_SWAP", "swap_zone_sides", "mirror_average", "RandLateralFlipd", "RandRaterLabeld"]

#: Zone order after a left-right mirror: the patient's right lung (A, B, C) takes the place of the
#: left lung (D, E, F) and the reverse, level by level.
LATERAL_ZONE_SWAP: tuple[int, ...] = (3, 4, 5, 0, 1, 2)


def swap_zone_sides(scores):
    """Zone scores ``(..., 6)`` or per-zone probabilities ``(..., 6, 4)`` of the mirrored image.

    The zone axis is the last one of a score vector and the second to last of probabilities;
    A, B, C trade places with D, E, F (numpy arrays and tensors alike).
    """
    if not isinstance(scores, torch.Tensor):
        scores = np.asarray(scores)
    axis = -2 if scores.ndim >= 2 and tuple(scores.shape[-2:]) == (6, 4) else -1
    if isinstance(scores, torch.Tensor):
        return scores.index_select(axis, torch.tensor(LATERAL_ZONE_SWAP, device=scores.device))
    return np.take(scores, LATERAL_ZONE_SWAP, axis=axis)


def mirror_average(probabilities, mirrored_probabilities):
    """The zone probabilities ``(..., 6, 4)`` of mirror test-time augmentation: the mean of the image's
    and its left-right mirror's, whose zones are swapped back first (numpy arrays and tensors alike)."""
    return (probabilities + swap_zone_sides(mirrored_probabilities)) / 2


class RandLateralFlipd(RandomizableTransform, MapTransform):
    """Mirror the image left-right and swap the zone scores of the two lungs to match.

    A plain ``RandFlipd`` on a Brixia-labelled image would be wrong: after the mirror the patient's
    right lung (zones A, B, C) lies in the right half of the picture, where zones D, E, F are read.
    Swapping the scores keeps image and label consistent, and doubles the examples each zone's
    classifier sees. The heart then sits on the wrong side, which the network may notice; whether
    this helps is measured by cross-validation (see the model card).

    Args:
        keys: image-like keys, (C, H, W); they are flipped along W.
        label_key: the key of the six zone scores (A..F), swapped side for side.
        prob: probability of flipping.
        allow_missing_keys: don't fail when a key is absent.
    """

    def __init__(self, keys: KeysCollection, label_key: str = "label", prob: float = 0.5, allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.label_key = label_key
        self.flip = Flip(spatial_axis=1)

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        for key in self.key_iterator(d):
            d[key] = self.flip(d[key])
        if self.label_key in d:
            d[self.label_key] = swap_zone_sides(d[self.label_key])
        return d


class RandRaterLabeld(RandomizableTransform, MapTransform):
    """Train on another rater's zone scores for a random share of the draws.

    Two radiologists rated every public BrixIA image; their scores differ on 36% of the zones
    (junior against senior, 138 images). Drawing the label from either rater trains the classifier
    toward both raters' score distribution rather than one rater's choice on borderline zones (in
    expectation, the cross-entropy against the raters' averaged distribution). Validation keeps the
    reference rater, so the best epoch and every reported metric still compare with the senior
    radiologist. Cross-validated on the public images it did not lower the errors (model card).

    Place it before :class:`RandLateralFlipd`, which swaps whatever label it finds.

    Args:
        keys: the key of the six zone scores trained on (``"label"``).
        rater_key: the key of the other rater's six zone scores (``"label_junior"``).
        prob: probability of training on ``rater_key``'s scores instead.
        allow_missing_keys: don't fail when ``keys`` is absent.

    Raises:
        KeyError: a draw needs ``rater_key`` and the item lacks it (a datalist with one rater).
    """

    def __init__(self, keys: KeysCollection = "label", rater_key: str = "label_junior", prob: float = 0.5,
                 allow_missing_keys: bool = False) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        RandomizableTransform.__init__(self, prob)
        self.rater_key = rater_key

    def __call__(self, data: Mapping[Hashable, object]) -> dict[Hashable, object]:
        d = dict(data)
        self.randomize(None)
        if not self._do_transform:
            return d
        if self.rater_key not in d:
            raise KeyError(f"{d.get('image_path', 'this item')}: no {self.rater_key!r} scores to train on "
                           f"(the datalist has one rater: set the probability to 0)")
        for key in self.key_iterator(d):
            d[key] = torch.as_tensor(d[self.rater_key], dtype=torch.as_tensor(d[key]).dtype)
        return d
