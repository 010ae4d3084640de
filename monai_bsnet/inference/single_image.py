"""Scoring one loaded image in memory, for interactive use (the MONAI Label app) instead of batch files.

:class:`~monai_bsnet.inference.predictor.BrixiaPredictor` scores files and writes every output; an
interactive server needs the same result for one image without writing anything, plus the zone
geometry (``theta``) that lets it read a repainted zone map back into scores. This module runs the
predictor's own network call and record builder, so the result record is the one ``bsnet predict``
writes.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch

from monai_bsnet.inference.inputs import CXRInput
from monai_bsnet.inference.predictor import BrixiaPredictor
from monai_bsnet.inference.zone_map import ZONE_BANDS
from monai_bsnet.zones import NUM_SCORES, ZONE_NAMES

__all__ = ["ScoredImage", "score_image", "zone_entropy", "mean_zone_entropy"]


class ScoredImage(NamedTuple):
    """BS-Net's result for one image, in the image's own geometry.

    Attributes:
        record: the result record (zones, global score, image metadata, quality flags, timing) as
            :meth:`BrixiaPredictor.make_record` builds it, plus ``zone_geometry`` (``theta`` and the
            zone bands, enough to recompute ``zone_index``) and ``uncertainty`` (zone entropies).
        probabilities: (6, 4) zone score probabilities, zones A..F.
        theta: (2, 3) affine from the aligned frame to the image (normalised coordinates).
        lung: (rows, columns) boolean lung mask.
        zone_index: (rows, columns) zone index 0..5 (A..F), -1 outside the aligned frame.
        labels: (rows, columns) uint8 zone map, score + 1 inside the lungs, 0 elsewhere.
        net_input: (1, h, w) the preprocessed image the network read (for an explanation map).
        network_lung: (1, h, w) lung probability in the network's frame.
    """

    record: dict[str, Any]
    probabilities: torch.Tensor
    theta: torch.Tensor
    lung: np.ndarray
    zone_index: np.ndarray
    labels: np.ndarray
    net_input: torch.Tensor
    network_lung: torch.Tensor


def zone_entropy(probabilities: torch.Tensor) -> torch.Tensor:
    """Entropy of each zone's score distribution, normalised to [0, 1] (1: all four scores equally likely).

    ``probabilities``: (..., 6, 4) -> (..., 6).
    """
    p = probabilities.double().clamp_min(1e-12)
    return (-(p * p.log()).sum(-1) / math.log(NUM_SCORES)).float()


def mean_zone_entropy(probabilities: torch.Tensor) -> float:
    """Mean over the six zones of :func:`zone_entropy`: how unsure the model is about this image."""
    return float(zone_entropy(probabilities).mean())


@torch.inference_mode()
def score_image(predictor: BrixiaPredictor, image: Any, source: str | Path, name: str | None = None) -> ScoredImage:
    """Score one chest X-ray already loaded by :class:`~monai_bsnet.transforms.LoadCXR`.

    Args:
        predictor: holds the network, its device and precision, the preprocessing and the lung threshold.
        image: (1, rows, columns) MetaTensor in [0, 1] with LoadCXR's metadata.
        source: the file it came from (written into the record).
        name: a name for the record (default: the file name without its ending).
    """
    start = time.perf_counter()
    meta = dict(image.meta)
    size = [int(s) for s in meta["spatial_shape"]]
    net_input = predictor.preprocess(image)
    net_input = net_input.as_tensor() if hasattr(net_input, "as_tensor") else torch.as_tensor(net_input)
    loaded = time.perf_counter()
    out = predictor.forward(net_input.float()[None])
    network_seconds = time.perf_counter() - loaded
    out = {key: value[0] for key, value in out.items()}
    probabilities, theta = out["zone_probabilities"], out["theta"]
    item = CXRInput(Path(source), name or Path(source).name.split(".")[0])
    # the predictor's own post-processing and quality checks: the record `bsnet predict` writes
    record, lung, zone_index, labels = predictor.postprocess(item, meta, out)

    entropies = zone_entropy(probabilities)
    record["uncertainty"] = {
        "mean_zone_entropy": round(float(entropies.mean()), 6),
        "zone_entropy": {z: round(float(e), 6) for z, e in zip(ZONE_NAMES, entropies)},
    }
    record["zone_geometry"] = {
        "theta": [[round(float(v), 8) for v in row] for row in theta.tolist()],
        "zone_bands": list(ZONE_BANDS),
        "size": size,
        "note": "zone_index_map(theta, size) of monai_bsnet.inference.zone_map gives each pixel's zone",
    }
    record["lung_fraction"] = round(float(lung.mean()), 6)
    record["timing_seconds"] = {
        "preprocess": round(loaded - start, 4),
        "network": round(network_seconds, 4),
        "postprocess": round(time.perf_counter() - loaded - network_seconds, 4),
    }
    return ScoredImage(record, probabilities, theta, lung, zone_index.numpy(), labels, net_input.float(), out["lung"])
