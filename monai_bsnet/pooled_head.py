"""The pooled linear zone classifier, fitted as a logistic regression on the frozen stages' outputs.

In the ``pooled_linear`` head (:class:`~monai_bsnet.networks.scoring.ZoneScoringHead`) each zone crop of
each scale is pooled into its mean and maximum per channel (1920 numbers) and one linear map, shared by
the six zones, gives the four score logits. That is a multinomial logistic regression, so it is fitted
as one (scikit-learn, L-BFGS, L2 penalty) rather than trained by gradient descent: the fit is convex,
takes seconds on a CPU once the frozen stages' outputs are cached (:class:`~monai_bsnet.frozen_head.
FrozenStageCache`), and its one setting, the L2 strength, is chosen by a patient-grouped inner
cross-validation instead of by an epoch on 20-30 validation images.

Every cached copy of a training image is a sample of each of its six zones (mirrored copies with the
zone scores of the two sides swapped), so the regression learns from 6 x 6 zone crops per image where
a per-zone classifier learns from 6. Why this form: ``bundle/docs/experiments.md`` ("one classifier
for the six zones"): on the 138 public images it cross-validated better than every trained BS-Net head.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from monai_bsnet.cross_validation import patient_fold_indices, patient_groups, prediction_rows, summarise_predictions
from monai_bsnet.frozen_head import FrozenStageCache
from monai_bsnet.metrics import METRICS
from monai_bsnet.networks.bsnet import BSNet
from monai_bsnet.networks.scoring import LinearZoneClassifier, ZonePooling, ZoneScoringHead
from monai_bsnet.networks.weights import stage_fingerprint
from monai_bsnet.severity import CohenSeverityMapping
from monai_bsnet.transforms import mirror_average, swap_zone_sides
from monai_bsnet.zone_context import SERVED_CONTEXT_C, ZoneContextRating
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES

__all__ = [
    "C_GRID",
    "PooledFeatureCache",
    "pooled_zone_vectors",
    "pooled_zone_features",
    "zone_samples",
    "fit_zone_regression",
    "regression_to_classifier",
    "choose_regularisation",
    "regularisation_search",
    "inner_splits",
    "inner_out_of_fold_probabilities",
    "regression_probabilities",
    "REFIT_C_GRID",
    "DEFAULT_REFIT_C",
    "refit_towards",
    "classifier_probabilities",
    "choose_refit_strength",
    "scores_and_groups",
    "cross_validate_features",
    "cross_validate_pooled_head",
    "fit_pooled_regression",
    "fit_final_pooled_head",
    "frozen_stages_fingerprint",
    "fit_samples_path",
    "save_fit_samples",
    "load_fit_samples",
    "refit_final_pooled_head",
]

#: Inverse L2 strengths searched (scikit-learn's ``C``); every fold of the 138 public images chose within it.
C_GRID: tuple[float, ...] = (0.001, 0.003, 0.01)

#: Strengths of a refit's data term against its pull towards the prior classifier (``c`` of
#: :func:`refit_towards`); 0 keeps the prior as it is. The shipped fit's ``C`` (0.001) is in the middle.
REFIT_C_GRID: tuple[float, ...] = (0.0, 0.0003, 0.001, 0.003, 0.01)
#: The refit's strength where there is nothing to choose it by (the images of one patient).
DEFAULT_REFIT_C = 0.001

#: Logit of a score class no training zone had: the regression cannot give it any probability.
ABSENT_CLASS_LOGIT = -30.0

logger = logging.getLogger(__name__)


class PooledFeatureCache(FrozenStageCache):
    """A :class:`~monai_bsnet.frozen_head.FrozenStageCache` (same copies, seeds, stamps and atomic,
    resumable files) that keeps only the pooled zone vectors of each copy, (V, 6, 1920) float32: about
    0.3 MB an image instead of 50 MB, so that the MONAI Label app can keep one for a whole datastore.
    It serves the pooled head's fits only (:func:`pooled_zone_features`), not the trained heads."""

    def record(self, images: torch.Tensor) -> dict[str, Any]:
        return {"pooled": pooled_zone_vectors(self.bsnet, images)}


def _pool(head: ZoneScoringHead, features: list[torch.Tensor], theta: torch.Tensor, aligned_lung: torch.Tensor) -> torch.Tensor:
    """(V, 6, 1920) pooled zone vectors of V copies, by the ``pooled_linear`` head's own layers."""
    vectors = ZonePooling()(head.zone_crops(features, theta, aligned_lung))
    return vectors.view(theta.shape[0], NUM_ZONES, -1).cpu()


