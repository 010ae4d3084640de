"""Which zone ratings and Cohen scores should a model refitted in the MONAI Label app serve? (the stages
fitted on the probabilities of the shipped head, after a refit)

The shipped model rates zones with the zone context stage (``monai_bsnet.zone_context``), fitted on the
shipped pooled head's out-of-fold probabilities. The app's refit (``refit_with_public`` in
``refit_pooled_head.py``) publishes a new head. This experiment simulates it on the same folds, halves and
site orders as ``refit_pooled_head.py`` and rates the held-out fold three ways, all held to the refitted
head's global score (the sum of its zone medians, mirror TTA):

- ``median``: the refitted head's zone medians;
- ``keep``: the stage fitted for the head before the refit (on the inner out-of-fold TTA probabilities of
  the public half at the prior's C, senior scores), kept;
- ``refit``: a stage fitted again on inner out-of-fold TTA probabilities of the refit's own images (public
  half and site images at the refit's C), each with its own labels.

Cohen et al.'s extent and opacity (``monai_bsnet.severity``) of the held-out Cohen-scored images, from the
refitted head's probabilities, three ways (the log's ``cohen``):

- ``constant``: the public half's mean scores (the floor; the app serves null);
- ``keep``: the mapping fitted on the prior's inner out-of-fold TTA probabilities of the public half's
  Cohen-scored images, kept;
- ``refit``: the mapping fitted again on the refit's inner out-of-fold TTA probabilities (those of the
  ``refit`` stage above) of the same images (the app until stop 28: site images had no Cohen scores);
- ``site``: the same probabilities, fitted on the public half's Cohen-scored images and the labelled site
  images that have Cohen scores (a site that records them, rating like Cohen et al.'s raters).

    python bundle/scripts/refit_zone_context.py --data ../shared/data --cache WORK/cache_seed0 \\
        --out bundle/logs/refit_experiment/zone_context_seed0.json

The cache is a 2-draw pooled cache (``zone_context_experiment.py``'s, 6 copies). A few minutes per
fold on two cores.
"""

from __future__ import annotations

import time

import numpy as np
from pooled_experiments import experiment_parser, pooled_public_images
from refit_pooled_head import SHIPPED_C, halves, site_key, site_summary, write_site_result

from monai_bsnet.cross_validation import patient_fold_indices
from monai_bsnet.data import cohen_scores_of
from monai_bsnet.data.cohen import COHEN_SCORES
from monai_bsnet.metrics import METRICS
from monai_bsnet.zones import median_scores
from monai_bsnet.pooled_head import (
    fit_zone_regression, inner_out_of_fold_probabilities, regression_probabilities, regularisation_search, zone_samples,
)
from monai_bsnet.severity import CohenSeverityMapping
from monai_bsnet.zone_context import SERVED_CONTEXT_C, ZoneContextRating, ratings_with_sum

RATINGS = ("median", "keep", "refit")
COHEN = ("constant", "keep", "refit", "site")


def cohen_ratings(mappings: dict[str, CohenSeverityMapping], floor: np.ndarray, test_probabilities: np.ndarray) -> dict[str, np.ndarray]:
    """Each way's (N, 2) extent and opacity of the held-out images."""
    out = {"constant": np.broadcast_to(floor, (len(test_probabilities), 2))}
    for m, mapping in mappings.items():
        predicted = mapping.predict(test_probabilities)
        out[m] = np.stack([predicted[s] for s in COHEN_SCORES], axis=-1)
    return out


