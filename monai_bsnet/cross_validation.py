"""Patient-grouped cross-validation of the scoring stage, trained through the bundle's own configs.

One fold trains exactly what the shipped model is trained with (``bundle/configs/train.json``, an
inner validation split of the training patients for best-checkpoint selection, optionally a second
end-to-end phase) and then scores the held-out patients. The held-out ("out-of-fold") zone
probabilities of all folds together give the cross-validated numbers of the model card, and they
are what the Cohen severity mapping is fitted on, since they are what the model says of images it
has not seen.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
from scipy.stats import bootstrap
from sklearn.model_selection import StratifiedGroupKFold

from monai_bsnet.metrics import as_zone_scores, brixia_metrics
from monai_bsnet.training import patient_groups, train_val_split
from monai_bsnet.transforms import NETWORK_SIZE, LoadCXR, cxr_preprocessing, mirror_average

__all__ = [
    "BUNDLE_CONFIGS",
    "ScoringRecipe",
    "RECIPES",
    "patient_groups",
    "patient_fold_indices",
    "patient_folds",
    "run_bundle_stage",
    "train_scoring",
    "predict_zone_probabilities",
    "cross_validate",
    "prediction_rows",
    "summarise_predictions",
    "compare_predictions",
]

logger = logging.getLogger(__name__)

BUNDLE_CONFIGS = Path(__file__).resolve().parents[1] / "bundle" / "configs"


@dataclass(frozen=True)
class ScoringRecipe:
    """How the scoring stage is trained; every field but ``tuned_encoder_stages`` maps onto an
    override of ``train.json``.

    Args:
        head_epochs: epochs of the first phase (encoder, segmentation and alignment frozen).
        end_to_end_epochs: epochs of the optional second phase that trains everything at a tenth of
            the learning rate, starting from the first phase's best checkpoint (0: no such phase).
        lateral_flip_prob: probability of the mirror-and-swap-zones augmentation.
        learning_rate: of the first phase.
        batch_size: images per step.
        junior_label_prob: share of the training draws scored by the junior rater instead of the
            reference (``train.json``'s ``RandRaterLabeld``); validation stays with the reference.
        tuned_encoder_stages: the encoder's last ResNet stages trained together with the head in the
            first phase, at a tenth of the learning rate and with fixed batch-norm statistics (1:
            ``layer4``; 0: the head alone). Only the training on cached frozen-stage outputs
            (:mod:`monai_bsnet.frozen_head`, ``--schedule cpu_cached``) implements it.
        shared_zone_classifier: one zone classifier trained for all six zones (``train.json``'s
            ``shared_zone_classifier``); the shipped weights keep the six-classifier layout.
    """

    head_epochs: int = 40
    end_to_end_epochs: int = 0
    lateral_flip_prob: float = 0.0
    learning_rate: float = 1e-3
    batch_size: int = 8
    extra: Mapping[str, Any] = field(default_factory=dict)
    tuned_encoder_stages: int = 0
    junior_label_prob: float = 0.0
    shared_zone_classifier: bool = False


#: The variants compared by cross-validation (the literature's suggestions that fit this data size).
RECIPES: dict[str, ScoringRecipe] = {
    "head": ScoringRecipe(),
    "head_flip": ScoringRecipe(lateral_flip_prob=0.5),
    "head_e2e": ScoringRecipe(end_to_end_epochs=20),
    "flip_e2e": ScoringRecipe(lateral_flip_prob=0.5, end_to_end_epochs=20),
    # partial end-to-end fine-tuning that a CPU affords: the deepest encoder stage learns with the head
    "flip_layer4": ScoringRecipe(lateral_flip_prob=0.5, tuned_encoder_stages=1),
    # half of the draws scored by the junior rater: both radiologists' readings as training targets
    "head_raters": ScoringRecipe(junior_label_prob=0.5),
    # one classifier for the six zones: six zone crops per image to learn from instead of one
    "head_shared": ScoringRecipe(shared_zone_classifier=True),
}


def patient_fold_indices(
    datalist: Sequence[Mapping[str, Any]], n_folds: int = 5, seed: int = 0, group_key: str = "patient_id"
) -> list[tuple[list[int], list[int]]]:
    """The folds of :func:`patient_folds` as sorted positions in ``datalist`` (for arrays in its order)."""
    items = list(datalist)
    strata = [min(int(sum(item["label"])) // 6, 2) for item in items]
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(sorted(train), sorted(test)) for train, test in splitter.split(items, strata, groups=patient_groups(items, group_key))]


def patient_folds(
    datalist: Sequence[Mapping[str, Any]], n_folds: int = 5, seed: int = 0, group_key: str = "patient_id"
) -> list[tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]]:
    """Split a datalist into ``n_folds`` (train, test) pairs with every patient on one side only.

    Folds are stratified on the global score (0-5, 6-11, 12-18) so that each holds mild and severe
    cases. Items with no patient id form a group of their own (:func:`patient_groups`).
    """
    items = list(datalist)
    return [([items[i] for i in train], [items[i] for i in test]) for train, test in patient_fold_indices(items, n_folds, seed, group_key)]


def run_bundle_stage(config_files: Sequence[str], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """Run one training stage of the bundle in this process; returns the best validation metrics.

    Args:
        config_files: file names in ``bundle/configs`` (for example ``["train.json"]``).
        overrides: config ids and their values (datalists may be Python lists).
    """
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config([str(BUNDLE_CONFIGS / name) for name in config_files])
    parser.update(dict(overrides))
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")
    evaluator = parser.get_parsed_content("validate#evaluator")
    return {"best_metric": float(evaluator.state.best_metric), "best_epoch": int(evaluator.state.best_metric_epoch)}


def train_scoring(
    recipe: ScoringRecipe,
    train_items: Sequence[Mapping[str, Any]],
    init_ckpt: str | os.PathLike,
    ckpt_dir: str | os.PathLike,
    seed: int = 0,
    val_fraction: float = 0.2,
    **overrides: Any,
) -> dict[str, Any]:
    """Train the scoring stage with ``recipe`` on ``train_items``; the result is ``ckpt_dir/model.pt``.

    Each phase is skipped when its checkpoint is already there, and an interrupted phase resumes
    from its last epoch checkpoint, so a killed run can simply be started again.

    Returns:
        per phase: best inner-validation zone MAE, its epoch, and the wall-clock seconds.
    """
    if recipe.tuned_encoder_stages:
        raise ValueError("tuned_encoder_stages is implemented by the cached training only: monai_bsnet.frozen_head (--schedule cpu_cached)")
    ckpt_dir = Path(ckpt_dir)
    train, val = train_val_split(train_items, val_fraction, seed)
    common = {
        "train_datalist": train,
        "val_datalist": val,
        "ckpt_dir": str(ckpt_dir),
        "output_dir": str(ckpt_dir / "logs"),
        "seed": seed,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "lateral_flip_prob": recipe.lateral_flip_prob,
        "junior_label_prob": recipe.junior_label_prob,
        "shared_zone_classifier": recipe.shared_zone_classifier,
        **recipe.extra,
        **overrides,
    }
    phases = [("scoring", recipe.head_epochs, False, str(init_ckpt))]
    if recipe.end_to_end_epochs:
        phases.append(("scoring_e2e", recipe.end_to_end_epochs, True, str(ckpt_dir / "scoring_head.pt")))
    log: dict[str, Any] = {"n_train": len(train), "n_val": len(val)}
    for i, (stage, epochs, end_to_end, init) in enumerate(phases):
        best = "model.pt" if i == len(phases) - 1 else "scoring_head.pt"
        if (ckpt_dir / best).is_file() and (ckpt_dir / f"{stage}.json").is_file():
            log[stage] = json.loads((ckpt_dir / f"{stage}.json").read_text())
            continue
        start = time.perf_counter()
        result = run_bundle_stage(
            ["train.json"],
            {**common, "stage": stage, "max_epochs": epochs, "end_to_end": end_to_end, "init_ckpt": init, "best_ckpt": best},
        )
        result["seconds"] = round(time.perf_counter() - start, 1)
        (ckpt_dir / f"{stage}.json").write_text(json.dumps(result))
        log[stage] = result
    return log


@torch.inference_mode()
def predict_zone_probabilities(
    network: nn.Module,
    images: Sequence[str | os.PathLike],
    device: str | torch.device = "cpu",
    batch_size: int = 8,
    spatial_size: int = NETWORK_SIZE,
    tta: bool = True,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Zone probabilities (N, 6, 4) of image files, preprocessed as in validation and inference:
    plain, and with test-time augmentation (the average with the mirror image's, zones swapped back).

    Args:
        network: a BSNet with its weights.
        images: image files.
        device: where the network runs.
        batch_size: images per network call.
        spatial_size: the network's input side (512 for the shipped model).
        tta: also compute the test-time augmented probabilities (else None comes back for them;
            this halves the cost).
    """
    load, preprocess = LoadCXR(), cxr_preprocessing(spatial_size)
    network = network.to(device).eval()
    plain, augmented = [], []
    for start in range(0, len(images), batch_size):
        batch = torch.stack([preprocess(load(p)).as_tensor() for p in images[start : start + batch_size]]).to(device)
        probs = torch.softmax(network.outputs(batch).zone_logits.float(), -1)
        plain.append(probs.cpu().numpy())
        if tta:
            mirrored = torch.softmax(network.outputs(batch.flip(-1)).zone_logits.float(), -1)
            augmented.append(mirror_average(probs, mirrored).cpu().numpy())
    stack = lambda arrays: np.concatenate(arrays) if arrays else np.zeros((0, 6, 4), np.float32)  # noqa: E731
    return stack(plain), (stack(augmented) if tta else None)


def cross_validate(
    recipe: ScoringRecipe,
    datalist: Sequence[Mapping[str, Any]],
    init_ckpt: str | os.PathLike,
    work_dir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    device: str | torch.device = "cpu",
    **overrides: Any,
) -> dict[str, Any]:
    """Patient-grouped ``n_folds``-fold cross-validation of ``recipe``; writes ``work_dir/predictions.json``.

    Returns the summary (:func:`summarise_predictions`) with each fold's training log.
    """
    from monai_bsnet.networks import BSNet, load_weights

    work_dir = Path(work_dir)
    predictions: list[dict[str, Any]] = []
    folds_log = []
    for k, (train, test) in enumerate(patient_folds(datalist, n_folds, seed)):
        fold_dir = work_dir / f"fold{k}"
        start = time.perf_counter()
        log = train_scoring(recipe, train, init_ckpt, fold_dir, seed=seed, **overrides)
        network = load_weights(BSNet(), fold_dir / "model.pt")
        paths = [item["image"] for item in test]
        size = overrides.get("image_size", NETWORK_SIZE)
        predictions += prediction_rows(test, k, *predict_zone_probabilities(network, paths, device, spatial_size=size))
        log.update(fold=k, n_test=len(test), seconds=round(time.perf_counter() - start, 1))
        folds_log.append(log)
        logger.info("fold %d: %s", k, log)
    (work_dir / "predictions.json").write_text(json.dumps(predictions))
    summary = summarise_predictions(predictions)
    summary.update(recipe=asdict(recipe), n_folds=n_folds, seed=seed, folds=folds_log)
    return summary


def prediction_rows(
    items: Sequence[Mapping[str, Any]], fold: int | Sequence[int], probabilities: np.ndarray, probabilities_tta: np.ndarray
) -> list[dict[str, Any]]:
    """The JSON rows of predictions that :func:`summarise_predictions` reads: one per image, with both
    raters' scores and the zone probabilities without and with test-time augmentation."""
    folds = [fold] * len(items) if isinstance(fold, int) else list(fold)
    return [
        {
            "filename": item.get("filename", Path(item["image"]).name),
            "patient_id": item.get("patient_id", ""),
            "fold": int(folds[i]),
            "label_senior": list(map(int, item["label_senior"])),
            "label_junior": list(map(int, item["label_junior"])),
            "probabilities": np.round(probabilities[i], 5).tolist(),
            "probabilities_tta": np.round(probabilities_tta[i], 5).tolist(),
        }
        for i, item in enumerate(items)
    ]


def summarise_predictions(predictions: Sequence[Mapping[str, Any]], reference: str = "label_senior") -> dict[str, Any]:
    """Metrics of out-of-fold predictions (plain and with TTA) against a rater, per fold and pooled.

    The junior rater's agreement with the senior on the same images comes along as the human level.
    """
    target = np.array([p[reference] for p in predictions])
    folds = np.array([p["fold"] for p in predictions])
    out: dict[str, Any] = {"n_images": len(predictions), "reference": reference, "zone_scores": "median of each zone's probabilities"}
    for key in ("probabilities", "probabilities_tta"):
        probabilities = np.array([p[key] for p in predictions])  # the metrics rate each zone's median
        pooled = brixia_metrics(probabilities, target)
        per_fold = [brixia_metrics(probabilities[folds == k], target[folds == k]) for k in np.unique(folds)]
        pooled["fold_zone_mae"] = [round(m["zone_mae"], 4) for m in per_fold]
        pooled["fold_global_mae"] = [round(m["global_mae"], 4) for m in per_fold]
        out["tta" if key.endswith("tta") else "plain"] = pooled
    out["junior_vs_senior"] = brixia_metrics(np.array([p["label_junior"] for p in predictions]), np.array([p["label_senior"] for p in predictions]))
    return out


def compare_predictions(
    baseline: Sequence[Mapping[str, Any]],
    candidate: Sequence[Mapping[str, Any]],
    key: str = "probabilities",
    reference: str = "label_senior",
    n_resamples: int = 10000,
    seed: int = 0,
    candidate_key: str | None = None,
) -> dict[str, Any]:
    """How much lower ``candidate``'s errors are than ``baseline``'s on the same out-of-fold images.

    Both are :func:`prediction_rows` of cross-validations on the same images (``predictions.json``).
    The differences (candidate minus baseline; negative: the candidate is better) of zone MAE and
    global MAE come with a 95% interval from a paired bootstrap over **patients** (BCa, ``scipy.stats.
    bootstrap``): the images of one patient are resampled together, as they are not independent. The
    interval measures how much the comparison could change with other images of the same kind; it
    does not include the training noise of either run (repeat a run with another training seed for
    that, :func:`~monai_bsnet.frozen_head.cross_validate_head`).

    Args:
        baseline, candidate: out-of-fold prediction rows; matched by ``filename``.
        key: ``"probabilities"`` or ``"probabilities_tta"`` (zone probabilities, rated by their medians), or
            a key of zone scores (N, 6) such as ``"scores_context_tta"``.
        reference: the rater whose scores are the truth.
        n_resamples, seed: of the bootstrap.
        candidate_key: the candidate's key, where it is not ``key``: two ratings of the same rows.

    Returns:
        for ``zone_mae`` and ``global_mae``: baseline, candidate, difference, ``ci95`` and the number
        of folds in which the candidate is lower; with ``n_images`` and ``n_patients``.
    """
    by_name = {row["filename"]: row for row in candidate}
    missing = sorted({row["filename"] for row in baseline} ^ set(by_name))
    if missing or len(by_name) != len(candidate):
        raise ValueError(f"the two cross-validations must score the same images once each; not in both: {missing[:5]}")
    rows = list(baseline)
    target = np.array([row[reference] for row in rows])
    candidate_rows = [by_name[row["filename"]] for row in rows]
    scores = [as_zone_scores(np.array([r[k] for r in runs])) for runs, k in ((rows, key), (candidate_rows, candidate_key or key))]
    zone_error = [np.abs(s - target).sum(1) for s in scores]  # per image, summed over the six zones
    global_error = [np.abs(s.sum(1) - target.sum(1)) for s in scores]
    patients = np.array([str(row.get("patient_id") or row["filename"]) for row in rows])
    folds = np.array([row["fold"] for row in rows])
    names, patient_of = np.unique(patients, return_inverse=True)

    def per_patient(values: np.ndarray) -> np.ndarray:
        return np.bincount(patient_of, weights=values, minlength=len(names))

    images = per_patient(np.ones(len(rows)))
    out: dict[str, Any] = {"key": key, "reference": reference, "n_images": len(rows), "n_patients": len(names)}
    if candidate_key:
        out["candidate_key"] = candidate_key
    for metric, errors, per_image in (("zone_mae", zone_error, 6), ("global_mae", global_error, 1)):
        difference, weight = per_patient(errors[1] - errors[0]), per_image * images
        mean = [float(e.sum() / (per_image * len(rows))) for e in errors]
        low = high = mean[1] - mean[0]  # every patient changing alike (identical runs) leaves nothing to resample
        if np.ptp(difference / weight) > 0:
            low, high = bootstrap((difference, weight), lambda d, w, axis=-1: d.sum(axis) / w.sum(axis), paired=True,
                                  vectorized=True, n_resamples=n_resamples, rng=np.random.default_rng(seed)).confidence_interval
        fold_mean = [[e[folds == k].mean() for k in np.unique(folds)] for e in errors]
        out[metric] = {"baseline": round(mean[0], 4), "candidate": round(mean[1], 4), "difference": round(mean[1] - mean[0], 4),
                       "ci95": [round(float(low), 4), round(float(high), 4)],
                       "folds_lower": int(sum(c < b for b, c in zip(*fold_mean))), "n_folds": len(fold_mean[0])}
    return out
