"""A second rating stage that reads the six zones of an image together (stacking).

The scoring head rates each zone from its own crop. A radiologist reads the six together: a zone beside
five clear ones is more likely clear. This stage refits each zone's four score probabilities from the
logs of those probabilities and the image's mean expected zone score, by one multinomial logistic
regression shared by the six zones (scikit-learn, L-BFGS, L2), fitted on *out-of-fold* probabilities of
the first stage (what it gives images it was not fitted on, as at inference).

Its zone distributions are better, but the sum of their medians is a worse global score than the
first stage's (``bundle/docs/experiments.md``, "A second stage that reads the whole image's zones?").
So the served ratings take both: the global score stays the sum of the first stage's zone medians, and
the six zone ratings are those with the least expected absolute error under this stage's distributions
that add up to it (:func:`ratings_with_sum`).

Reference: D. H. Wolpert, "Stacked generalization", Neural Networks 5(2), 1992.
"""

from __future__ import annotations

import json
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from monai_bsnet.networks.weights import fitted_file_beside
from monai_bsnet.writers import write_json
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES, median_scores

__all__ = ["CONTEXT_FILE", "DEFAULT_CONTEXT_C", "CONTEXT_C_GRID", "SERVED_CONTEXT_C", "context_inputs", "ratings_with_sum", "choose_context_strength",
           "ZoneContextRating", "rating_beside", "served_ratings", "serving", "ServedZoneRatingd"]

#: File name of the fitted stage that ships beside the weights (``bundle/models/zone_context.json``).
CONTEXT_FILE = "zone_context.json"

#: The stage's L2 strength (scikit-learn's ``C``) where none is chosen: the stop-26 screen's, which
#: :func:`choose_context_strength` keeps on a tie and where the rows are too few to choose on.
DEFAULT_CONTEXT_C = 1.0

#: The L2 strengths :func:`choose_context_strength` chooses from.
CONTEXT_C_GRID = (0.001, 0.01, 0.1, DEFAULT_CONTEXT_C, 10.0)

#: The strength of the served stage, wherever it is fitted (the recipe's ``context`` step, the app's refit,
#: the nested cross-validation's ``with_context``): None, chosen on the rows it is fitted on, since 0.3.5
#: (``bundle/docs/experiments.md``, "The zone context stage's strength chosen on its own rows?": nested zone
#: MAE with TTA lower on each of six sets of draws, by 0.008 on the three fresh ones its rule was judged on).
SERVED_CONTEXT_C: float | None = None

#: Probabilities are clipped here before their logarithm (a score the first stage never gives has 0).
_FLOOR = 1e-6


