"""The canonical lung alignment target and the lung-mask clean-up."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.draw import ellipse
from skimage.measure import regionprops

from monai_bsnet.transforms import CanonicalLungAlignment, CanonicalLungAlignmentd, clean_lung_probability, lung_orientation, to_original_geometry


def two_lungs(tilt_degrees: float, size: int = 128) -> np.ndarray:
    """Two elliptic 'lungs' side by side, the pair turned by ``tilt_degrees`` about the centre."""
    mask = np.zeros((size, size), np.uint8)
    c = size / 2
    t = math.radians(tilt_degrees)
    for dx in (-18, 18):  # lung centres left and right of the midline, before the tilt
        cy, cx = c - dx * math.sin(t), c + dx * math.cos(t)
        rr, cc = ellipse(cy, cx, 34, 13, shape=mask.shape, rotation=t)
        mask[rr, cc] = 1
    return mask


def bbox(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return ys.min(), ys.max(), xs.min(), xs.max()


@pytest.mark.parametrize("tilt", [-20, 0, 12, 25])
def test_canonical_form_is_upright_and_fills_the_frame(tilt: float):
    mask = two_lungs(tilt)
    assert abs(math.degrees(lung_orientation(mask)) - tilt) < 3  # measured tilt
    out = CanonicalLungAlignment()(mask[None].astype(np.float32))
    assert isinstance(out, np.ndarray) and out.shape == (1, 128, 128)
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert abs(math.degrees(lung_orientation(out[0] > 0))) < 2
    top, bottom, left, right = bbox(out[0])
    # the 3 px margin around the box, scaled to the frame (+-1 px of resampling), is all that is left
    assert top <= 7 and left <= 7 and bottom >= 120 and right >= 120
    # two separate lungs stay two separate lungs
    assert out[0, 64, 64] == 0


def test_output_size_type_and_dictionary_version():
    mask = torch.as_tensor(two_lungs(10, size=96)[None]).float()
    out = CanonicalLungAlignment(spatial_size=(64, 48))(mask)
    assert isinstance(out, torch.Tensor) and out.shape == (1, 64, 48)
    d = CanonicalLungAlignmentd(keys="target", spatial_size=(64, 48))({"target": mask, "mask": mask})
    assert torch.equal(d["target"], out) and d["mask"] is mask


def test_empty_mask_is_refused():
    with pytest.raises(ValueError, match="empty"):
        CanonicalLungAlignment()(np.zeros((1, 32, 32), np.float32))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2 * float((a * b).sum()) / float(a.sum() + b.sum())


def test_real_lung_masks_give_the_same_target_whatever_their_tilt(shared_data):
    canonical = CanonicalLungAlignment()
    tested, agreement = 0, []
    for path in sorted((shared_data / "lungseg" / "masks").glob("*.png"))[:8]:
        image = Image.open(path).convert("L")
        mask = (np.asarray(image) > 127).astype(np.float32)[None]
        props = regionprops(mask[0].astype(np.uint8))[0]
        if props.axis_major_length < 1.3 * props.axis_minor_length:
            continue  # a near-round mask has no well-defined principal orientation
        tested += 1
        out = canonical(mask)
        assert out.shape == mask.shape
        top, bottom, left, right = bbox(out[0])
        assert top <= 10 and left <= 10 and bottom >= mask.shape[1] - 11 and right >= mask.shape[2] - 11, path.name
        for degrees in (-10, 10):
            tilted = (np.asarray(image.rotate(degrees, resample=Image.BILINEAR)) > 127).astype(np.float32)[None]
            # not 1.0: a mask that touches the frame loses its corners when turned
            agreement.append(dice(canonical(tilted), out))
            assert agreement[-1] > 0.85, (path.name, degrees)
        # while the tilted masks themselves differ much more from the target
        assert dice(tilted, out) < dice(canonical(tilted), out) - 0.05
    assert tested >= 4
    assert np.mean(agreement) > 0.95


def test_lung_clean_up_removes_islands_fills_holes_and_leaves_the_rest_of_the_map_alone():
    lungs = torch.from_numpy(two_lungs(0.0)).bool()[None]
    rng = np.random.default_rng(0)
    lung = torch.where(lungs, 0.6 + 0.4 * torch.from_numpy(rng.random(lungs.shape)), 0.4 * torch.from_numpy(rng.random(lungs.shape))).float()
    lung[0, 2:8, 2:8] = 0.9  # a stray island in a corner
    hole = (slice(None), slice(62, 66), slice(44, 48))  # inside the left-hand lung
    lung[hole] = 0.1
    before = lung.clone()
    cleaned = clean_lung_probability(lung, 0.5)
    assert torch.equal(lung, before), "the input map must not be edited"
    assert torch.equal(cleaned > 0.5, lungs) and torch.equal(cleaned >= 0.5, lungs)  # island gone, hole filled
    untouched = lungs.clone()
    untouched[hole] = False
    untouched |= ~lungs
    untouched[0, 2:8, 2:8] = False
    assert torch.equal(cleaned[untouched], lung[untouched])
    # it is still a probability map: resized to a larger image, the island stays away
    assert not (to_original_geometry(cleaned, (512, 512))[0, :40, :40] > 0.5).any()
    assert not (clean_lung_probability(torch.zeros(1, 32, 32)) > 0.5).any()
