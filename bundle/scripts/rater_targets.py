"""Both raters' scores as the pooled head's targets: does the regression gain from the junior's scores?

Every public image was scored by a senior and a junior radiologist; ``cv:pooled`` fits the senior's.
Here each training image enters the fit twice, once with each rater's scores, at half weight each, so
that the logistic regression's target is the raters' average score distribution (where they agree,
nothing changes). Doubling the samples is what halving the weights would do at half the C, so the C
grid is ``cv:pooled``'s halved and the inner search runs on the doubled images (a junior twin shares its
patient's inner fold and is scored against the junior). The held-out images are scored against the
senior, on ``cv:pooled``'s folds, beside the senior-only fit on the same copies (paired patient
bootstrap).

    python bundle/scripts/rater_targets.py --data ../shared/data --cache DRAW_CACHE --copies 6 \\
        --out bundle/logs/rater_targets/seed0.json

A few minutes on two cores for each of the two fits.
"""

from __future__ import annotations

import json
import time

import numpy as np
from pooled_experiments import experiment_parser, pooled_public_images

from monai_bsnet.cross_validation import compare_predictions, patient_fold_indices, prediction_rows, summarise_predictions
from monai_bsnet.pooled_head import C_GRID, choose_regularisation, cross_validate_features, fit_zone_regression, regression_probabilities, zone_samples


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items, _, features, senior, groups = pooled_public_images(args)
    junior = np.array([item["label_junior"] for item in items])
    n = len(items)
    # the junior's twin of image i is image n + i: the same pooled vectors, the junior's scores, the same patient
    twins, twin_scores, twin_groups = np.concatenate([features, features]), np.concatenate([senior, junior]), np.concatenate([groups, groups])
    c_grid = [c / 2 for c in C_GRID]

    senior_only, _ = cross_validate_features(items, features, args.folds)
    both_raters, folds = [], []
    for k, (train, test) in enumerate(patient_fold_indices(items, args.folds)):
        rows = np.concatenate([train, np.asarray(train) + n])
        c, errors = choose_regularisation(twins, twin_scores, twin_groups, rows, c_grid)
        regression = fit_zone_regression(*zone_samples(twins, twin_scores, rows, range(features.shape[1])), c)
        both_raters += prediction_rows([items[i] for i in test], k, *regression_probabilities(regression, features, test))
        folds.append({"fold": k, "chosen_C": c, "inner_zone_mae": {str(key): value for key, value in errors.items()}})
        print(folds[-1], flush=True)

    result = {
        "n_images": n, "copies": features.shape[1], "reference": "senior", "C_grid": c_grid,
        "senior_only": summarise_predictions(senior_only), "both_raters": summarise_predictions(both_raters), "folds": folds,
        "both_raters_minus_senior_only": {"plain": compare_predictions(senior_only, both_raters),
                                          "tta": compare_predictions(senior_only, both_raters, key="probabilities_tta")},
        "seconds": round(time.perf_counter() - start, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    for name in ("senior_only", "both_raters"):
        print(name, {view: (result[name][view]["zone_mae"], result[name][view]["global_mae"]) for view in ("plain", "tta")}, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
