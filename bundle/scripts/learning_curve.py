"""How do the pooled head's cross-validated errors fall with the number of scored training images?

On the folds of ``cv:pooled``, each fold's regression is fitted on the first N of its training images
(whole patients, in a seeded order; three orders per N) at the shipped fit's C, and scores the
held-out fold against the senior rater. The 138 out-of-fold predictions of each order give one zone
and one global MAE; the log keeps their mean and range per N. It measures how much another scored
image is worth, the planning number for "more scored images" (``bundle/docs/experiments.md``).

    python bundle/scripts/learning_curve.py --data DATA --cache WORK/frozen_stages \\
        --out bundle/logs/learning_curve/learning_curve.json

About 2 min to pool the cache of the 138 images, then a few minutes on two cores.
"""

from __future__ import annotations

import json
import time

import numpy as np

from pooled_experiments import experiment_parser, patient_order, pooled_public_images

from monai_bsnet.cross_validation import patient_fold_indices
from monai_bsnet.metrics import METRICS
from monai_bsnet.pooled_head import classifier_probabilities, fit_zone_regression, regression_to_classifier, zone_samples
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES

SHIPPED_C = 0.001


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[14, 28, 55, 83, 0], help="training images per fold; 0: all of them")
    parser.add_argument("--orders", type=int, default=3, help="seeded patient orders per size")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items, _, features, scores, groups = pooled_public_images(args)
    folds = list(patient_fold_indices(items, args.folds))
    curve = {}
    for n in args.sizes:
        zone, global_, used = [], [], []
        for order in range(args.orders):
            probabilities = np.zeros((len(items), NUM_ZONES, NUM_SCORES))
            for k, (train_rows, test_rows) in enumerate(folds):
                chosen = patient_order(np.asarray(train_rows), groups, 100 * order + k)[: n or len(train_rows)]
                regression = fit_zone_regression(*zone_samples(features, scores, chosen, range(features.shape[1])), SHIPPED_C)
                probabilities[test_rows] = classifier_probabilities(regression_to_classifier(regression), features, test_rows)
                used.append(len(chosen))
            zone.append(METRICS["zone_mae"](probabilities, scores))
            global_.append(METRICS["global_mae"](probabilities, scores))
        curve[str(n or "all")] = {"training_images_per_fold": [min(used), max(used)], "zone_mae_mean": round(float(np.mean(zone)), 4),
                                  "zone_mae_range": [round(min(zone), 4), round(max(zone), 4)], "global_mae_mean": round(float(np.mean(global_)), 3),
                                  "global_mae_range": [round(min(global_), 3), round(max(global_), 3)]}
        print(n or "all", curve[str(n or "all")], flush=True)
    result = {"n_images": len(items), "C": SHIPPED_C, "orders": args.orders, "reference": "label_senior", "curve": curve,
              "seconds": round(time.perf_counter() - start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