def pooled_zone_vectors(bsnet: BSNet, images: torch.Tensor) -> torch.Tensor:
    """(B, 6, 1920) pooled zone vectors of a batch of network inputs (B, 1, H, W), computed by ``bsnet``'s
    frozen stages and its scoring head's zone crops; returned on the CPU."""
    features, _, theta, aligned_lung = bsnet.scoring_inputs(images)
    return _pool(bsnet.scoring, features[1:], theta, aligned_lung)


@torch.inference_mode()
def pooled_zone_features(cache: FrozenStageCache, items: Sequence[Mapping[str, Any]]) -> np.ndarray:
    """The pooled zone vectors of every cached copy: (N images, V copies, 6 zones, 1920), float32.

    Computed by the ``pooled_linear`` head's own layers (the crops of
    :meth:`~monai_bsnet.networks.scoring.ZoneScoringHead.zone_crops` with ``cache.bsnet``'s settings,
    then :class:`~monai_bsnet.networks.scoring.ZonePooling`), one cached file at a time, or read as they
    are where the file holds them (written by a :class:`PooledFeatureCache`, whichever class opened the
    folder). Every item must be cached already (``cache.build``).
    """
    cache.require(items)

    def pooled(record: dict[str, Any]) -> np.ndarray:
        if "pooled" in record:
            return record["pooled"].numpy()
        return _pool(cache.bsnet.scoring, *FrozenStageCache.outputs(record)).numpy()

    return np.stack([pooled(cache.stored(item)) for item in items])


def zone_samples(
    features: np.ndarray, scores: np.ndarray, images: Sequence[int], copies: Sequence[int], zones: Sequence[int] = range(NUM_ZONES)
) -> tuple[np.ndarray, np.ndarray]:
    """Regression samples: one row per (image, copy, zone of ``zones``), with that zone's score.

    Odd copies of the cache are mirrored images, whose zones hold the other side's score.
    """
    zones = list(zones)
    x, y = [], []
    for n in images:
        for v in copies:
            x.append(features[n, v, zones])
            y.append((swap_zone_sides(scores[n]) if v % 2 else scores[n])[zones])
    return np.concatenate(x), np.concatenate(y)


def fit_zone_regression(x: np.ndarray, y: np.ndarray, c: float, sample_weight: np.ndarray | None = None) -> Pipeline:
    """Standardisation, then a multinomial logistic regression with inverse L2 strength ``c`` (its loss
    weighted per sample by ``sample_weight``, if given; the standardisation is not)."""
    if len(np.unique(y)) < 2:
        raise ValueError(f"every training zone has score {int(y[0])}: a score classifier needs at least two scores")
    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=2000)).fit(x, y, logisticregression__sample_weight=sample_weight)


def regression_to_classifier(regression: Pipeline) -> LinearZoneClassifier:
    """The fitted regression as the network layer that computes the same logits (up to a constant per
    row, which the softmax ignores); score classes absent from its training data get no probability."""
    scaler, model = regression[0], regression[-1]
    classifier = LinearZoneClassifier(scaler.mean_.shape[0])
    weight = np.zeros((NUM_SCORES, scaler.mean_.shape[0]))
    bias = np.full(NUM_SCORES, ABSENT_CLASS_LOGIT)
    coef, intercept = model.coef_, model.intercept_
    if len(model.classes_) == 2:  # scikit-learn stores a binary regression as one row: class 1 against class 0
        coef, intercept = np.concatenate([-coef / 2, coef / 2]), np.concatenate([-intercept / 2, intercept / 2])
    weight[model.classes_], bias[model.classes_] = coef, intercept
    with torch.no_grad():
        classifier.feature_mean.copy_(torch.as_tensor(scaler.mean_))
        classifier.feature_scale.copy_(torch.as_tensor(scaler.scale_))
        classifier.linear.weight.copy_(torch.as_tensor(weight))
        classifier.linear.bias.copy_(torch.as_tensor(bias))
    return classifier


