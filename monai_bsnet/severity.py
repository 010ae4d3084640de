"""Cohen et al.'s severity scores estimated from BS-Net's zone probabilities.

Cohen et al. (Cureus 12(7) e9448, 2020) rate a frontal CXR by geographic extent (0-4 per lung: how
much of it is involved, summed: 0-8) and opacity (0-3 per lung: how dense, summed: 0-6). Both
follow from what the Brixia zones already say: how many zones are involved and how severely.
So the mapping is a small linear model on two summaries of the zone probabilities, fitted by ridge
regression (the two summaries are strongly correlated; the small penalty keeps the weights sane) on images that carry both kinds of scores, and clipped to each score's range:

- ``involved``: expected number of zones scored 1 or more, sum over zones of P(score >= 1), 0..6;
- ``expected_global``: expected Brixia global score, sum over zones of E[score], 0..18;
- ``lung_max`` (not in the shipped mapping): expected worst zone score of each lung, summed over the two
  lungs, 0..6, the zones of a lung taken as independent (``bundle/docs/experiments.md``, "Cohen et al.'s
  scores: measured by patient").

Two inputs and an intercept per score (:data:`FEATURES`) keep the model from fitting the noise of 55
images; its patient-grouped cross-validated error is measured by :func:`cross_validated_mae` and
reported in the model card.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold

from monai_bsnet.data.cohen import GEOGRAPHIC_EXTENT_MAX, OPACITY_MAX
from monai_bsnet.networks.weights import fitted_file_beside
from monai_bsnet.writers import write_json
from monai_bsnet.zones import ZONE_LUNG, ZONE_NAMES

__all__ = ["FEATURES", "MAPPING_FILE", "severity_features", "CohenSeverityMapping", "cross_validated_mae", "mapping_beside"]

#: The inputs of the shipped mapping.
FEATURES = ("involved", "expected_global")
_TARGETS = {"geographic_extent": GEOGRAPHIC_EXTENT_MAX, "opacity": OPACITY_MAX}
_LUNGS = [[z for z, name in enumerate(ZONE_NAMES) if ZONE_LUNG[name] == lung] for lung in ("right", "left")]


def _lung_max(p: np.ndarray) -> np.ndarray:
    at_most = np.cumsum(p, axis=-1)  # P(score <= k)
    # P(worst zone of a lung <= k) with its zones independent; E[max] = sum over k < 3 of P(max > k)
    return sum((1.0 - at_most[:, zones, :-1].prod(axis=1)).sum(-1) for zones in _LUNGS)


_FEATURE_FUNCTIONS = {
    "involved": lambda p: (1.0 - p[..., 0]).sum(-1),
    "expected_global": lambda p: (p * np.arange(p.shape[-1])).sum((-1, -2)),
    "lung_max": _lung_max,
}


def severity_features(zone_probabilities: np.ndarray, features: Sequence[str] = FEATURES) -> np.ndarray:
    """(N, 6, 4) zone probabilities -> (N, len(features)) inputs of the mapping (:data:`FEATURES` by default)."""
    p = np.asarray(zone_probabilities, dtype=np.float64)
    if p.ndim == 2:
        p = p[None]
    return np.stack([_FEATURE_FUNCTIONS[name](p) for name in features], axis=-1)


class CohenSeverityMapping:
    """Zone probabilities -> Cohen et al.'s geographic extent (0-8) and opacity (0-6).

    ``coefficients[target] = (intercept, weight of each of features...)``; load a fitted mapping
    with :meth:`load` (the bundle ships ``models/cohen_severity.json``).

    Args:
        coefficients: fitted coefficients per score (none: fit with :meth:`fit`).
        fitted_on: number of images it was fitted on.
        fitted_for: fingerprint of the scoring stage whose probabilities it was fitted on.
        features: its inputs, names of :func:`severity_features` (default :data:`FEATURES`).
    """

    def __init__(
        self, coefficients: Mapping[str, list[float]] | None = None, fitted_on: int = 0, fitted_for: str | None = None,
        features: Sequence[str] = FEATURES,
    ) -> None:
        unknown = set(features) - set(_FEATURE_FUNCTIONS)
        if unknown:
            raise ValueError(f"unknown inputs of the Cohen severity mapping: {sorted(unknown)} (known: {sorted(_FEATURE_FUNCTIONS)})")
        self.features = tuple(features)
        self.coefficients = {k: [float(c) for c in v] for k, v in (coefficients or {}).items()}
        self.fitted_on = fitted_on
        #: fingerprint of the scoring stage whose probabilities it was fitted on (:func:`mapping_beside` checks it)
        self.fitted_for = fitted_for

    def fit(self, zone_probabilities: np.ndarray, geographic_extent: np.ndarray, opacity: np.ndarray) -> CohenSeverityMapping:
        """Ridge fit of both scores on the features of ``zone_probabilities`` (N, 6, 4)."""
        x = severity_features(zone_probabilities, self.features)
        for name, y in (("geographic_extent", geographic_extent), ("opacity", opacity)):
            model = Ridge(alpha=1.0).fit(x, np.asarray(y, dtype=np.float64))
            self.coefficients[name] = [float(model.intercept_), *map(float, model.coef_)]
        self.fitted_on = len(x)
        return self

    def predict(self, zone_probabilities: np.ndarray) -> dict[str, np.ndarray]:
        """Both scores for (N, 6, 4) or one image's (6, 4) probabilities, clipped to their ranges."""
        if not self.coefficients:
            raise RuntimeError("the Cohen severity mapping is not fitted")
        x = severity_features(zone_probabilities, self.features)
        out = {}
        for name, maximum in _TARGETS.items():
            c = np.asarray(self.coefficients[name])
            out[name] = np.clip(c[0] + x @ c[1:], 0.0, maximum)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"features": list(self.features), "coefficients": self.coefficients, "fitted_on": self.fitted_on,
                **({"fitted_for": self.fitted_for} if self.fitted_for else {}),
                "reference": "Cohen et al., Cureus 12(7) e9448 (2020), arXiv:2005.11856"}

    def save(self, path: str | os.PathLike) -> Path:
        return write_json(self.to_dict(), path)  # atomic: a reader never sees half a file

    @classmethod
    def load(cls, path: str | os.PathLike) -> CohenSeverityMapping:
        data = json.loads(Path(path).read_text())
        features = list(data.get("features", []))
        coefficients = data.get("coefficients", {})
        if (not features or set(features) - set(_FEATURE_FUNCTIONS) or set(coefficients) != set(_TARGETS)
                or any(len(c) != len(features) + 1 for c in coefficients.values())):
            raise ValueError(f"{path}: not a Cohen severity mapping of this version (inputs among {sorted(_FEATURE_FUNCTIONS)}, "
                             f"an intercept and one weight per input for each of {sorted(_TARGETS)})")
        return cls(coefficients, data.get("fitted_on", 0), data.get("fitted_for"), features)


