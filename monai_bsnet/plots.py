"""Evaluation plots (matplotlib, no display needed)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["plot_confusion_matrix"]


def plot_confusion_matrix(
    matrix: np.ndarray, path: str | os.PathLike, title: str, labels: Sequence[str] | None = None, axis_name: str = "score"
) -> Path:
    """Save a confusion matrix (rows = truth, columns = prediction) as a PNG, counts in the cells and
    each row shaded by its share, in the style of the BrixIA figures."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

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
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