def regression_probabilities(regression: Pipeline, features: np.ndarray, images: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 6, 4) zone probabilities of the plain copies (copy 0) of cached ``images``, and their average
    with the mirrored copies' (copy 1, zones swapped back), as the trained heads' test-time augmentation."""
    out = []
    for view in (0, 1):
        x = features[np.asarray(images), view].reshape(-1, features.shape[-1])
        probabilities = np.zeros((len(x), NUM_SCORES))
        probabilities[:, regression.classes_] = regression.predict_proba(x)
        out.append(probabilities.reshape(len(images), NUM_ZONES, NUM_SCORES))
    return out[0], mirror_average(out[0], out[1])


def _grouped_search(
    predict: Callable[[np.ndarray, np.ndarray, float], np.ndarray],
    scores: np.ndarray, groups: np.ndarray, images: Sequence[int], c_grid: Sequence[float], n_splits: int,
) -> tuple[float, dict[float, float]]:
    """The ``c`` of ``c_grid`` whose ``predict(train, test, c)`` (zone probabilities of the ``test``
    images from a fit on the ``train`` images) has the lowest zone MAE in a patient-grouped
    ``n_splits``-fold cross-validation of ``images``; and every candidate's zone MAE."""
    splits = inner_splits(groups, images, n_splits)
    errors = {}
    for c in c_grid:
        absolute = sum(METRICS["zone_mae"](predict(train, test, c), scores[test]) * len(test) for train, test in splits)
        errors[c] = round(absolute / len(images), 4)
    return min(c_grid, key=errors.get), errors


def inner_splits(groups: np.ndarray, images: Sequence[int], n_splits: int = 4) -> list[tuple[np.ndarray, np.ndarray]]:
    """The patient-grouped (train, test) splits of ``images`` (positions) that choose a fit's settings."""
    images = np.asarray(images)
    return [(images[a], images[b]) for a, b in GroupKFold(min(n_splits, len(set(groups[images])))).split(images, groups=groups[images])]


def inner_out_of_fold_probabilities(
    features: np.ndarray, scores: np.ndarray, groups: np.ndarray, images: Sequence[int], c: float, n_splits: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """Plain and mirror-TTA zone probabilities (len(images), 6, 4) of ``images``, each image's from a fit
    at ``c`` on the other splits of :func:`inner_splits`: what the fit gives images it has not seen."""
    images = np.asarray(images)
    position = {n: i for i, n in enumerate(images)}
    out = np.zeros((2, len(images), NUM_ZONES, NUM_SCORES))
    for train, test in inner_splits(groups, images, n_splits):
        regression = fit_zone_regression(*zone_samples(features, scores, train, range(features.shape[1])), c)
        out[:, [position[n] for n in test]] = regression_probabilities(regression, features, test)
    return out[0], out[1]


def regularisation_search(
    features: np.ndarray, scores: np.ndarray, groups: np.ndarray, images: Sequence[int], c_grid: Sequence[float] = C_GRID, n_splits: int = 4
) -> tuple[float, dict[float, float], tuple[np.ndarray, np.ndarray]]:
    """:func:`choose_regularisation`'s ``c`` and every candidate's zone MAE, and the chosen ``c``'s plain and
    mirror-TTA probabilities of ``images`` from the same inner fits: those of
    :func:`inner_out_of_fold_probabilities` at ``c``, which the stages fitted on what the head says of
    unseen images (the zone context stage, Cohen's mapping) read. Fitting them again would cost about a
    quarter of a nested cross-validation."""
    images = np.asarray(images)
    position = {n: i for i, n in enumerate(images)}
    out = {c: np.zeros((2, len(images), NUM_ZONES, NUM_SCORES)) for c in c_grid}

    def predict(train: np.ndarray, test: np.ndarray, c: float) -> np.ndarray:
        regression = fit_zone_regression(*zone_samples(features, scores, train, range(features.shape[1])), c)
        out[c][:, [position[n] for n in test]] = probabilities = regression_probabilities(regression, features, test)
        return probabilities[0]

    c, errors = _grouped_search(predict, scores, groups, images, c_grid, n_splits)
    return c, errors, (out[c][0], out[c][1])


def choose_regularisation(
    features: np.ndarray, scores: np.ndarray, groups: np.ndarray, images: Sequence[int], c_grid: Sequence[float] = C_GRID, n_splits: int = 4
) -> tuple[float, dict[float, float]]:
    """The ``c`` of ``c_grid`` with the lowest zone MAE (median rating) in a patient-grouped
    ``n_splits``-fold cross-validation of ``images``; and every candidate's zone MAE."""
    return regularisation_search(features, scores, groups, images, c_grid, n_splits)[:2]


def refit_towards(prior: LinearZoneClassifier, x: np.ndarray, y: np.ndarray, c: float) -> LinearZoneClassifier:
    """A copy of ``prior`` refitted on pooled zone vectors ``x`` (raw, as :func:`pooled_zone_features`
    gives them) with scores ``y``: its weights and bias minimise

        c * (summed cross-entropy on x, y) + 1/2 ||weights - prior's||^2 + 1/2 ||bias - prior's||^2,

    the logistic regression of :func:`fit_zone_regression` with its L2 penalty centred on the prior
    instead of on zero (the bias is pulled too, so that a few images cannot swing the score
    frequencies). A few corrected images so move the classifier a little, many move it far, and ``c``
    = 0 keeps it. The prior's standardisation is kept: a handful of images cannot estimate 1920 means
    and scales. Convex, solved by L-BFGS in double precision. A score the prior never gives (logit
    :data:`ABSENT_CLASS_LOGIT`) stays about as improbable, as its bias is pulled towards that logit.
    """
    refitted = copy.deepcopy(prior).cpu().float()
    if c == 0:
        return refitted
    scaler = refitted.feature_mean.double(), refitted.feature_scale.double()
    z = (torch.as_tensor(x, dtype=torch.float64) - scaler[0]) / scaler[1]
    target = torch.as_tensor(np.asarray(y), dtype=torch.long)
    w0, b0 = refitted.linear.weight.detach().double(), refitted.linear.bias.detach().double()
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=1000, tolerance_grad=1e-6, tolerance_change=1e-12, history_size=20, line_search_fn="strong_wolfe")

    def objective() -> torch.Tensor:
        optimizer.zero_grad()
        loss = c * F.cross_entropy(z @ w.T + b, target, reduction="sum") + 0.5 * ((w - w0).square().sum() + (b - b0).square().sum())
        loss.backward()
        return loss

    optimizer.step(objective)
    with torch.no_grad():
        refitted.linear.weight.copy_(w)
        refitted.linear.bias.copy_(b)
    return refitted


