"""Explanation maps of BS-Net's zone scores: which parts of the radiograph support each zone's score.

Two methods, both giving a relevance map per zone (A..F) and per score class (0..3), ``(6, 4, h, w)``
at the network's resolution, then mapped back onto the original image:

- :func:`occlusion_relevance` (the BS-Net authors' super-pixel explanation): the lung region of the
  network input is cut into SLIC super-pixels; the relevance of a super-pixel for zone z and class c
  is the drop of p(zone z = c) when that super-pixel is occluded. Model-agnostic and in probability
  units, but it costs one network pass per super-pixel (batched).
- :func:`gradcam_relevance`: MONAI's Grad-CAM on a ResNet stage of the encoder, one map per zone
  logit. Twenty-four passes through the encoder and the scoring path only (14 s on the 2-core CPU,
  against 48 s for 64 super-pixels); coarse (16 px cells at 512 px) and in arbitrary units.

:func:`render_explanation` draws them like the BrixIA figure (white = no contribution, the score's
colour = strong contribution), :func:`save_relevance_nifti` keeps the float maps, and
:func:`write_explanation` writes both for one image, all or nothing.
"""

from __future__ import annotations

import copy
import functools
import logging
import math
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from monai_bsnet.inference.zone_map import zone_index_map
from monai_bsnet.transforms import to_original_geometry
from monai_bsnet.writers import SCORE_COLOURS, _font, atomic_path
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES, ZONE_NAMES, median_scores

__all__ = [
    "EXPLAIN_METHODS",
    "Explanation",
    "occlusion_relevance",
    "gradcam_relevance",
    "explain",
    "render_explanation",
    "save_relevance_nifti",
    "write_explanation",
]

logger = logging.getLogger(__name__)

#: The explanation methods :func:`explain` (and ``bsnet predict --explain``) accept.
EXPLAIN_METHODS: tuple[str, ...] = ("occlusion", "gradcam")


