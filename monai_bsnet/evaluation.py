"""Evaluation reports: every Brixia metric as JSON, confusion matrices as pictures, per-image scores.

:class:`BrixiaEvaluationSaver` is an Ignite handler for the bundle's ``evaluate.json``; it is also
usable on plain arrays through :func:`write_evaluation`.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from monai_bsnet.metrics import as_zone_scores, brixia_metrics, global_confusion_matrix, zone_confusion_matrix
from monai_bsnet.plots import plot_bland_altman, plot_confusion_matrix, plot_zone_mae
from monai_bsnet.zones import ZONE_NAMES

__all__ = ["BrixiaEvaluationSaver", "write_evaluation", "consensus_metrics"]


def consensus_metrics(pred: np.ndarray, consensus_mean: np.ndarray, consensus_mode: np.ndarray) -> dict[str, Any]:
    """Agreement with a panel of raters (the BrixIA consensus set): all metrics against the mode of
    the raters' scores, and the mean absolute difference from the raters' mean score."""
    p = as_zone_scores(pred)
    mean = np.asarray(consensus_mean, dtype=float)
    return {
        "vs_mode": brixia_metrics(p, as_zone_scores(consensus_mode)),
        "vs_mean": {
            "zone_mae": float(np.abs(p - mean).mean()),
            "global_mae": float(np.abs(p.sum(1) - mean.sum(1)).mean()),
        },
    }


def write_evaluation(
    pred: Any,
    target: Any,
    output_dir: str | os.PathLike,
    names: Sequence[str] | None = None,
    consensus_mean: Any = None,
    consensus_mode: Any = None,
    title: str = "",
    model: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Write ``metrics.json``, ``scores.csv`` and the plots ``confusion_zone.png``,
    ``confusion_global.png``, ``bland_altman_global.png`` and ``zone_mae.png``; with consensus
    scores, the same plots against the panel's mode in ``consensus_mode/``.

    Args:
        pred: predicted zone scores (N, 6) or class scores (N, 6, 4).
        target: reference zone scores (N, 6).
        output_dir: where to write.
        names: an identifier per image for ``scores.csv`` (file names).
        consensus_mean, consensus_mode: (N, 6) panel scores, where the data has them.
        title: prefix of the plot titles (the reference rater, for example).
        model: how the predictions were made (test-time augmentation, zone rating), as the result
            records' ``model`` says; written into ``metrics.json``.
    """
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    p, t = as_zone_scores(pred), as_zone_scores(target)
    report: dict[str, Any] = {"n_images": int(len(p)), **({"model": dict(model)} if model else {}), **brixia_metrics(p, t)}
    if consensus_mean is not None and consensus_mode is not None:
        report["consensus"] = consensus_metrics(p, consensus_mean, consensus_mode)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    _write_plots(p, t, out, title, report["per_zone_mae"])
    if "consensus" in report:
        # the same pictures against the panel's most frequent score per zone, in a folder of their own
        mode = as_zone_scores(consensus_mode)
        _write_plots(p, mode, out / "consensus_mode", "vs consensus (mode)", report["consensus"]["vs_mode"]["per_zone_mae"])
    with open(out / "scores.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["image", *[f"pred_{z}" for z in ZONE_NAMES], *[f"true_{z}" for z in ZONE_NAMES], "pred_global", "true_global"])
        for i in range(len(p)):
            name = names[i] if names is not None else str(i)
            writer.writerow([name, *p[i].tolist(), *t[i].tolist(), int(p[i].sum()), int(t[i].sum())])
    return report


def _write_plots(p: np.ndarray, t: np.ndarray, out: Path, title: str, zone_mae: Mapping[str, float]) -> None:
    """Confusion matrices (zone 4x4, global 19x19), Bland-Altman of the global score, per-zone MAE bars."""
    out.mkdir(parents=True, exist_ok=True)
    plot_confusion_matrix(zone_confusion_matrix(p, t), out / "confusion_zone.png", f"{title} zone scores (n={p.size})".strip())
    plot_confusion_matrix(global_confusion_matrix(p, t), out / "confusion_global.png", f"{title} global score (n={len(p)})".strip())
    plot_bland_altman(p.sum(1), t.sum(1), out / "bland_altman_global.png", f"{title} global score".strip())
    plot_zone_mae(zone_mae, out / "zone_mae.png", title or "BS-Net")


class BrixiaEvaluationSaver:
    """Ignite handler: gathers predictions and labels of an evaluator's epoch and writes the report.

    Items whose batch holds ``consensus_mean``/``consensus_mode`` (the BrixIA consensus set) also get
    the panel agreement. Under DDP every process carries the handler (with a sampler that does not
    pad, ``even_divisible=False``): the items are gathered from all processes and rank 0 writes.

    Args:
        output_dir: where :func:`write_evaluation` writes.
        title: prefix of the plot titles.
        model: how the evaluator's predictions were made, for ``metrics.json`` (:func:`write_evaluation`).
    """

    def __init__(self, output_dir: str | os.PathLike, title: str = "", model: Mapping[str, Any] | None = None) -> None:
        self.output_dir, self.title, self.model = output_dir, title, model
        self.items: list[Mapping[str, Any]] = []
        self.report: dict[str, Any] = {}

    def attach(self, engine) -> None:
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_STARTED, self._reset)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._collect)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._write)

    def _reset(self, engine) -> None:
        self.items = []

    def _collect(self, engine) -> None:
        # MONAI engines decollate: state.output holds image/label/pred per item, state.batch the rest
        outputs, batch = engine.state.output, engine.state.batch
        outputs = outputs if isinstance(outputs, list) else [outputs]
        batch = batch if isinstance(batch, list) else [{}] * len(outputs)
        for output, item in zip(outputs, batch):
            self.items.append({**{k: v for k, v in item.items() if k not in output}, **output})

    def _write(self, engine) -> None:
        keys = ("pred", "label", "consensus_mean", "consensus_mode")
        rows = [
            {"name": _name(item), **{k: torch.as_tensor(item[k]).detach().cpu().numpy() for k in keys if k in item}}
            for item in self.items
        ]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, rows)
            if torch.distributed.get_rank() > 0:
                return
            rows = [row for part in gathered for row in part]

        def stack(key: str) -> np.ndarray:
            return np.stack([row[key] for row in rows])

        kwargs: dict[str, Any] = {}
        if rows and all("consensus_mean" in row and "consensus_mode" in row for row in rows):
            kwargs = {"consensus_mean": stack("consensus_mean"), "consensus_mode": stack("consensus_mode")}
        names = [row["name"] for row in rows]
        self.report = write_evaluation(stack("pred"), stack("label"), self.output_dir, names, title=self.title, model=self.model, **kwargs)


def _name(item: Mapping[str, Any]) -> str:
    """The image's file name: the configs copy the path to ``image_path`` before loading it."""
    return os.path.basename(str(item.get("image_path", "")))