@torch.inference_mode()
def classifier_probabilities(classifier: torch.nn.Module, features: np.ndarray, images: Sequence[int]) -> np.ndarray:
    """(n, 6, 4) zone probabilities a zone classifier layer gives the plain copies (copy 0) of ``images``."""
    x = torch.as_tensor(features[np.asarray(images), 0].reshape(-1, features.shape[-1]), dtype=torch.float32)
    return torch.softmax(classifier(x), -1).numpy().reshape(len(images), NUM_ZONES, NUM_SCORES)


def choose_refit_strength(
    prior: LinearZoneClassifier, features: np.ndarray, scores: np.ndarray, groups: np.ndarray, images: Sequence[int],
    c_grid: Sequence[float] = REFIT_C_GRID, n_splits: int = 4,
) -> tuple[float, dict[float, float]]:
    """The ``c`` of :func:`refit_towards` with the lowest zone MAE in a patient-grouped ``n_splits``-fold
    cross-validation of ``images`` (with 0 in ``c_grid``: the prior itself, so a refit that does not
    validate better than the prior is not chosen); and every candidate's zone MAE. Images of one
    patient cannot be cross-validated: then the shipped fit's strength, :data:`DEFAULT_REFIT_C`, and no errors."""
    if len(set(groups[np.asarray(images)])) < 2:
        return DEFAULT_REFIT_C, {}

    def predict(train: np.ndarray, test: np.ndarray, c: float) -> np.ndarray:
        refitted = refit_towards(prior, *zone_samples(features, scores, train, range(features.shape[1])), c)
        return classifier_probabilities(refitted, features, test)

    return _grouped_search(predict, scores, groups, images, c_grid, n_splits)


def scores_and_groups(items: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, np.ndarray]:
    """The (N, 6) zone scores (``label``) of ``items`` and their patient groups, as arrays in their order."""
    return np.array([list(item["label"]) for item in items]), np.array(patient_groups(items))


