"""What the rating benchmarks share: how often two runs give the same scores, and where results are written."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from monai_bsnet.zones import median_scores

RESULTS = Path(__file__).resolve().parent / "results"


def score_agreement(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """The fractions of zone scores and of global scores (sums of the zone medians) that two runs' zone
    probabilities (N, 6, 4) of the same images give alike."""
    zones, zones_other = median_scores(reference), median_scores(other)
    return {"zone_score_agreement": float((zones == zones_other).mean()),
            "global_score_agreement": float((zones.sum(1) == zones_other.sum(1)).mean())}


def write_result(result: dict, output: Path | None, default_name: str) -> Path:
    """``result`` as JSON at ``output``, or at ``benchmarks/results/<default_name>``."""
    path = output or RESULTS / default_name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path
