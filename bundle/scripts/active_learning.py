"""Does the app's next-sample strategy (``bsnet_entropy``) choose better images to label than chance?

The MONAI Label app proposes the unlabelled image with the highest mean zone-score entropy. This
experiment simulates a site on the folds and halves of ``refit_pooled_head.py``: the public half's prior
(senior scores) is the first model, the site half is the pool of unlabelled images. A strategy labels the
pool 4 images at a time (``--batch``); after each batch the app's refit (public half and the labelled
images together, unweighted, C = 0.001) is the model the next choice reads. At each budget the held-out
fold is scored (mirror TTA, zone medians) against the site's rater.

- ``entropy``: the pool images with the highest mean normalised zone entropy under the current model's
  TTA probabilities (:func:`monai_bsnet.inference.single_image.mean_zone_entropy`, as the app computes it);
- ``random``: a seeded random order of the pool (the mean over ``--random-orders`` orders per fold).

    python bundle/scripts/active_learning.py --data ../shared/data --cache WORK/cache_seed0 \\
        --out bundle/logs/active_learning/seed0.json

The cache is a 2-draw pooled cache (``zone_context_experiment.py``'s, 6 copies).
"""

from __future__ import annotations

import time

import numpy as np
import torch
from pooled_experiments import experiment_parser, pooled_public_images
from refit_pooled_head import SHIPPED_C, halves, site_key, write_site_result

from monai_bsnet.cross_validation import patient_fold_indices
from monai_bsnet.inference.single_image import zone_entropy
from monai_bsnet.metrics import METRICS
from monai_bsnet.pooled_head import choose_regularisation, fit_zone_regression, regression_probabilities, zone_samples

STRATEGIES = ("entropy", "random")


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    parser.add_argument("--budgets", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--batch", type=int, default=4, help="images labelled between two refits")
    parser.add_argument("--random-orders", type=int, default=5)
    args = parser.parse_args(argv)
    if any(b % args.batch for b in args.budgets):
        parser.error(f"every budget must be a multiple of --batch ({args.batch})")
    start = time.perf_counter()
    items, _, features, senior, groups = pooled_public_images(args)
    raters = {"senior": senior, "junior": np.array([item["label_junior"] for item in items])}
    copies = range(features.shape[1])
    budgets = sorted(args.budgets)
    # out-of-fold TTA probabilities of every held-out image, per (rater, budget, strategy, order)
    runs = {(r, b, s): [np.zeros((len(items), *senior.shape[1:], 4)) for _ in range(1 if s == "entropy" else args.random_orders)]
            for r in raters for b in budgets for s in STRATEGIES}
    folds = []
    for k, (train_rows, test_rows) in enumerate(patient_fold_indices(items, args.folds)):
        public, pool = halves(np.asarray(train_rows), groups, k)
        c_prior, _ = choose_regularisation(features, senior, groups, public)
        prior = fit_zone_regression(*zone_samples(features, senior, public, copies), c_prior)
        for rater, labels in raters.items():
            own_labels = senior.copy()  # senior for the public half, the site's rater for the pool
            own_labels[pool] = labels[pool]

            def refit(labelled: list[int]):
                return fit_zone_regression(*zone_samples(features, own_labels, np.concatenate([public, labelled]), copies), SHIPPED_C)

            model = prior
            labelled: list[int] = []
            while len(labelled) < budgets[-1] and len(labelled) < len(pool):
                unlabelled = [i for i in pool if i not in labelled]
                _, tta = regression_probabilities(model, features, unlabelled)
                uncertainty = zone_entropy(torch.as_tensor(tta)).mean(-1).numpy()
                labelled += [unlabelled[i] for i in np.argsort(-uncertainty, kind="stable")[: args.batch]]
                model = refit(labelled)
                if len(labelled) in budgets:
                    runs[rater, len(labelled), "entropy"][0][test_rows] = regression_probabilities(model, features, test_rows)[1]
            for o in range(args.random_orders):
                order = list(np.random.default_rng(1000 * k + o).permutation(pool))
                for b in budgets:
                    runs[rater, b, "random"][o][test_rows] = regression_probabilities(refit(order[:b]), features, test_rows)[1]
            log = {"fold": k, "rater": rater, "public_images": len(public), "pool_images": len(pool), "prior_C": c_prior,
                   "entropy_order": [items[i]["filename"] for i in labelled],
                   "zone_mae": {f"{s}_{b}": round(float(np.mean([METRICS["zone_mae"](p[test_rows], labels[test_rows]) for p in runs[rater, b, s]])), 4)
                                for b in budgets for s in STRATEGIES}}
            folds.append(log)
            print({key: v for key, v in log.items() if key != "entropy_order"}, flush=True)
    summary = {}
    for rater, labels in raters.items():
        for b in budgets:
            summary[site_key(rater, b)] = {
                s: {m: round(float(np.mean([METRICS[m](p, labels) for p in runs[rater, b, s]])), 4) for m in ("zone_mae", "global_mae")}
                for s in STRATEGIES}
    write_site_result(args.out, {"n_images": len(items), "copies": features.shape[1], "budgets": budgets, "batch": args.batch,
                                 "random_orders": args.random_orders, "refit_C": SHIPPED_C, "summary": summary, "folds": folds,
                                 "seconds": round(time.perf_counter() - start, 1)}, list(STRATEGIES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
