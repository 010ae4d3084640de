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
from monai_bsnet.inference.zone_map import ZONE_BANDS, zone_index_map, zone_label_map
from monai_bsnet.transforms import to_original_geometry
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
    """

    record: dict[str, Any]
    probabilities: torch.Tensor
    theta: torch.Tensor
    lung: np.ndarray
    zone_index: np.ndarray
    labels: np.ndarray


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
    probabilities, lung_frame, theta = out["zone_probabilities"][0], out["lung"][0], out["theta"][0]

    item = CXRInput(Path(source), name or Path(source).name.split(".")[0])
    lung_fraction = float((lung_frame > predictor.lung_threshold).float().mean())
    # the predictor's own quality checks, so that the app flags exactly what `bsnet predict` flags
    flags = predictor._flags(item, meta, lung_fraction)
    record = predictor.make_record(item, meta, probabilities, flags)
    lung = (to_original_geometry(lung_frame, size)[0] > predictor.lung_threshold).numpy()
    zone_index = zone_index_map(theta, size)
    scores = [record["zones"][z]["score"] for z in ZONE_NAMES]
    labels = zone_label_map(zone_index, scores, torch.from_numpy(lung)).numpy()

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
    return ScoredImage(record, probabilities, theta, lung, zone_index.numpy(), labels)