def fit_mapping(probabilities: np.ndarray, scores: np.ndarray) -> CohenSeverityMapping:
    return CohenSeverityMapping().fit(probabilities, scores[:, 0], scores[:, 1])


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    parser.add_argument("--site-sizes", type=int, nargs="+", default=[8, 16, 32, 0], help="0: the whole site half")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items, _, features, senior, groups = pooled_public_images(args)
    raters = {"senior": senior, "junior": np.array([item["label_junior"] for item in items])}
    copies = range(features.shape[1])
    ratings = {(r, n, m): np.zeros(senior.shape, dtype=int) for r in raters for n in args.site_sizes for m in RATINGS}
    cohen = cohen_scores_of(items, args.data / "brixia-public" / "cohen-severity.csv", args.data / "brixia-public" / "images")
    has_cohen = ~np.isnan(cohen[:, 0])
    cohen_predicted = {(r, n, m): np.full(cohen.shape, np.nan) for r in raters for n in args.site_sizes for m in COHEN}
    folds = []
    for k, (train_rows, test_rows) in enumerate(patient_fold_indices(items, args.folds)):
        public, site = halves(np.asarray(train_rows), groups, k)
        c_prior, _, (_, public_tta) = regularisation_search(features, senior, groups, public)
        kept = ZoneContextRating(SERVED_CONTEXT_C).fit(public_tta, senior[public], groups[public])
        # Cohen's scores: the public half's scored images (first in the refit's images, so the same positions)
        public_cohen = has_cohen[public]
        kept_mapping = fit_mapping(public_tta[public_cohen], cohen[public][public_cohen])
        floor = cohen[public][public_cohen].mean(0)
        test_cohen = has_cohen[test_rows]
        for rater, labels in raters.items():
            for n in args.site_sizes:
                labelled = site[: n or len(site)]
                refit_images = np.concatenate([public, labelled])
                own_labels = senior.copy()  # each image's own labels: senior for the public half, the site's rater for the site
                own_labels[labelled] = labels[labelled]
                refit = fit_zone_regression(*zone_samples(features, own_labels, refit_images, copies), SHIPPED_C)
                _, test_tta = regression_probabilities(refit, features, test_rows)
                totals = median_scores(test_tta).sum(-1)
                _, refit_tta = inner_out_of_fold_probabilities(features, own_labels, groups, refit_images, SHIPPED_C)
                stages = {"keep": kept, "refit": ZoneContextRating(SERVED_CONTEXT_C).fit(refit_tta, own_labels[refit_images], groups[refit_images])}
                out = {"median": median_scores(test_tta), **{m: ratings_with_sum(s.probabilities(test_tta), totals) for m, s in stages.items()}}
                for m in RATINGS:
                    ratings[rater, n, m][test_rows] = out[m]
                refit_cohen = has_cohen[refit_images]  # the public half's first, then the labelled site images'
                mappings = {"keep": kept_mapping, "refit": fit_mapping(refit_tta[: len(public)][public_cohen], cohen[public][public_cohen]),
                            "site": fit_mapping(refit_tta[refit_cohen], cohen[refit_images][refit_cohen])}
                for m, v in cohen_ratings(mappings, floor, test_tta[test_cohen]).items():
                    cohen_predicted[rater, n, m][np.asarray(test_rows)[test_cohen]] = v
                log = {"fold": k, "rater": rater, "site_size": n, "site_images": len(labelled), "public_images": len(public), "prior_C": c_prior,
                       "site_cohen_images": int(has_cohen[labelled].sum()),
                       "zone_mae": {m: round(METRICS["zone_mae"](out[m], labels[test_rows]), 4) for m in RATINGS}}
                folds.append(log)
                print(log, flush=True)
    summary = site_summary(raters, args.site_sizes, folds, ratings, list(RATINGS))
    cohen_summary = {
        site_key(r, n): {m: {f"{s}_mae": round(float(np.abs(cohen_predicted[r, n, m][has_cohen, j] - cohen[has_cohen, j]).mean()), 4)
                             for j, s in enumerate(COHEN_SCORES)} for m in COHEN}
        | {"site_cohen_images": sum(f["site_cohen_images"] for f in folds if f["rater"] == r and f["site_size"] == n)}
        for r in raters for n in args.site_sizes
    }
    write_site_result(args.out, {"n_images": len(items), "copies": features.shape[1], "site_sizes": args.site_sizes, "ratings": list(RATINGS),
                                 "refit_C": SHIPPED_C, "summary": summary, "folds": folds,
                                 "cohen": {"n_images": int(has_cohen.sum()), "ways": list(COHEN), "summary": cohen_summary},
                                 "seconds": round(time.perf_counter() - start, 1)}, list(RATINGS))
    for key, rows in cohen_summary.items():
        print("Cohen", key, rows, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
