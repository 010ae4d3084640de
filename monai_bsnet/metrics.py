"""Brixia score metrics, as plain functions and as MONAI/Ignite metrics for bundle configs.

Every function takes predictions and targets for N images as either integer zone scores (N, 6) or
per-zone score probabilities (N, 6, 4) (each zone's median is the predicted score, see
:func:`~monai_bsnet.zones.median_scores`), in the zone order A..F. Zone-level metrics pool the 6 N
zone ratings; global metrics use the per-image sums (0..18). Agreement statistics come from
scikit-learn so that they mean what the literature means by them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from monai.handlers import IgniteMetricHandler
from monai.metrics import CumulativeIterationMetric, compute_dice
from sklearn.metrics import cohen_kappa_score, confusion_matrix

from monai_bsnet.zones import MAX_GLOBAL_SCORE, NUM_SCORES, NUM_ZONES, ZONE_NAMES, median_scores

__all__ = [
    "as_zone_scores",
    "zone_mae",
    "per_zone_mae",
    "global_mae",
    "zone_accuracy",
    "weighted_kappa",
    "zone_confusion_matrix",
    "global_confusion_matrix",
    "lung_dice",
    "brixia_metrics",
    "METRICS",
    "BrixiaScoreMetric",
    "BrixiaScoreHandler",
]

ArrayLike = Any  # numpy array, torch tensor or nested sequence


def as_zone_scores(values: ArrayLike) -> np.ndarray:
    """Integer zone scores (N, 6) from scores (N, 6) or score probabilities (N, 6, 4)."""
    array = values.detach().cpu().numpy() if isinstance(values, torch.Tensor) else np.asarray(values)
    if array.ndim == 3 and array.shape[1:] == (NUM_ZONES, NUM_SCORES):
        if array.size and (array.min() < 0 or not np.allclose(array.sum(-1), 1.0, atol=1e-3)):
            raise ValueError("per-zone class scores (N, 6, 4) must be probabilities that sum to 1: apply a softmax to logits")
        array = median_scores(array)
    if array.ndim != 2 or array.shape[1] != NUM_ZONES:
        raise ValueError(f"expected zone scores (N, 6) or class scores (N, 6, 4), got shape {array.shape}")
    scores = np.rint(array).astype(np.int64)
    if scores.min(initial=0) < 0 or scores.max(initial=0) >= NUM_SCORES:
        raise ValueError("zone scores must lie in 0..3")
    return scores


def _pair(pred: ArrayLike, target: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    p, t = as_zone_scores(pred), as_zone_scores(target)
    if p.shape != t.shape:
        raise ValueError(f"predictions {p.shape} and targets {t.shape} differ in shape")
    return p, t


def zone_mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error over all zones of all images."""
    p, t = _pair(pred, target)
    return float(np.abs(p - t).mean())


def global_mae(pred: ArrayLike, target: ArrayLike) -> float:
    """Mean absolute error of the global score (sum of the six zones, 0..18)."""
    p, t = _pair(pred, target)
    return float(np.abs(p.sum(1) - t.sum(1)).mean())


def per_zone_mae(pred: ArrayLike, target: ArrayLike) -> dict[str, float]:
    """Mean absolute error of each zone, A..F."""
    p, t = _pair(pred, target)
    return {zone: float(v) for zone, v in zip(ZONE_NAMES, np.abs(p - t).mean(axis=0))}


def zone_accuracy(pred: ArrayLike, target: ArrayLike) -> float:
    """Fraction of zones whose score is exactly right."""
    p, t = _pair(pred, target)
    return float((p == t).mean())


def weighted_kappa(pred: ArrayLike, target: ArrayLike, weights: str = "linear") -> float:
    """Cohen's kappa over all zone ratings, with ``"linear"`` or ``"quadratic"`` weights (or None)."""
    p, t = _pair(pred, target)
    return float(cohen_kappa_score(t.ravel(), p.ravel(), labels=list(range(NUM_SCORES)), weights=weights))


