"""Linear probes of the frozen stages' zone features: does a scoring model learn more from one zone
classifier shared by the six zones than from one classifier per zone?

This is the experiment behind the pooled linear zone classifier (``monai_bsnet.pooled_head``, recipe
``pooled``; ``bundle/docs/experiments.md``). It reads the frozen-stage cache that ``train_recipe.py
--schedule cpu_cached`` builds (``WORK/frozen_stages``), pools each zone crop of each scale the way the
pooled head does (:func:`~monai_bsnet.pooled_head.pooled_zone_features`: mean and maximum per channel of
the lung-weighted, aligned zone crops, 1920 numbers per zone) and fits the same L2-regularised
multinomial logistic regressions (:func:`~monai_bsnet.pooled_head.fit_zone_regression`) on the six
cached copies of each training image. It reports the patient-grouped 5-fold cross-validation (the folds
of every ``cv:`` step), with the regularisation chosen inside each training fold by a 4-fold grouped
search, for three ways of sharing the model:

    shared     one model for all six zones (zone crops of every zone are its samples): ``cv:pooled``
    per_level  one model per height (A and D, B and E, C and F)
    per_zone   one model per zone, as the BS-Net head has one classifier per zone

    python bundle/scripts/zone_probe.py --data DATA --cache WORK/frozen_stages --out bundle/logs/zone_probe.json

Beside ``--out`` it writes each probe's out-of-fold zone probabilities (plain, and averaged with the
mirrored copy's) in the cross-validations' form, ``cv_probe_<grouping>_predictions.json``, which
``compare_recipes.py`` compares with the trained recipes.

About 2 min to pool the cache of the 138 images and 5 min for the probes on two CPU cores.
"""

from __future__ import annotations

import json

import numpy as np
from sklearn.dummy import DummyClassifier
from sklearn.model_selection import GroupKFold

from pooled_experiments import experiment_parser, pooled_public_images

from monai_bsnet.cross_validation import patient_fold_indices, prediction_rows
from monai_bsnet.metrics import brixia_metrics
from monai_bsnet.pooled_head import C_GRID, fit_zone_regression, zone_samples
from monai_bsnet.transforms import mirror_average
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES

GROUPINGS = {"shared": [list(range(NUM_ZONES))], "per_level": [[0, 3], [1, 4], [2, 5]], "per_zone": [[z] for z in range(NUM_ZONES)]}


def fit_predict(features, scores, train, test, grouping: str, c: float) -> tuple[np.ndarray, np.ndarray]:
    """Zone probabilities (len(test), 6, 4) of the ``test`` images: of their plain copy, and its average
    with the mirrored copy's, zones swapped back (test-time augmentation, as the trained heads')."""
    probabilities = np.zeros((2, len(test), NUM_ZONES, NUM_SCORES))  # plain, mirrored
    for zones in GROUPINGS[grouping]:
        x, y = zone_samples(features, scores, train, range(features.shape[1]), zones)
        # a zone whose training images all share one score (tiny data) gets that score
        model = fit_zone_regression(x, y, c) if len(np.unique(y)) > 1 else DummyClassifier().fit(x, y)
        for z in zones:
            for copy in (0, 1):  # copy 1 of the cache is the plain image mirrored
                probabilities[copy][:, z, model.classes_] = model.predict_proba(features[test, copy, z])
    return probabilities[0], mirror_average(probabilities[0], probabilities[1])


def nested_cross_validation(features, scores, groups, folds, grouping: str) -> tuple[dict, np.ndarray, np.ndarray]:
    """The probe's cross-validated metrics, and its out-of-fold probabilities: plain and with TTA."""
    out = np.zeros((len(scores), NUM_ZONES, NUM_SCORES))
    out_tta = np.zeros_like(out)
    chosen = []
    for train, test in folds:
        train = np.asarray(train)
        inner = list(GroupKFold(min(4, len(set(groups[train])))).split(train, groups=groups[train]))
        errors = {c: sum(brixia_metrics(fit_predict(features, scores, train[a], train[b], grouping, c)[0], scores[train[b]])["zone_mae"] * len(b)
                         for a, b in inner) for c in C_GRID}
        chosen.append(min(C_GRID, key=errors.get))
        out[test], out_tta[test] = fit_predict(features, scores, train, test, grouping, chosen[-1])
    metrics = brixia_metrics(out, scores)
    per_fold = [round(brixia_metrics(out[test], scores[test])["zone_mae"], 3) for _, test in folds]
    summary = {"zone_mae": round(metrics["zone_mae"], 4), "global_mae": round(metrics["global_mae"], 3),
               "zone_accuracy": round(metrics["zone_accuracy"], 3), "fold_zone_mae": per_fold, "chosen_C": chosen}
    return summary, out, out_tta


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    args = parser.parse_args(argv)
    items, cache, features, scores, groups = pooled_public_images(args)
    folds = patient_fold_indices(items, args.folds)
    result = {"n_images": len(items), "cache": cache.settings,
              "features": "per scale mean and max of the lung-weighted aligned zone crops (monai_bsnet.pooled_head)",
              "model": "StandardScaler + multinomial LogisticRegression, C chosen per fold from %s by 4-fold grouped search" % (C_GRID,)}
    fold_of = np.zeros(len(items), int)
    for k, (_, test) in enumerate(folds):
        fold_of[test] = k
    for grouping in GROUPINGS:
        result[grouping], probabilities, probabilities_tta = nested_cross_validation(features, scores, groups, folds, grouping)
        tta = brixia_metrics(probabilities_tta, scores)
        result[grouping]["tta"] = {"zone_mae": round(tta["zone_mae"], 4), "global_mae": round(tta["global_mae"], 3)}
        rows = prediction_rows(items, fold_of.tolist(), probabilities, probabilities_tta)
        (args.out.parent / f"cv_probe_{grouping}_predictions.json").write_text(json.dumps(rows))
        print(grouping, result[grouping], flush=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
