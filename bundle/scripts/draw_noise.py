"""How much do the augmentation draws alone move the pooled head's cross-validation?

``cv:pooled`` fits the logistic regression on 6 copies of each training image: the plain image, two
random draws of ``train.json``'s augmentation, and the mirrors of all three. The end-to-end experiment
(``end_to_end_scoring.py``) refitted the same classifier on other draws and scored 0.023 zone MAE worse
(0 of 5 folds lower). Is that what other draws do, or was something in that run worse?

This script caches the pooled zone vectors of the plain image and ``--draws`` seeded random draws (and
all their mirrors) of every public image once (``PooledFeatureCache``, resumable), then repeats
``cv:pooled`` (same folds, same C search) with disjoint pairs of draws: draws 1-2 (``cv:pooled``'s own,
seed 0), 3-4, 5-6, ... Each pair's out-of-fold predictions are compared with the first pair's and with
the committed ``cv_pooled_predictions.json`` (paired patient bootstrap). First of all, the same
cross-validation fitted on every copy at once (``all draws``: 2 + 2 x ``--draws`` copies), compared with
``cv_pooled`` and, for a ``--seed`` other than 0, with the fit on all of seed 0's draws (``--seed0-all-draws``).

    python bundle/scripts/draw_noise.py --data ../shared/data --cache WORK/draw_cache --out bundle/logs/draw_noise
        [--weights bundle/models/model.pt] [--draws 6] [--seed 1 --cache WORK/draw_cache_seed1 --out bundle/logs/draw_noise/seed1]

About 12 s an image on two cores for the cache with 6 draws (about 28 min for the 138 images), then a few min
per pair of draws and about 10 min for the fit on all of them.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from pooled_experiments import seeded_cache_parser, seeded_pooled_cache

from monai_bsnet.cross_validation import compare_predictions, summarise_predictions
from monai_bsnet.pooled_head import cross_validate_features, pooled_zone_features

REPO = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    parser = seeded_cache_parser(__doc__)
    parser.add_argument("--draws", type=int, default=6, help="random draws per image (an even number: pairs of draws)")
    parser.add_argument("--baseline", type=Path, default=REPO / "bundle" / "logs" / "cv_pooled_predictions.json")
    parser.add_argument("--seed0-all-draws", type=Path, default=REPO / "bundle" / "logs" / "augmentation_experiment" / "cv_pooled_draws6_predictions.json",
                        help="out-of-fold predictions of the fit on all of seed 0's draws, compared with another seed's")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items, cache = seeded_pooled_cache(args, args.draws)
    cached_seconds = time.perf_counter() - start
    features = pooled_zone_features(cache, items)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"n_images": len(items), "weights_sha256": cache.settings["weights"], "cache": cache.settings, "cache_seconds": round(cached_seconds, 1), "all_draws": {},
              "pairs": {}, "comparisons": {}}
    full_run = args.limit is None  # the committed predictions are of all 138 images
    baseline = json.loads(args.baseline.read_text()) if full_run and args.baseline.is_file() else None
    seed0_all = json.loads(args.seed0_all_draws.read_text()) if full_run and args.seed != 0 and args.seed0_all_draws.is_file() else None
    first_pair = None
    # every copy at once first, then each pair of draws beside the plain image (copies 2a, 2a+1, 2b, 2b+1 beside 0, 1)
    sets = [("all draws", "all", list(range(features.shape[1])))]
    sets += [(f"draws {a}-{b}", f"{a}{b}", [0, 1, 2 * a, 2 * a + 1, 2 * b, 2 * b + 1]) for a, b in ((2 * k + 1, 2 * k + 2) for k in range(args.draws // 2))]
    fitted = {}  # with --draws 2 "all draws" and "draws 1-2" are the same copies: fitted once
    for name, suffix, copies in sets:
        if tuple(copies) not in fitted:
            fitted[tuple(copies)] = cross_validate_features(items, features[:, copies], args.folds)
        rows, folds_log = fitted[tuple(copies)]
        chosen = [fold["chosen_C"] for fold in folds_log]
        (args.out / f"cv_pooled_draws{suffix}_predictions.json").write_text(json.dumps(rows))
        summary = summarise_predictions(rows)
        entry = {"n_copies": len(copies), "chosen_C": chosen, **{form: {k: round(summary[form][k], 4) for k in ("zone_mae", "global_mae")} for form in ("plain", "tta")}}
        if name == "all draws":
            result["all_draws"] = entry
        else:
            result["pairs"][name] = entry
        references = {"cv_pooled": baseline, "seed 0 all draws": seed0_all if name == "all draws" else None, "draws 1-2": first_pair}
        for reference_name, reference in references.items():
            if reference is not None:
                result["comparisons"][f"{name} vs {reference_name}"] = {key: compare_predictions(reference, rows, key) for key in ("probabilities", "probabilities_tta")}
        if name == "draws 1-2":
            first_pair = rows
        print(f"{name}: zone MAE {summary['plain']['zone_mae']:.4f} global {summary['plain']['global_mae']:.3f} (TTA {summary['tta']['zone_mae']:.4f} "
              f"{summary['tta']['global_mae']:.3f}), C {chosen}", flush=True)
        result["seconds"] = round(time.perf_counter() - start, 1)
        (args.out / "draw_noise.json").write_text(json.dumps(result, indent=1))  # after each set: a stopped run keeps what it did
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