def zone_confusion_matrix(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """4 x 4 counts of zone ratings; row = true score, column = predicted score."""
    p, t = _pair(pred, target)
    return confusion_matrix(t.ravel(), p.ravel(), labels=list(range(NUM_SCORES)))


def global_confusion_matrix(pred: ArrayLike, target: ArrayLike) -> np.ndarray:
    """19 x 19 counts of global scores; row = true score, column = predicted score."""
    p, t = _pair(pred, target)
    return confusion_matrix(t.sum(1), p.sum(1), labels=list(range(MAX_GLOBAL_SCORE + 1)))


def lung_dice(pred: torch.Tensor, target: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """Per-image Dice of lung masks (N, 1, H, W); ``pred`` holds probabilities, binarised at ``threshold``.

    MONAI's :func:`~monai.metrics.compute_dice`; in bundle configs use ``monai.handlers.MeanDice``.
    """
    return compute_dice((pred >= threshold).float(), (target >= 0.5).float(), include_background=True)[:, 0]


#: Scalar metrics by name, as used in evaluation reports and by :class:`BrixiaScoreMetric`.
METRICS: dict[str, Callable[[ArrayLike, ArrayLike], Any]] = {
    "zone_mae": zone_mae,
    "global_mae": global_mae,
    "zone_accuracy": zone_accuracy,
    "kappa_linear": lambda p, t: weighted_kappa(p, t, "linear"),
    "kappa_quadratic": lambda p, t: weighted_kappa(p, t, "quadratic"),
    "zone_confusion_matrix": zone_confusion_matrix,
    "global_confusion_matrix": global_confusion_matrix,
}


def brixia_metrics(pred: ArrayLike, target: ArrayLike) -> dict[str, Any]:
    """All metrics of :data:`METRICS`, confusion matrices as nested lists (ready for JSON)."""
    out: dict[str, Any] = {"per_zone_mae": per_zone_mae(pred, target)}
    for name, fn in METRICS.items():
        value = fn(pred, target)
        out[name] = value.tolist() if isinstance(value, np.ndarray) else value
    return out


class BrixiaScoreMetric(CumulativeIterationMetric):
    """Accumulates zone scores batch by batch and computes one metric of :data:`METRICS` at the end.

    Metrics such as kappa are not means of per-batch values, so the scores themselves are buffered
    (and gathered across processes under DDP by MONAI's ``Cumulative``).

    Args:
        metric: a name from :data:`METRICS`.

    Predictions are zone scores (B, 6) or probabilities (B, 6, 4): in an engine, turn the network's
    logits into probabilities in its post-processing (``Activationsd(keys="pred", softmax=True, dim=-1)``).
    """

    def __init__(self, metric: str = "zone_mae") -> None:
        super().__init__()
        if metric not in METRICS:
            raise ValueError(f"unknown Brixia metric {metric!r}, expected one of {sorted(METRICS)}")
        self.metric = metric

    def _compute_tensor(self, y_pred: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:  # type: ignore[override]
        if y is None:
            raise ValueError("BrixiaScoreMetric needs targets")
        pred, target = _pair(y_pred, y)
        return torch.from_numpy(np.stack([pred, target], axis=1))  # (B, 2, 6)

    def aggregate(self) -> torch.Tensor:  # type: ignore[override]
        buffer = self.get_buffer()
        if not isinstance(buffer, torch.Tensor) or buffer.numel() == 0:
            raise ValueError("BrixiaScoreMetric has no data to aggregate")
        value = METRICS[self.metric](buffer[:, 0], buffer[:, 1])
        return torch.as_tensor(value, dtype=torch.float64)


class BrixiaScoreHandler(IgniteMetricHandler):
    """Ignite handler for :class:`BrixiaScoreMetric`, to list under ``key_metric``/``additional_metrics``.

    Args:
        metric: a name from :data:`METRICS`.
        output_transform: maps the engine output to ``(y_pred, y)``, for example
            ``monai.handlers.from_engine(["pred", "label"])``.
    """

    def __init__(self, metric: str = "zone_mae", output_transform: Callable = lambda x: x) -> None:
        super().__init__(metric_fn=BrixiaScoreMetric(metric), output_transform=output_transform, save_details=False)