def cross_validated_mae(
    zone_probabilities: np.ndarray, geographic_extent: np.ndarray, opacity: np.ndarray, groups: Sequence[str], n_folds: int = 5, seed: int = 0,
    features: Sequence[str] = FEATURES, repeats: int = 1,
) -> dict[str, float]:
    """Patient-grouped K-fold MAE of the mapping (the images of one patient, ``groups``, on one side; the
    groups shuffled by ``seed``), beside the MAE of always answering the training mean (the floor to beat)
    and the Pearson r; with ``repeats`` > 1, each number is the mean over that many split seeds from ``seed``
    on (with 55 images, one split moves the MAE by a few hundredths). With fewer patients than ``n_folds``,
    one fold per patient."""
    patients = len(set(np.asarray(groups).tolist()))
    if patients < 2:
        raise ValueError(f"cross-validating the Cohen severity mapping needs images of two patients or more, got {patients}")
    n_folds = min(n_folds, patients)
    runs = [_cross_validated_mae_once(zone_probabilities, geographic_extent, opacity, groups, n_folds, seed + k, features) for k in range(repeats)]
    return {key: float(np.mean([run[key] for run in runs])) for key in runs[0]}


def _cross_validated_mae_once(
    zone_probabilities: np.ndarray, geographic_extent: np.ndarray, opacity: np.ndarray, groups: Sequence[str], n_folds: int, seed: int,
    features: Sequence[str],
) -> dict[str, float]:
    p = np.asarray(zone_probabilities)
    targets = {"geographic_extent": np.asarray(geographic_extent, float), "opacity": np.asarray(opacity, float)}
    predicted = {k: np.zeros(len(p)) for k in targets}
    constant = {k: np.zeros(len(p)) for k in targets}
    for train, test in GroupKFold(n_folds, shuffle=True, random_state=seed).split(p, groups=np.asarray(groups)):
        mapping = CohenSeverityMapping(features=features).fit(p[train], targets["geographic_extent"][train], targets["opacity"][train])
        for k, v in mapping.predict(p[test]).items():
            predicted[k][test] = v
            constant[k][test] = targets[k][train].mean()
    out = {}
    for k, y in targets.items():
        out[f"{k}_mae"] = float(np.abs(predicted[k] - y).mean())
        out[f"{k}_mae_constant"] = float(np.abs(constant[k] - y).mean())
        out[f"{k}_pearson_r"] = float(np.corrcoef(predicted[k], y)[0, 1]) if np.std(predicted[k]) > 0 else float("nan")
    return out


#: File name of the mapping that ships beside the weights (``bundle/models/cohen_severity.json``).
MAPPING_FILE = "cohen_severity.json"


def mapping_beside(weights: str | os.PathLike, network: torch.nn.Module | None = None) -> CohenSeverityMapping | None:
    """The Cohen severity mapping fitted for the model ``weights``: ``cohen_severity.json`` in its folder.

    None when there is no such file (the records then carry null extent and opacity): a mapping
    fitted for other weights would give wrong numbers, so none is guessed. Given the ``network`` loaded
    from ``weights``, a mapping marked as fitted for another scoring stage (``fitted_for``; weights
    retrained over the shipped ones, say) is refused with a warning.
    """
    return fitted_file_beside(weights, MAPPING_FILE, CohenSeverityMapping.load, network)
