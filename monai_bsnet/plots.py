"""Evaluation plots (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_confusion_matrix", "plot_bland_altman", "plot_zone_mae"]


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    _pyplot().close(fig)
    return path


def plot_bland_altman(pred_global: np.ndarray, true_global: np.ndarray, path: str | os.PathLike, title: str) -> Path:
    """Bland-Altman plot of global scores: difference (predicted - reference) against their mean, with
    the mean difference (bias) and the 95% limits of agreement (bias +- 1.96 SD)."""
    plt = _pyplot()
    p, t = np.asarray(pred_global, dtype=float), np.asarray(true_global, dtype=float)
    mean, diff = (p + t) / 2, p - t
    bias, spread = float(diff.mean()), float(diff.std(ddof=1)) if len(diff) > 1 else 0.0
    fig, ax = plt.subplots(figsize=(6, 4.5))
    # global scores are integers: jitter a little so that coinciding points stay visible
    jitter = np.random.default_rng(0).uniform(-0.12, 0.12, size=(2, len(p)))
    ax.scatter(mean + jitter[0], diff + jitter[1], s=18, alpha=0.6, color="tab:blue")
    ax.axhline(bias, color="tab:red", label=f"bias {bias:+.2f}")
    for limit in (bias - 1.96 * spread, bias + 1.96 * spread):
        ax.axhline(limit, color="tab:red", linestyle="--")
    ax.axhline(0, color="grey", linewidth=0.8)
    ax.set_xlim(-0.5, 18.5)
    ax.set_xlabel("mean of predicted and reference global score")
    ax.set_ylabel("predicted - reference")
    ax.set_title(f"{title} (limits {bias - 1.96 * spread:+.1f} / {bias + 1.96 * spread:+.1f})")
    ax.legend(loc="upper right", fontsize=8)
    return _save(fig, path)


def plot_zone_mae(per_zone: dict[str, float], path: str | os.PathLike, title: str) -> Path:
    """Bar chart of the mean absolute error of each zone, labelled with the patient's lung and level."""
    from monai_bsnet.zones import ZONE_LEVEL, ZONE_LUNG

    plt = _pyplot()
    zones = list(per_zone)
    fig, ax = plt.subplots(figsize=(6, 4))
    colours = ["tab:blue" if ZONE_LUNG[z] == "right" else "tab:orange" for z in zones]
    bars = ax.bar([f"{z}\n{ZONE_LUNG[z][0].upper()} {ZONE_LEVEL[z]}" for z in zones], [per_zone[z] for z in zones], color=colours)
    ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_ylabel("mean absolute error (score points)")
    ax.set_title(f"{title}: per zone (R = patient's right lung)")
    return _save(fig, path)


def plot_confusion_matrix(
    matrix: np.ndarray, path: str | os.PathLike, title: str, labels: Sequence[str] | None = None, axis_name: str = "score"
) -> Path:
    """Save a confusion matrix (rows = truth, columns = prediction) as a PNG, counts in the cells and
    each row shaded by its share, in the style of the BrixIA figures."""
    plt = _pyplot()
    matrix = np.asarray(matrix)
    n = matrix.shape[0]
    labels = [str(i) for i in range(n)] if labels is None else list(labels)
    rows = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, rows, out=np.zeros(matrix.shape, dtype=float), where=rows > 0)
    size = 4 if n <= 6 else 8
    fig, ax = plt.subplots(figsize=(size + 1, size))
    image = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of the row")
    for i in range(n):
        for j in range(n):
            if matrix[i, j]:
                ax.text(j, i, str(int(matrix[i, j])), ha="center", va="center", fontsize=9 if n <= 6 else 6,
                        color="white" if share[i, j] > 0.5 else "black")
    ax.set_xticks(range(n), labels, fontsize=9 if n <= 6 else 7)
    ax.set_yticks(range(n), labels, fontsize=9 if n <= 6 else 7)
    ax.set_xlabel(f"predicted {axis_name}")
    ax.set_ylabel(f"true {axis_name}")
    ax.set_title(title)
    return _save(fig, path)