def context_inputs(probabilities: np.ndarray) -> np.ndarray:
    """(N, 6, 4) zone probabilities -> (N * 6, 5) inputs: the zone's four log-probabilities and the
    image's mean expected zone score, one row per (image, zone)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), _FLOOR, 1.0)
    expected = (p * np.arange(NUM_SCORES)).sum(-1)
    image_mean = np.repeat(expected.mean(-1, keepdims=True), NUM_ZONES, axis=-1)
    return np.concatenate([np.log(p), image_mean[..., None]], axis=-1).reshape(-1, NUM_SCORES + 1)


def ratings_with_sum(probabilities: np.ndarray, totals: np.ndarray) -> np.ndarray:
    """The six zone ratings of each image with the least expected absolute error under
    ``probabilities`` (N, 6, 4) whose sum is that image's ``totals`` (N,), an integer in 0..18.

    Exact, by dynamic programming over the zones and the partial sums.
    """
    p = np.asarray(probabilities, dtype=np.float64)
    scores = np.arange(NUM_SCORES)
    # expected absolute error of rating r in each zone: (N, 6, 4)
    cost = np.einsum("rs,nzs->nzr", np.abs(scores[:, None] - scores[None, :]), p)
    max_sum = NUM_ZONES * (NUM_SCORES - 1)
    out = np.zeros(p.shape[:2], dtype=np.int64)
    for n, total in enumerate(np.asarray(totals, dtype=np.int64)):
        if not 0 <= total <= max_sum:
            raise ValueError(f"a global score must be in 0..{max_sum}, got {total}")
        best = np.full((NUM_ZONES + 1, max_sum + 1), np.inf)  # least cost of zones < z summing to s
        choice = np.zeros((NUM_ZONES, max_sum + 1), dtype=np.int64)
        best[0, 0] = 0.0
        for z in range(NUM_ZONES):
            for s in range(max_sum + 1):
                options = [best[z, s - r] + cost[n, z, r] if s >= r else np.inf for r in scores]
                choice[z, s] = int(np.argmin(options))
                best[z + 1, s] = options[choice[z, s]]
        for z in reversed(range(NUM_ZONES)):  # walk back from the total
            out[n, z] = choice[z, total]
            total -= out[n, z]
    return out


class ZoneContextRating:
    """First-stage zone probabilities (N, 6, 4) -> context probabilities and the served zone ratings.

    The regression is kept as its arrays (standardisation, weights, biases, score classes) and evaluated
    with numpy, as scikit-learn's ``predict_proba`` computes it, so that the stored file needs no
    scikit-learn objects to load.

    Args:
        c: inverse L2 strength of the regression (scikit-learn's ``C``), or None: chosen by
            :func:`choose_context_strength` on the rows :meth:`fit` is given (``c`` then holds the choice
            and ``strength_errors`` each candidate's cross-validated zone MAE).

    ``fitted_for``, where set, is the fingerprint of the scoring stage whose probabilities the stage was
    fitted on (:func:`~monai_bsnet.networks.weights.stage_fingerprint`): :func:`rating_beside` refuses the
    stage for a network with another one.
    """

    def __init__(self, c: float | None = DEFAULT_CONTEXT_C) -> None:
        self.c = c
        self.strength_errors: dict[float, float] = {}
        self.arrays: dict[str, np.ndarray] = {}
        self.fitted_on = 0
        self.fitted_for: str | None = None

    def fit(self, probabilities: np.ndarray, scores: np.ndarray, groups: np.ndarray | None = None) -> ZoneContextRating:
        """Fit on out-of-fold first-stage probabilities (N, 6, 4) of images with zone scores (N, 6); with
        ``c`` None, its strength is first chosen on them, in folds of the patient ``groups`` (N,) (default:
        each image its own patient)."""
        y = np.asarray(scores, dtype=np.int64).reshape(-1)
        if len(np.unique(y)) < 2:
            raise ValueError(f"every training zone has score {int(y[0])}: the context stage needs at least two scores")
        if self.c is None:
            groups = np.arange(len(np.asarray(scores))) if groups is None else np.asarray(groups)
            self.c, self.strength_errors = choose_context_strength(probabilities, scores, groups)
        scaler, model = make_pipeline(StandardScaler(), LogisticRegression(C=self.c, max_iter=2000)).fit(context_inputs(probabilities), y)
        self.arrays = {"feature_mean": scaler.mean_, "feature_scale": scaler.scale_, "coef": model.coef_,
                       "intercept": model.intercept_, "classes": model.classes_}
        self.fitted_on = len(np.asarray(scores))
        return self

    def probabilities(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, 6, 4) context probabilities of first-stage probabilities (N, 6, 4) or one image's (6, 4)."""
        if not self.arrays:
            raise RuntimeError("the zone context stage is not fitted")
        a = self.arrays
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1, NUM_ZONES, NUM_SCORES)
        logits = (context_inputs(p) - a["feature_mean"]) / a["feature_scale"] @ a["coef"].T + a["intercept"]
        if len(a["classes"]) == 2:  # scikit-learn's binary form: one row, class 1 against class 0
            logits = np.concatenate([np.zeros_like(logits), logits], axis=1)
        known = np.exp(logits - logits.max(1, keepdims=True))
        out = np.zeros((len(logits), NUM_SCORES))
        out[:, a["classes"]] = known / known.sum(1, keepdims=True)
        return out.reshape(p.shape)

    def ratings(self, probabilities: np.ndarray) -> np.ndarray:
        """(N, 6) served zone ratings: summing to the first stage's global score (the sum of its zone
        medians), chosen by :func:`ratings_with_sum` under the context probabilities."""
        p = np.asarray(probabilities, dtype=np.float64).reshape(-1, NUM_ZONES, NUM_SCORES)
        return ratings_with_sum(self.probabilities(p), median_scores(p).sum(-1))

    def to_dict(self) -> dict[str, Any]:
        if not self.arrays:
            raise RuntimeError("the zone context stage is not fitted")
        return {"inputs": ["log_p0", "log_p1", "log_p2", "log_p3", "image_mean_expected_score"], "C": self.c,
                **({"C_cross_validated_zone_mae": {str(c): e for c, e in self.strength_errors.items()}} if self.strength_errors else {}),
                **{name: value.tolist() for name, value in self.arrays.items()}, "fitted_on": self.fitted_on,
                **({"fitted_for": self.fitted_for} if self.fitted_for else {}),
                "reference": "bundle/docs/experiments.md, 'A second stage that reads the whole image's zones?'"}

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(self.to_dict(), path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str | os.PathLike) -> ZoneContextRating:
        data = json.loads(Path(path).read_text())
        try:
            stage = cls(float(data["C"]))
            stage.arrays = {name: np.asarray(data[name], dtype=np.int64 if name == "classes" else np.float64)
                            for name in ("feature_mean", "feature_scale", "coef", "intercept", "classes")}
            stage.strength_errors = {float(c): float(e) for c, e in data.get("C_cross_validated_zone_mae", {}).items()}
            stage.fitted_on = int(data.get("fitted_on", 0))
            stage.fitted_for = data.get("fitted_for")
        except (AttributeError, KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path}: not a zone context stage of this version ({error!r})") from error
        inputs = NUM_SCORES + 1
        if stage.arrays["coef"].ndim != 2 or stage.arrays["coef"].shape[1] != inputs or len(stage.arrays["feature_mean"]) != inputs:
            raise ValueError(f"{path}: not a zone context stage of this version (expected {inputs} inputs)")
        return stage


def choose_context_strength(
    probabilities: np.ndarray, scores: np.ndarray, groups: np.ndarray, c_grid: tuple[float, ...] = CONTEXT_C_GRID, n_splits: int = 4,
) -> tuple[float, dict[float, float]]:
    """The ``C`` of ``c_grid`` whose served ratings (:meth:`ZoneContextRating.ratings`, held to the first
    stage's sum) have the lowest zone MAE in a patient-grouped ``n_splits``-fold cross-validation of
    the images (probabilities (N, 6, 4), scores (N, 6), patient ``groups`` (N,)); a tie with it keeps
    :data:`DEFAULT_CONTEXT_C` (1), as do rows too few to split (one patient, or a split whose training rows have one
    score). Returns it and each candidate's zone MAE (none where nothing was chosen).

    Why the served ratings and not the log-likelihood: the stage's probabilities are only ever read
    through those ratings, and the strength that rates best is what the choice is for.
    """
    p, y, groups = np.asarray(probabilities, dtype=np.float64), np.asarray(scores, dtype=np.int64), np.asarray(groups)
    n_groups = len(set(groups.tolist()))
    if n_groups < 2:
        return DEFAULT_CONTEXT_C, {}
    splits = list(GroupKFold(min(n_splits, n_groups)).split(p, groups=groups))
    if any(len(np.unique(y[train])) < 2 for train, _ in splits):  # a few images of one score: nothing to choose on
        return DEFAULT_CONTEXT_C, {}
    errors = {}
    for c in c_grid:
        absolute = 0.0
        for train, test in splits:
            absolute += np.abs(ZoneContextRating(c).fit(p[train], y[train]).ratings(p[test]) - y[test]).sum()
        errors[c] = round(absolute / y.size, 4)
    return min(c_grid, key=lambda c: (errors[c], c != DEFAULT_CONTEXT_C)), errors


def rating_beside(weights: str | os.PathLike, network: torch.nn.Module | None = None) -> ZoneContextRating | None:
    """The zone context stage fitted for the model ``weights``: ``zone_context.json`` in its folder, or
    None (the ratings are then the first stage's zone medians): a stage fitted on another model's
    probabilities would misread them, so none is guessed. Given the ``network`` loaded from ``weights``,
    a stage marked as fitted for another scoring stage (``fitted_for``) is refused with a warning, say
    one left beside weights that a later training replaced."""
    return fitted_file_beside(weights, CONTEXT_FILE, ZoneContextRating.load, network)


def served_ratings(probabilities: np.ndarray, stage: ZoneContextRating | None) -> np.ndarray:
    """(N, 6) zone ratings of first-stage probabilities (N, 6, 4) or one image's (6, 4), as every path
    serves them: ``stage``'s ratings (:meth:`ZoneContextRating.ratings`), or each zone's median without one."""
    p = np.asarray(probabilities, dtype=np.float64).reshape(-1, NUM_ZONES, NUM_SCORES)
    return median_scores(p) if stage is None else stage.ratings(p)


def serving(mirror_tta: bool, stage: ZoneContextRating | None) -> dict[str, str | None]:
    """How the zone ratings are made, as the result records' ``model`` and an evaluation's ``metrics.json``
    say it: ``test_time_augmentation`` ("mirror" or None) and ``zone_rating`` ("zone context" or "median")."""
    return {"test_time_augmentation": "mirror" if mirror_tta else None, "zone_rating": "median" if stage is None else "zone context"}


class ServedZoneRatingd(MapTransform):
    """Zone probabilities (6, 4) under ``keys`` -> the served zone ratings (6,) (:func:`served_ratings`),
    so that an evaluator's metrics and reports judge what the model serves (the bundle's ``evaluate.json``).

    Args:
        keys: keys of the zone probabilities (a softmax already applied).
        stage: the zone context stage (:func:`rating_beside` the weights), or None for the zone medians.
    """

    def __init__(self, keys: KeysCollection, stage: ZoneContextRating | None) -> None:
        super().__init__(keys)
        self.stage = stage

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            p = torch.as_tensor(d[key])
            d[key] = torch.as_tensor(served_ratings(p.detach().cpu().numpy(), self.stage)[0], device=p.device)
        return d