class Explanation(NamedTuple):
    """An explanation of one image's zone scores, in the network frame (h x w, 512 x 512 for BS-Net).

    Attributes:
        method: ``"occlusion"`` or ``"gradcam"``.
        relevance: (6, 4, h, w) float32, zones A..F x scores 0..3. Occlusion: drop of the class
            probability when the pixel's super-pixel is occluded (negative: occluding it makes the
            class likelier). Grad-CAM: the non-negative class activation of the zone logit.
        region: (h, w) bool, the explained area (the dilated predicted lungs).
        probabilities: (6, 4) zone score probabilities whose scores the picture names: the unaltered
            image's (BrixiaPredictor puts its record's there, with mirror TTA their average).
        segments: (h, w) int64 super-pixel labels 1..n, 0 outside ``region`` (occlusion only).
        units: what a relevance value means, for records and file headers.
        scores: (6,) the zone scores the picture names, where they are not the medians of
            ``probabilities`` (BrixiaPredictor puts its record's there).
    """

    method: str
    relevance: torch.Tensor
    region: torch.Tensor
    probabilities: torch.Tensor
    segments: torch.Tensor | None
    units: str
    scores: Sequence[int] | None = None

    def to_original(self, size: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
        """The relevance (6, 4, H, W) float32 and the region (H, W) bool on the original image of ``size`` (H, W).

        The network frame is the original image resized without keeping the aspect ratio, so going back
        is the inverse resize of :func:`~monai_bsnet.transforms.to_original_geometry`.
        """
        h, w = self.relevance.shape[-2:]
        maps = to_original_geometry(self.relevance.reshape(NUM_ZONES * NUM_SCORES, h, w), size, mode="bilinear")
        region = to_original_geometry(self.region[None].float(), size, mode="nearest")[0] > 0.5
        return maps.reshape(NUM_ZONES, NUM_SCORES, *maps.shape[-2:]).numpy().astype(np.float32), region.numpy()


# ---- shared pieces -------------------------------------------------------------------------------------
def _device(network: nn.Module) -> torch.device:
    parameter = next(iter(network.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def _as_batch(net_input: torch.Tensor) -> torch.Tensor:
    """(h, w), (1, h, w) or (1, 1, h, w) -> (1, 1, h, w) float32."""
    x = net_input.as_tensor() if hasattr(net_input, "as_tensor") else torch.as_tensor(net_input)
    x = x.float()  # a plain tensor: MetaTensor's per-operation bookkeeping would slow every pass down
    while x.ndim < 4:
        x = x[None]
    if x.shape[:2] != (1, 1):
        raise ValueError(f"expected one single-channel image, got shape {tuple(net_input.shape)}")
    return x


def _lung_mask(lung: torch.Tensor, threshold: float) -> np.ndarray:
    return (torch.as_tensor(lung).float().squeeze() > threshold).cpu().numpy()


def _explained_region(lung_mask: np.ndarray, margin: int, min_fraction: float = 0.05) -> torch.Tensor:
    """The predicted lungs, dilated by ``margin`` pixels; the whole frame where no lungs were found.

    The margin takes in the pleural borders and costophrenic angles, where a slightly undersized mask
    would otherwise leave opacities unexplained.
    """
    from skimage.morphology import dilation, disk

    if lung_mask.mean() < min_fraction:
        # the "lungs_not_found" quality flag's threshold: an explanation of the whole frame is still honest
        logger.warning("lungs cover %.1f%% of the frame: explaining the whole image", 100 * lung_mask.mean())
        return torch.ones(lung_mask.shape, dtype=torch.bool)
    return torch.from_numpy(dilation(lung_mask, disk(margin)).astype(bool) if margin > 0 else lung_mask.copy())


def _base_outputs(network: nn.Module, x: torch.Tensor) -> Any:
    with torch.inference_mode():
        return network.outputs(x)


# ---- occlusion -----------------------------------------------------------------------------------------
def occlusion_relevance(
    network: nn.Module,
    net_input: torch.Tensor,
    lung: torch.Tensor | None = None,
    n_segments: int = 64,
    compactness: float = 0.1,
    batch_size: int | None = None,
    fill: str = "blur",
    lung_threshold: float = 0.5,
    margin: int = 8,
) -> Explanation:
    """Super-pixel occlusion relevance of every zone and score class (Signoroni et al. 2021, sec. 5.4).

    The lung region of the network input is cut into about ``n_segments`` SLIC super-pixels; each is
    occluded in turn, the occluded images go through the network ``batch_size`` at a time, and the
    relevance of a super-pixel for zone z and class c is ``p(z = c | image) - p(z = c | occluded)``.
    The occluded image goes through the whole network, so a super-pixel also counts through the lung
    segmentation and the alignment it changes, as it does when the network scores.

    Cost: ``n + 1`` network passes (n = super-pixels actually made, about ``n_segments``): on the 2-core
    development CPU 48 s for ``n_segments=64`` (60 made, 0.78 s per pass at ``batch_size=1``); not yet
    measured on a GPU, where the passes batch.

    Args:
        network: a :class:`~monai_bsnet.networks.BSNet`, or any module with an ``outputs(x)`` method
            returning ``zone_logits`` (B, 6, 4) and ``lung_logits`` (B, 1, h, w), in eval mode.
        net_input: the preprocessed image (1, h, w) or (1, 1, h, w) in [0, 1]
            (:func:`~monai_bsnet.transforms.cxr_preprocessing`).
        lung: lung probability map (1, h, w) in the network frame; default: the network's own.
        n_segments: SLIC's target number of super-pixels inside the region. More gives finer maps and
            costs proportionally more passes.
        compactness: SLIC's trade-off between grey-level similarity and square shape, for intensities
            in [0, 1] (higher: more regular, less adherent to edges).
        batch_size: occluded images per network call; default: 16 on a GPU, 1 on a CPU, where
            batching costs time (2-core machine, 60 super-pixels: 48 s at 1, 58 s at 4, 67 s at 8).
        fill: what an occluded super-pixel is replaced by. ``"blur"`` (default): the image blurred at
            about the super-pixel's size, lung pixels averaged with lung pixels only, which removes
            the texture and detail inside the super-pixel (the interstitial and alveolar patterns the
            scores are about) and keeps the brightness of the surrounding lung, so the occluded image
            stays a plausible radiograph. A constant would paint a flat patch with sharp edges: after
            histogram equalisation a mid-grey patch in an aerated (dark) lung looks like an opacity,
            and a dark one erases the lung border, so the network would react to the patch rather
            than to the missing content. ``"mean"``: the mean intensity of the region, for
            comparison. Limitation of either: a wide uniform consolidation keeps its brightness under
            a blur of one super-pixel, so occlusion under-rates large uniform opacities (no single
            super-pixel is needed for them).
        lung_threshold: lung probability above which a pixel is lung.
        margin: pixels by which the lung mask is dilated before cutting it into super-pixels.

    Returns:
        An :class:`Explanation` with ``segments`` set.
    """
    from skimage.filters import gaussian
    from skimage.segmentation import relabel_sequential, slic

    if fill not in ("blur", "mean"):
        raise ValueError(f"fill must be 'blur' or 'mean', got {fill!r}")
    device = _device(network)
    if batch_size is None:
        batch_size = 1 if device.type == "cpu" else 16
    if batch_size < 1 or n_segments < 1:
        raise ValueError("batch_size and n_segments must be positive")
    x = _as_batch(net_input)
    # the same memory format as the occluded passes below, so that their differences are the occlusion's
    base = _base_outputs(network, x.to(device, memory_format=torch.channels_last))
    probabilities = torch.softmax(base.zone_logits.float(), -1)[0].cpu()
    if lung is None:
        lung = torch.sigmoid(base.lung_logits.float())[0].cpu()
    lung_mask = _lung_mask(lung, lung_threshold)
    region = _explained_region(lung_mask, margin)

    image = x[0, 0].numpy().astype(np.float64)
    # sigma=1 smooths the noise SLIC would otherwise follow; mask= keeps the seeds inside the lungs
    labels = slic(image, n_segments=n_segments, compactness=compactness, sigma=1.0, mask=region.numpy(),
                  channel_axis=None, start_label=1, enforce_connectivity=True)
    labels = relabel_sequential(labels)[0]  # 1..n without gaps, 0 outside the region
    count = int(labels.max())
    if fill == "blur":
        sigma = math.sqrt(float(region.sum()) / max(count, 1)) / 2  # half the mean super-pixel side
        # reflect at the frame's edge: zero padding would darken the fill of lungs that touch it
        blur = functools.partial(gaussian, sigma=sigma, mode="reflect", preserve_range=True)
        # inside the lungs, a blur of lung pixels only (normalised convolution): a plain blur would
        # bring the bright mediastinum, diaphragm and chest wall into the super-pixels along the lung
        # border, painting there an opacity that is not in the image
        weight = blur(lung_mask.astype(np.float64))
        lung_blur = blur(image * lung_mask) / np.maximum(weight, 1e-3)
        filled = np.where(lung_mask & (weight > 1e-3), lung_blur, blur(image))
        filler = torch.from_numpy(filled).float()
    else:
        filler = torch.full(image.shape, float(image[region.numpy()].mean()))

    segments = torch.from_numpy(labels.astype(np.int64))
    image_t = x[0, 0]
    drops = torch.zeros(count + 1, NUM_ZONES, NUM_SCORES)  # row 0: outside the region, no relevance
    with torch.inference_mode():
        for start in range(1, count + 1, batch_size):
            ids = torch.arange(start, min(start + batch_size, count + 1))
            occluded = segments[None] == ids[:, None, None]  # (b, h, w)
            batch = torch.where(occluded, filler, image_t)[:, None]
            # channels-last, as the predictor runs the network: faster convolution kernels
            out = network.outputs(batch.to(device, memory_format=torch.channels_last))
            drops[ids] = probabilities - torch.softmax(out.zone_logits.float(), -1).cpu()
    relevance = drops[segments].permute(2, 3, 0, 1).contiguous()  # (h, w, 6, 4) -> (6, 4, h, w)
    return Explanation("occlusion", relevance, region, probabilities, segments,
                       "drop of the zone score probability when the super-pixel is occluded")


# ---- Grad-CAM ------------------------------------------------------------------------------------------
class _ZoneLogits(nn.Module):
    """BS-Net as a 24-class classifier for MONAI's CAM classes: flattened zone logits (B, 24),
    class index = zone * 4 + score, with the lung map and the alignment held fixed.

    Grad-CAM explains which image features support a zone's class; fixing the lung geometry (computed
    once, without gradient) keeps that question apart from "where are the lungs", and spares each of the
    24 passes the full-resolution U-Net++ decoder forward and backward, most of the network's cost.
    """

    def __init__(self, network: nn.Module, theta: torch.Tensor, aligned_lung: torch.Tensor) -> None:
        super().__init__()
        self.network = network
        self.register_buffer("theta", theta, persistent=False)
        self.register_buffer("aligned_lung", aligned_lung, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.network.encoder(x)
        # the scoring head reads encoder stages 1..4, as in BSNet.outputs
        logits = self.network.scoring(features[1:], self.theta, self.aligned_lung)
        return logits.flatten(1)


def gradcam_relevance(
    network: nn.Module,
    net_input: torch.Tensor,
    lung: torch.Tensor | None = None,
    target_layer: str = "encoder.layer3",
    lung_threshold: float = 0.5,
    margin: int = 8,
) -> Explanation:
    """Grad-CAM (MONAI's :class:`monai.visualize.GradCAM`) of every zone and score-class logit.

    The target layer is the encoder's third ResNet stage (``encoder.layer3``, stride 16: 32 x 32 cells
    at 512 px). The scoring head reads four encoder stages through its feature pyramid; the gradient at
    stage 3 gathers both what stage 3 feeds the pyramid directly and what it feeds through stage 4,
    where stage 4's gradient would see only the coarsest path, and its 16 x 16 cells (32 px) are too
    coarse for a map per zone (a zone spans about 5 x 3 of them). Any module name of the network can
    be given instead.

    Grad-CAM weighs each channel by its gradient averaged over the image and sums the channels over the
    whole image, so a zone's map would also light up other zones wherever the same channels fire;
    since a zone's logits read the aligned features inside that zone's box only, each zone's map is
    kept to the zone's own area (:func:`~monai_bsnet.inference.zone_map.zone_index_map`).

    The network is copied (hooks and gradient flags go on the copy; the caller's network is left as it
    was), and only the target layer's parameters take gradients: the backward pass stops there.

    Args:
        network: a :class:`~monai_bsnet.networks.BSNet` (``encoder``, ``segmentation``, ``alignment``,
            ``scoring`` and ``outputs``).
        net_input: the preprocessed image (1, h, w) or (1, 1, h, w) in [0, 1].
        lung: lung probability map (1, h, w) in the network frame, for the explained region only;
            default: the network's own.
        target_layer: module name, in ``network.named_modules()``, whose activations are explained.
        lung_threshold: lung probability above which a pixel is lung.
        margin: pixels by which the lung mask is dilated for the explained region.
    """
    from monai.visualize import GradCAM

    device = _device(network)
    x = _as_batch(net_input).to(device)
    twin = copy.deepcopy(network).eval()
    twin.requires_grad_(False)
    twin.get_submodule(target_layer).requires_grad_(True)
    base = _base_outputs(twin, x)
    probabilities = torch.softmax(base.zone_logits.float(), -1)[0].cpu()
    if lung is None:
        lung = torch.sigmoid(base.lung_logits.float())[0].cpu()
    region = _explained_region(_lung_mask(lung, lung_threshold), margin)
    theta, aligned_lung = base.theta.clone(), base.aligned_lung.clone()  # out of inference mode
    cam = GradCAM(_ZoneLogits(twin, theta, aligned_lung), target_layers=f"network.{target_layer}", postprocessing=lambda m: m)
    h, w = x.shape[-2:]
    zones = zone_index_map(theta[0], (h, w))
    relevance = torch.zeros(NUM_ZONES, NUM_SCORES, h, w)
    with torch.enable_grad(), warnings.catch_warnings():
        # the hook fires on the layer's output gradient although its input needs none: what we want
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        for z in range(NUM_ZONES):
            for c in range(NUM_SCORES):
                relevance[z, c] = cam(x, class_idx=z * NUM_SCORES + c)[0, 0].detach().float().cpu() * (zones == z)
    return Explanation("gradcam", relevance, region, probabilities, None,
                       f"Grad-CAM of the zone score logit at {target_layer} (arbitrary units)")


def explain(network: nn.Module, net_input: torch.Tensor, method: str, lung: torch.Tensor | None = None, **options: Any) -> Explanation:
    """:func:`occlusion_relevance` or :func:`gradcam_relevance` by name (``EXPLAIN_METHODS``).

    Args:
        network: the BS-Net, in eval mode.
        net_input: the preprocessed image (1, h, w) in [0, 1].
        method: ``"occlusion"`` or ``"gradcam"``.
        lung: the lung probability map (1, h, w) already computed, if any.
        options: keyword arguments of the chosen function.
    """
    if method == "occlusion":
        return occlusion_relevance(network, net_input, lung, **options)
    if method == "gradcam":
        return gradcam_relevance(network, net_input, lung, **options)
    raise ValueError(f"unknown explanation method {method!r}, expected one of {EXPLAIN_METHODS}")


# ---- rendering -----------------------------------------------------------------------------------------
#: Panel titles: the Brixia score classes in a few words (:data:`~monai_bsnet.zones.SCORE_MEANINGS` in full).
_SHORT_MEANINGS = ("no abnormality", "interstitial", "interstitial > alveolar", "alveolar > interstitial")

def _class_panel(grey: np.ndarray, strength: np.ndarray, region: np.ndarray, colour: Sequence[int], alpha: tuple[float, float]) -> np.ndarray:
    """Radiograph (h, w) 0..255 with the region tinted from white (strength 0) to ``colour`` (1).

    The tint's opacity grows with the strength too (``alpha`` at 0 and at 1): a light white haze keeps
    the lung's anatomy readable where nothing contributes, and strong contributions stand out in
    nearly pure colour.
    """
    rgb = np.repeat(grey[..., None], 3, axis=2)
    s = strength[..., None]
    tint = (1 - s) * 255.0 + s * np.asarray(colour, dtype=np.float32)
    opacity = alpha[0] + (alpha[1] - alpha[0]) * s
    rgb[region] = ((1 - opacity) * rgb + opacity * tint)[region]
    return rgb


def render_explanation(
    image: np.ndarray,
    relevance: np.ndarray,
    region: np.ndarray,
    zone_index: np.ndarray,
    probabilities: torch.Tensor | np.ndarray,
    method: str,
    model_version: str,
    max_side: int = 512,
    alpha: tuple[float, float] = (0.35, 0.85),
    scores: Sequence[int] | np.ndarray | torch.Tensor | None = None,
):
    """Draw an explanation like the BrixIA figure: five panels over the radiograph.

    The first panel shows, in each zone, the relevance for that zone's predicted score, in that score's
    colour; the next four show one score class each (0..3), every zone's relevance for that class.
    Inside the explained region white means no contribution and the class colour (green, yellow,
    orange, red, as in the overlay and the zone map) a strong one; a pixel shows the relevance of the
    zone it lies in (zone bands of the zone map). One scale for all panels, so that the colour strength
    compares across classes; the scale (what full colour means) is printed under the panels.
    Negative relevance (occlusion made the class likelier) is drawn as white.

    Args:
        image: (H, W) grey radiograph in [0, 1].
        relevance: (6, 4, H, W) from :meth:`Explanation.to_original`.
        region: (H, W) bool explained area.
        zone_index: (H, W) zone index 0..5, -1 outside
            (:func:`~monai_bsnet.inference.zone_map.zone_index_map`).
        probabilities: (6, 4) zone score probabilities.
        method: printed under the panels.
        model_version: printed under the panels, so that a picture always says what made it.
        max_side: each panel is shrunk to this side at most.
        alpha: opacity of the tint over the radiograph, where the relevance is nil and where it is
            strongest.
        scores: (6,) the zone scores to name; None: the medians of ``probabilities``.

    Returns:
        A PIL RGB image.
    """
    from PIL import Image, ImageDraw
    from skimage.segmentation import find_boundaries

    probabilities = np.asarray(probabilities, dtype=np.float64)
    height, width = image.shape
    scale = min(1.0, max_side / max(height, width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))

    def shrink(a: np.ndarray, nearest: bool = False) -> np.ndarray:
        mode = "F" if a.dtype.kind == "f" else "I"
        return np.asarray(Image.fromarray(a.astype(np.float32 if mode == "F" else np.int32), mode).resize(
            size, Image.NEAREST if nearest else Image.BILINEAR))

    grey = shrink(np.clip(image, 0, 1).astype(np.float32) * 255)
    index = shrink(zone_index.astype(np.int32), nearest=True).astype(int)
    inside = shrink(region.astype(np.int32), nearest=True).astype(bool) & (index >= 0)
    # each pixel takes the relevance of its own zone: (4, h, w) per class
    own = np.stack([shrink(np.take_along_axis(relevance[:, c], np.clip(zone_index, 0, None)[None], 0)[0]) for c in range(NUM_SCORES)])
    own[:, ~inside] = 0
    full = float(np.max(own)) if own.size and np.max(own) > 0 else 1.0
    strength = np.clip(own / full, 0, 1)
    predicted = median_scores(probabilities) if scores is None else np.asarray(scores, dtype=np.int64)  # the record's scores
    zone_lines = find_boundaries(np.where(inside, index, -1), mode="inner")

    panels, titles = [], []
    # panel 0: each zone in the colour of its predicted score
    rgb = np.repeat(grey[..., None], 3, axis=2).astype(np.float32)
    for z in range(NUM_ZONES):
        in_zone = inside & (index == z)
        rgb = np.where(in_zone[..., None], _class_panel(grey, strength[predicted[z]], in_zone, SCORE_COLOURS[predicted[z]], alpha), rgb)
    panels.append(rgb)
    titles.append("predicted scores")
    for c in range(NUM_SCORES):
        panels.append(_class_panel(grey, strength[c], inside, SCORE_COLOURS[c], alpha))
        titles.append(f"score {c}: {_SHORT_MEANINGS[c]}")

    header, footer, gap = max(22, size[1] // 18), max(20, size[1] // 22), 6
    canvas = Image.new("RGB", (len(panels) * size[0] + (len(panels) - 1) * gap, size[1] + header + footer), (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    font, small, note_font = _font(max(11, size[1] // 28)), _font(max(10, size[1] // 32)), _font(max(10, size[1] // 40))
    centres = {}
    step = 4  # label positions need no full-resolution search
    for z in range(NUM_ZONES):
        ys, xs = np.nonzero(inside[::step, ::step] & (index[::step, ::step] == z))
        if len(ys):
            centres[z] = (float(xs.mean() * step), float(ys.mean() * step))
    for k, (rgb, title) in enumerate(zip(panels, titles)):
        rgb = rgb.copy()
        rgb[zone_lines] = (90, 90, 90)
        left = k * (size[0] + gap)
        canvas.paste(Image.fromarray(rgb.clip(0, 255).astype(np.uint8)), (left, header))
        colour = (255, 255, 255) if k == 0 else SCORE_COLOURS[k - 1]
        draw.text((left + size[0] / 2, header / 2), title, fill=colour, font=font, anchor="mm")
        for z, (cx, cy) in centres.items():
            c = predicted[z] if k == 0 else k - 1
            text = f"{ZONE_NAMES[z]}:{c}" if k == 0 else f"{ZONE_NAMES[z]} {probabilities[z, c]:.2f}"
            draw.text((left + cx, header + cy), text, fill=(255, 255, 255), font=small, anchor="mm", stroke_width=2, stroke_fill=(0, 0, 0))
        # laterality: the patient's right is on the left of a frontal image
        draw.text((left + 4, header + size[1] / 2), "R", fill=(255, 255, 0), font=small, anchor="lm", stroke_width=2, stroke_fill=(0, 0, 0))
        draw.text((left + size[0] - 4, header + size[1] / 2), "L", fill=(255, 255, 0), font=small, anchor="rm", stroke_width=2, stroke_fill=(0, 0, 0))
    what = "probability drop when occluded" if method == "occlusion" else "Grad-CAM activation"
    note = (f"{method}: white = no contribution, full colour = {what} {full:.3g}; zone labels: "
            f"predicted score (first panel), p(score) (others). {model_version} - research use only")
    draw.text((4, header + size[1] + footer / 2), note, fill=(200, 200, 200), font=note_font, anchor="lm")
    return canvas


# ---- files ---------------------------------------------------------------------------------------------
def save_relevance_nifti(
    relevance: np.ndarray,
    path: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    pixel_spacing: Sequence[float] | None = None,
    description: str = "BS-Net relevance",
) -> Path:
    """Save a relevance map (6, 4, H, W) as a 4-D NIfTI (columns, rows, 1, 24), volume ``zone * 4 + score``.

    The voxel grid is the image's: for a NIfTI input (``reference``) its affine; otherwise pixels of
    ``pixel_spacing`` (mm, row/column; 1 mm where unknown) at the origin, with the orientation ITK (and
    so 3D Slicer and MONAI's ITK reader) gives a PNG or a DICOM radiograph without position tags.
    Values are stored as int16 with a scale factor (nibabel picks it; a 16-bit step is far below any
    meaningful relevance difference), which halves the file.

    Args:
        relevance: (6, 4, H, W) float map in the image's geometry.
        path: file to write (``.nii.gz``).
        reference: the NIfTI image the map was computed from, if any.
        pixel_spacing: (row, column) spacing in mm.
        description: written into the header (80 characters at most).
    """
    import nibabel as nib

    zones, classes, height, width = relevance.shape
    data = np.ascontiguousarray(relevance.reshape(zones * classes, height, width).transpose(2, 1, 0))[:, :, None, :]
    if reference is not None:
        affine = nib.load(str(reference)).affine
    else:
        rows, cols = (pixel_spacing or (1.0, 1.0))[:2]
        rows, cols = (r if r and math.isfinite(r) else 1.0 for r in (rows, cols))
        # ITK's image frame is LPS with x along the columns, y along the rows; NIfTI's world is RAS
        affine = np.diag([-cols, -rows, 1.0, 1.0])
    image = nib.Nifti1Image(data.astype(np.float32), affine)
    image.set_data_dtype(np.int16)
    image.header["descrip"] = description[:79].encode()
    image.header.set_xyzt_units("mm")
    image.set_qform(affine, code=1)
    image.set_sform(affine, code=1)
    path = Path(path)
    # nibabel picks the compression from the name: write to a real .nii.gz name, then move it into place
    staging = path.with_name(f".{path.name}.partial.nii.gz")
    try:
        nib.save(image, str(staging))
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def write_explanation(
    output_dir: str | os.PathLike,
    name: str,
    explanation: Explanation,
    image: np.ndarray,
    zone_index: np.ndarray,
    model_version: str,
    meta: dict[str, Any] | None = None,
    nifti_reference: str | os.PathLike | None = None,
) -> dict[str, Path]:
    """Write ``<name>_explain.png`` and ``<name>_explain.nii.gz`` in the image's geometry; both or neither.

    Args:
        output_dir: output folder.
        name: the image's output name.
        explanation: from :func:`explain`.
        image: (H, W) grey radiograph in [0, 1], the original geometry.
        zone_index: (H, W) zone index map of the image.
        model_version: printed on the picture.
        meta: the image's metadata (``pixel_spacing``, ``spatial_shape``), from :class:`~monai_bsnet.transforms.LoadCXR`.
        nifti_reference: the input NIfTI file, whose affine the map then takes.

    Returns:
        ``{"explanation_png": path, "explanation_nifti": path}``.
    """
    output_dir = Path(output_dir)
    relevance, region = explanation.to_original(image.shape)
    picture = render_explanation(image, relevance, region, zone_index, explanation.probabilities, explanation.method, model_version,
                                 scores=explanation.scores)
    paths = {"explanation_png": output_dir / f"{name}_explain.png", "explanation_nifti": output_dir / f"{name}_explain.nii.gz"}
    written: list[Path] = []
    try:
        with atomic_path(paths["explanation_png"]) as tmp:
            picture.save(tmp, format="PNG", compress_level=1)
        written.append(paths["explanation_png"])
        spacing = (meta or {}).get("pixel_spacing")
        description = f"BS-Net {explanation.method}; volume = zone*4+score, zones A-F, scores 0-3"
        save_relevance_nifti(relevance, paths["explanation_nifti"], nifti_reference, spacing, description)
        written.append(paths["explanation_nifti"])
    except BaseException:
        for path in written:
            path.unlink(missing_ok=True)
        raise
    return paths