def fit_pooled_regression(
    features: np.ndarray, scores: np.ndarray, groups: np.ndarray, images: Sequence[int], c_grid: Sequence[float]
) -> tuple[Pipeline, dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """The pooled head's regression fitted on ``images`` (positions), its C chosen by
    :func:`regularisation_search` among them; the fit's log (chosen C, inner errors, seconds); and the
    inner out-of-fold (plain, TTA) probabilities of ``images`` at that C, from the fits that chose it."""
    start = time.perf_counter()
    c, errors, inner = regularisation_search(features, scores, groups, images, c_grid)
    regression = fit_zone_regression(*zone_samples(features, scores, images, range(features.shape[1])), c)
    log = {"n_train": len(images), "chosen_C": c, "inner_zone_mae": {str(k): v for k, v in errors.items()}, "fit_seconds": round(time.perf_counter() - start, 1)}
    return regression, log, inner


def context_variant_name(c: float | None) -> str:
    """How :func:`cross_validate_features` names a zone context stage of strength ``c`` (None: chosen) in its rows."""
    return "chosen_C" if c is None else f"C{c:g}"


def cross_validate_features(
    items: Sequence[Mapping[str, Any]], features: np.ndarray, n_folds: int = 5, seed: int = 0, c_grid: Sequence[float] = C_GRID,
    with_context: bool = False,
    other_context_c: Sequence[float | None] = (),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The cross-validation of :func:`cross_validate_pooled_head` on given pooled vectors (N, V, 6, 1920) of
    ``items`` (copy 0 plain, copy 1 its mirror; a subset of a cache's copies, say): the out-of-fold
    :func:`~monai_bsnet.cross_validation.prediction_rows` and each fold's log (chosen C, inner errors).

    With ``with_context``, the zone context stage (:mod:`monai_bsnet.zone_context`) too, nested: in each
    outer fold the inner fits that chose the pooled head's C, at that C, give out-of-fold TTA
    probabilities of the training images; the stage is fitted on those alone and rates the
    held-out images (rows gain ``scores_context`` from the plain probabilities and ``scores_context_tta``
    from the TTA ones), their sums held to the pooled head's. No held-out label reaches either stage.
    Each strength of ``other_context_c`` (None: chosen on those rows, :func:`~monai_bsnet.zone_context.choose_context_strength`)
    adds a stage fitted the same way at that strength, whose ratings are ``scores_context_<name>`` and
    ``scores_context_<name>_tta`` (:func:`context_variant_name`); the fold log keeps the strengths chosen.
    """
    scores, groups = scores_and_groups(items)
    predictions: list[dict[str, Any]] = []
    folds_log = []
    for k, (train, test) in enumerate(patient_fold_indices(items, n_folds, seed)):
        regression, log, (_, inner_tta) = fit_pooled_regression(features, scores, groups, train, c_grid)
        log.update(n_test=len(test), fold=k)
        probabilities = regression_probabilities(regression, features, test)
        rows = prediction_rows([items[i] for i in test], k, *probabilities)
        if with_context:
            stages = {"": ZoneContextRating(SERVED_CONTEXT_C).fit(inner_tta, scores[train], groups[train])}
            log["context_C"] = stages[""].c
            for c in other_context_c:
                name = context_variant_name(c)
                # the served strength by name is the served stage: not fitted (and its strength searched) twice
                stages[f"_{name}"] = stages[""] if c == SERVED_CONTEXT_C else ZoneContextRating(c).fit(inner_tta, scores[train], groups[train])
                log[f"context_C_{name}"] = stages[f"_{name}"].c
            for suffix, stage in stages.items():
                for row, rated, rated_tta in zip(rows, *(stage.ratings(p) for p in probabilities)):
                    row[f"scores_context{suffix}"], row[f"scores_context{suffix}_tta"] = rated.tolist(), rated_tta.tolist()
        predictions += rows
        folds_log.append(log)
        logger.info("fold %d: %s", k, log)
    return predictions, folds_log


def cross_validate_pooled_head(
    datalist: Sequence[Mapping[str, Any]],
    cache: FrozenStageCache,
    work_dir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    c_grid: Sequence[float] = C_GRID,
) -> dict[str, Any]:
    """Patient-grouped cross-validation of the pooled linear head on cached outputs.

    The folds are those of every other recipe (:func:`~monai_bsnet.cross_validation.patient_folds`, as positions);
    inside each training fold the L2 strength is chosen by :func:`choose_regularisation`. Writes
    ``work_dir/predictions.json`` and returns the summary of
    :func:`~monai_bsnet.cross_validation.cross_validate`. The fit is deterministic: no training seed.
    """
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    items = list(datalist)
    cache.build(items)
    predictions, folds_log = cross_validate_features(items, pooled_zone_features(cache, items), n_folds, seed, c_grid)
    (work_dir / "predictions.json").write_text(json.dumps(predictions))
    summary = summarise_predictions(predictions)
    summary.update(recipe={"zone_classifier": "pooled_linear", "C_grid": list(c_grid)}, n_folds=n_folds, seed=seed, folds=folds_log,
                   training="logistic regression on cached frozen-stage outputs", cache=cache.settings)
    return summary


def fit_final_pooled_head(
    datalist: Sequence[Mapping[str, Any]], cache: FrozenStageCache, c_grid: Sequence[float] = C_GRID, samples_path: str | os.PathLike | None = None,
    cohen: np.ndarray | None = None,
) -> dict[str, Any]:
    """Fit the pooled linear head on all of ``datalist`` (its L2 strength chosen by a patient-grouped
    cross-validation of the same images) and put it into ``cache.bsnet``; returns the fit's log. With
    ``samples_path``, what it was fitted on is kept there (:func:`save_fit_samples`, with the images'
    Cohen et al. scores ``cohen`` if given), for refits."""
    items = list(datalist)
    cache.build(items)
    features = pooled_zone_features(cache, items)
    scores, groups = scores_and_groups(items)
    regression, log, _ = fit_pooled_regression(features, scores, groups, range(len(items)), c_grid)
    head: ZoneScoringHead = cache.bsnet.scoring.with_zone_classifier("pooled_linear")
    head.share_classifier(regression_to_classifier(regression))
    cache.bsnet.scoring = head
    if samples_path is not None:
        save_fit_samples(samples_path, features, scores, log["chosen_C"], frozen_stages_fingerprint(cache.bsnet), groups, cohen)
    return log


def frozen_stages_fingerprint(bsnet: torch.nn.Module) -> str:
    """SHA-256 of every weight outside the scoring stage, rounded to half precision: equal for the
    frozen stages of a checkpoint and of its half-precision export, so it says which encoder,
    segmentation and alignment pooled zone vectors were computed with."""
    return stage_fingerprint(bsnet, scoring=False)


def fit_samples_path(weights: str | os.PathLike) -> Path:
    """Where the fit samples of a checkpoint are kept: beside it, ``<name>_fit_samples.npz``."""
    return Path(weights).with_name(f"{Path(weights).stem}_fit_samples.npz")


def save_fit_samples(
    path: str | os.PathLike, features: np.ndarray, scores: np.ndarray, c: float, fingerprint: str, groups: Sequence[str] | None = None,
    cohen: np.ndarray | None = None,
) -> None:
    """Keep what a pooled head was fitted on, so that it can be fitted again with more images: the
    pooled zone vectors of every cached copy (half precision, about 17 MB for the 138 public images),
    the zone scores, the inverse L2 strength, the :func:`frozen_stages_fingerprint`, the images'
    patient groups, which a refit's inner splits keep apart, and their Cohen et al. scores ((N, 2),
    :func:`~monai_bsnet.data.cohen_scores_of`, NaN where an image has none), which a refit fits Cohen's
    mapping again on (written atomically)."""
    path = Path(path)
    partial = path.with_name(path.name + ".partial.npz")
    extra = {} if groups is None else {"groups": np.asarray(groups, dtype=str)}
    if cohen is not None:
        extra["cohen"] = np.asarray(cohen, dtype=np.float64)
    np.savez_compressed(partial, features=features.astype(np.float16), scores=np.asarray(scores, dtype=np.int8), c=c, fingerprint=fingerprint, **extra)
    os.replace(partial, path)


def load_fit_samples(path: str | os.PathLike) -> dict[str, Any]:
    """What :func:`save_fit_samples` kept: ``features`` (float32), ``scores``, ``c``, ``fingerprint``,
    ``groups`` (a group of its own per image where the file has none) and ``cohen`` (all NaN where it has none)."""
    with np.load(path) as kept:
        n = len(kept["scores"])
        groups = kept["groups"].astype(str) if "groups" in kept.files else np.array([f"__fit{i}" for i in range(n)])
        cohen = kept["cohen"].astype(np.float64) if "cohen" in kept.files else np.full((n, 2), np.nan)
        return {"features": kept["features"].astype(np.float32), "scores": kept["scores"].astype(np.int64), "c": float(kept["c"]),
                "fingerprint": str(kept["fingerprint"]), "groups": groups, "cohen": cohen}


def refit_final_pooled_head(
    datalist: Sequence[Mapping[str, Any]], cache: FrozenStageCache, fit_samples: Mapping[str, Any], c: float | None = None,
    context_path: str | os.PathLike | None = None, cohen_path: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Fit ``cache.bsnet``'s pooled linear zone classifier again, on the images it was fitted on
    (``fit_samples``, :func:`load_fit_samples`) and ``datalist``'s together, with their inverse L2
    strength unless ``c`` is given; put it into ``cache.bsnet``; return the fit's log.

    The retraining of the MONAI Label app: a site's labelled images join the public ones, so a few
    labels move the classifier a little and many move it far, and nothing fitted before is forgotten.
    The fit samples must come from the same frozen stages as ``cache.bsnet``'s (their fingerprint).

    With ``context_path``, the zone context stage is fitted again for the refitted classifier and saved
    there (:class:`~monai_bsnet.zone_context.ZoneContextRating`, marked with the classifier's
    fingerprint): on out-of-fold TTA probabilities of the same images at the same ``c`` (four
    patient-grouped inner splits), each image with its own scores (``bundle/docs/experiments.md``,
    "The zone context stage after a refit"). With ``cohen_path``, Cohen et al.'s mapping is fitted again
    on the same probabilities of the fit samples that have Cohen scores (the site's images have none) and
    saved there, marked the same way (experiments, "Cohen et al.'s scores after a refit"); not when the
    fit samples hold no Cohen scores.
    """
    if cache.bsnet.scoring.zone_classifier != "pooled_linear":
        raise ValueError(f"a refit needs the pooled linear zone classifier, this network has the {cache.bsnet.scoring.zone_classifier!r} head")
    if fit_samples["fingerprint"] != frozen_stages_fingerprint(cache.bsnet):
        raise ValueError("the fit samples were computed with other frozen stages than this network's: they cannot be refitted with")
    items = list(datalist)
    cache.build(items)
    site_features = pooled_zone_features(cache, items)
    if site_features.shape[1:] != fit_samples["features"].shape[1:]:
        raise ValueError(f"the cache has {site_features.shape[1]} copies per image, the fit samples {fit_samples['features'].shape[1]}: they cannot be refitted together")
    site_scores, site_groups = scores_and_groups(items)
    # the public images first, then the site's; their patient groups kept apart
    features = np.concatenate([fit_samples["features"], site_features])
    scores = np.concatenate([fit_samples["scores"], site_scores])
    groups = np.array([f"fit:{g}" for g in fit_samples["groups"]] + [f"site:{g}" for g in site_groups])
    c = fit_samples["c"] if c is None else c
    start = time.perf_counter()
    regression = fit_zone_regression(*zone_samples(features, scores, range(len(features)), range(features.shape[1])), c)
    cache.bsnet.scoring.share_classifier(regression_to_classifier(regression))
    log: dict[str, Any] = {"n_train": len(items), "n_fit_samples_images": len(fit_samples["features"]), "C": c,
                           "fit_seconds": round(time.perf_counter() - start, 1)}
    # the fit samples with Cohen scores (the first rows of ``features``; the site's images have none)
    cohen_rows = np.flatnonzero(~np.isnan(fit_samples["cohen"][:, 0])) if cohen_path is not None else np.array([], dtype=int)
    if context_path is None and not len(cohen_rows):
        return log
    # the stages beside the weights are fitted on what the refitted classifier says of images it was not fitted on
    start = time.perf_counter()
    _, inner_tta = inner_out_of_fold_probabilities(features, scores, groups, range(len(features)), c)
    fitted_for = stage_fingerprint(cache.bsnet, scoring=True)
    if context_path is not None:
        stage = ZoneContextRating(SERVED_CONTEXT_C).fit(inner_tta, scores, groups)
        stage.fitted_for = fitted_for
        stage.save(context_path)
        log["zone_context"] = {"fitted_on": len(features), "C": stage.c, "seconds": round(time.perf_counter() - start, 1)}
    if len(cohen_rows):
        cohen = fit_samples["cohen"][cohen_rows]
        mapping = CohenSeverityMapping(fitted_for=fitted_for).fit(inner_tta[cohen_rows], cohen[:, 0], cohen[:, 1])
        mapping.save(cohen_path)
        log["cohen"] = {"fitted_on": mapping.fitted_on}
    return log
