"""Retraining the pooled head on a site's labels: which way keeps what it learned and learns the site's?

The MONAI Label app retrains the served model on the radiologists' corrections. This experiment
simulates a site on the folds of ``cv:pooled``: in each fold the training patients are split in two
halves, the "public" half (the prior: the regression fitted on it as ``cv:pooled`` fits it, with the
senior rater's scores) and the "site" half, of which the first N images (whole patients first, in a
seeded order) are the site's labelled images. The held-out fold is scored after each way of retraining:

- ``prior``: no retraining;
- ``fine_tune``: the app's gradient fine-tuning (``finetune_pooled_head.fine_tune``: AdamW at 1e-4, 20
  epochs, a patient-wise 20% validation split choosing the epoch);
- ``refit_towards``: :func:`monai_bsnet.pooled_head.refit_towards` the prior (the L2 penalty centred
  on the prior's weights), its strength chosen by :func:`~monai_bsnet.pooled_head.choose_refit_strength`
  on the site's images (0, keeping the prior, is a candidate);
- ``site_only``: the regression fitted on the site's images alone (its C chosen as ``cv:pooled`` does);
- ``refit_with_public``: fitted on the public half and the site's images together at the shipped C
  (0.001): the app's refit (:func:`~monai_bsnet.pooled_head.refit_final_pooled_head`), which has the
  public images' pooled vectors beside the shipped weights;
- ``refit_with_public_w<w>`` (``--site-weights``): the same, the site's samples weighted ``w`` times
  the public ones.

Two sites: one whose labels are the senior rater's (the held-out fold is scored against the senior),
and one whose labels are the junior rater's (scored against the junior: a site that rates differently
from the rater the prior learned from).

    python bundle/scripts/refit_pooled_head.py --data DATA --cache WORK/frozen_stages \\
        --out bundle/logs/refit_experiment/refit.json
    python bundle/scripts/refit_pooled_head.py --data DATA --cache DRAW_CACHE --copies 6 \\
        --methods prior refit_with_public --site-weights 2 4 8 --out bundle/logs/refit_experiment/site_weight_seed0.json

About 2 min to pool the cache of the 138 images, then a few minutes on two cores.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path

import numpy as np
from finetune_pooled_head import fine_tune
from pooled_experiments import experiment_parser, patient_order, pooled_public_images

from monai_bsnet.cross_validation import patient_fold_indices
from monai_bsnet.metrics import METRICS
from monai_bsnet.pooled_head import (
    choose_refit_strength, choose_regularisation, classifier_probabilities, fit_zone_regression, refit_towards, regression_to_classifier, zone_samples,
)
from monai_bsnet.training import train_val_split
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES

METHODS = ("prior", "fine_tune", "refit_towards", "site_only", "refit_with_public")
SHIPPED_C = 0.001


def halves(train_rows: np.ndarray, groups: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training images split by patient into the public half and the site half (site images in
    the seeded patient order, so that the first N are whole patients where N allows)."""
    ordered = patient_order(train_rows, groups, seed)
    patients = list(dict.fromkeys(groups[ordered]))
    public_patients = set(patients[: len(patients) // 2])
    public = np.array([i for i in ordered if groups[i] in public_patients])
    return public, np.array([i for i in ordered if groups[i] not in public_patients])


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    parser.add_argument("--site-sizes", type=int, nargs="+", default=[8, 16, 32, 0], help="0: the whole site half")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--site-weights", type=float, nargs="*", default=[], help="also refit_with_public with the site's samples weighted w times")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items, _, features, senior, groups = pooled_public_images(args)
    raters = {"senior": senior, "junior": np.array([item["label_junior"] for item in items])}
    row = {item["image"]: i for i, item in enumerate(items)}
    copies = range(features.shape[1])
    weighted = {f"refit_with_public_w{w:g}": w for w in args.site_weights}
    methods = ["prior", *(m for m in args.methods if m != "prior"), *weighted]  # the prior: what every refit starts from
    predictions = {(r, n, m): np.zeros((len(items), NUM_ZONES, NUM_SCORES)) for r in raters for n in args.site_sizes for m in methods}
    folds = []
    for k, (train_rows, test_rows) in enumerate(patient_fold_indices(items, args.folds)):
        public, site = halves(np.asarray(train_rows), groups, k)
        c_prior, _ = choose_regularisation(features, senior, groups, public)
        prior = regression_to_classifier(fit_zone_regression(*zone_samples(features, senior, public, copies), c_prior))
        for rater, labels in raters.items():
            for n in args.site_sizes:
                labelled = site[: n or len(site)]
                out = {m: predictions[rater, n, m] for m in methods}
                out["prior"][test_rows] = classifier_probabilities(prior, features, test_rows)
                log = {"fold": k, "rater": rater, "site_size": n, "site_images": len(labelled), "public_images": len(public), "prior_C": c_prior}

                if "fine_tune" in out:
                    tuned = copy.deepcopy(prior)
                    inner_train, inner_val = train_val_split([items[i] for i in labelled], 0.2, 0)
                    fine_tune(tuned, features, labels, [row[i["image"]] for i in inner_train], [row[i["image"]] for i in inner_val], 1e-4, 20, k)
                    out["fine_tune"][test_rows] = classifier_probabilities(tuned, features, test_rows)

                if "refit_towards" in out:
                    c_refit, refit_errors = choose_refit_strength(prior, features, labels, groups, labelled)
                    out["refit_towards"][test_rows] = classifier_probabilities(refit_towards(prior, *zone_samples(features, labels, labelled, copies), c_refit), features, test_rows)
                    log.update(refit_C=c_refit, refit_inner_zone_mae={str(c): e for c, e in refit_errors.items()})

                if "site_only" in out:
                    c_site, _ = choose_regularisation(features, labels, groups, labelled)
                    site_fit = fit_zone_regression(*zone_samples(features, labels, labelled, copies), c_site)
                    out["site_only"][test_rows] = classifier_probabilities(regression_to_classifier(site_fit), features, test_rows)
                    log["site_only_C"] = c_site

                x_public, y_public = zone_samples(features, senior, public, copies)
                x_site, y_site = zone_samples(features, labels, labelled, copies)
                x_both, y_both = np.concatenate([x_public, x_site]), np.concatenate([y_public, y_site])
                for method, w in {"refit_with_public": 1.0, **weighted}.items():
                    if method in out:
                        weights = np.concatenate([np.ones(len(y_public)), np.full(len(y_site), w)])
                        both = fit_zone_regression(x_both, y_both, SHIPPED_C, sample_weight=weights)
                        out[method][test_rows] = classifier_probabilities(regression_to_classifier(both), features, test_rows)

                log["zone_mae"] = {m: round(METRICS["zone_mae"](out[m][test_rows], labels[test_rows]), 4) for m in methods}
                folds.append(log)
                print(log, flush=True)
    per_fold = ("site_images", "refit_C") if "refit_towards" in methods else ("site_images",)
    summary = site_summary(raters, args.site_sizes, folds, predictions, methods, per_fold)
    write_site_result(args.out, {"n_images": len(items), "copies": features.shape[1], "site_sizes": args.site_sizes, "methods": methods,
                                 "summary": summary, "folds": folds, "seconds": round(time.perf_counter() - start, 1)}, methods)
    return 0


def site_key(rater: str, site_size: int) -> str:
    """The summary row of a simulated site: its rater and how many images it labelled (0: the whole site half)."""
    return f"{rater}, {f'{site_size} site images' if site_size else 'the whole site half'}"


def site_summary(
    raters: dict[str, np.ndarray], site_sizes: list[int], folds: list[dict], predictions: dict, methods: list[str], per_fold: tuple[str, ...] = ("site_images",)
) -> dict[str, dict]:
    """Per (rater, site size): each method's zone and global MAE over every held-out image (``predictions[rater,
    size, method]``: (N, 6, 4) probabilities or (N, 6) ratings), its zone MAE per fold and the folds' ``per_fold`` log entries."""
    summary = {}
    for rater, labels in raters.items():
        for n in site_sizes:
            runs = [f for f in folds if f["rater"] == rater and f["site_size"] == n]
            summary[site_key(rater, n)] = {
                **{f"{key}_per_fold": [f[key] for f in runs] for key in per_fold},
                **{m: {"zone_mae": round(METRICS["zone_mae"](predictions[rater, n, m], labels), 4),
                       "global_mae": round(METRICS["global_mae"](predictions[rater, n, m], labels), 3),
                       "zone_mae_per_fold": [f["zone_mae"][m] for f in runs]} for m in methods},
            }
    return summary


def write_site_result(out: Path, result: dict, methods: list[str]) -> None:
    """Write an experiment's result as JSON and print each row's zone and global MAE per method."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    for key, rows in result["summary"].items():
        print(key, {m: (v["zone_mae"], v["global_mae"]) for m, v in rows.items() if m in methods}, flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
