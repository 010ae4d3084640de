"""How much do the augmentation draws alone move the pooled head's cross-validation?

``cv:pooled`` fits the logistic regression on 6 copies of each training image: the plain image, two
random draws of ``train.json``'s augmentation, and the mirrors of all three. The end-to-end experiment
(``end_to_end_scoring.py``) refitted the same classifier on other draws and scored 0.023 zone MAE worse
(0 of 5 folds lower). Is that what other draws do, or was something in that run worse?

This script caches the pooled zone vectors of the plain image and ``--draws`` seeded random draws (and
all their mirrors) of every public image once (``PooledFeatureCache``, resumable), then repeats
``cv:pooled`` (same folds, same C search) with disjoint pairs of draws: draws 1-2 (``cv:pooled``'s own,
seed 0), 3-4, 5-6, ... Each pair's out-of-fold predictions are compared with the first pair's and with
the committed ``cv_pooled_predictions.json`` (paired patient bootstrap).

    python bundle/scripts/draw_noise.py --data ../shared/data --cache WORK/draw_cache --out bundle/logs/draw_noise
        [--weights bundle/models/model.pt] [--draws 6]

About 12 s an image on two cores for the cache with 6 draws (about 28 min for the 138 images), then a few min
per pair of draws.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path


from monai_bsnet.cross_validation import compare_predictions, summarise_predictions
from monai_bsnet.data import brixia_public_datalist
from monai_bsnet.networks import BSNet, load_weights
from monai_bsnet.pooled_head import PooledFeatureCache, cross_validate_features, pooled_zone_features

REPO = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with brixia-public/")
    parser.add_argument("--cache", type=Path, required=True, help="where the pooled vectors are cached (resumable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=REPO / "bundle" / "models" / "model.pt")
    parser.add_argument("--draws", type=int, default=6, help="random draws per image (an even number: pairs of draws)")
    parser.add_argument("--baseline", type=Path, default=REPO / "bundle" / "logs" / "cv_pooled_predictions.json")
    parser.add_argument("--limit", type=int, default=None, help="the first N images only (tests)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items = brixia_public_datalist(args.data / "brixia-public")[: args.limit]
    weights_id = hashlib.sha256(args.weights.read_bytes()).hexdigest()
    cache = PooledFeatureCache(load_weights(BSNet(), args.weights), args.cache, args.draws, args.image_size, seed=0, weights_id=weights_id)
    cache.build(items)
    cached_seconds = time.perf_counter() - start
    features = pooled_zone_features(cache, items)
    args.out.mkdir(parents=True, exist_ok=True)
    result = {"n_images": len(items), "weights_sha256": weights_id, "cache": cache.settings, "cache_seconds": round(cached_seconds, 1), "pairs": {}, "comparisons": {}}
    baseline = json.loads(args.baseline.read_text()) if args.baseline.is_file() and args.limit is None else None
    first = None
    for pair in range(args.draws // 2):
        a, b = 2 * pair + 1, 2 * pair + 2  # draws a and b: copies 2a, 2a+1, 2b, 2b+1 beside the plain pair 0, 1
        name = f"draws {a}-{b}"
        rows, folds_log = cross_validate_features(items, features[:, [0, 1, 2 * a, 2 * a + 1, 2 * b, 2 * b + 1]], args.folds)
        chosen = [fold["chosen_C"] for fold in folds_log]
        (args.out / f"cv_pooled_draws{a}{b}_predictions.json").write_text(json.dumps(rows))
        summary = summarise_predictions(rows)
        result["pairs"][name] = {"chosen_C": chosen, **{form: {k: round(summary[form][k], 4) for k in ("zone_mae", "global_mae")} for form in ("plain", "tta")}}
        for reference_name, reference in (("draws 1-2", first), ("cv_pooled", baseline)):
            if reference is not None and reference is not rows:
                result["comparisons"][f"{name} vs {reference_name}"] = {key: compare_predictions(reference, rows, key) for key in ("probabilities", "probabilities_tta")}
        first = first or rows
        print(f"{name}: zone MAE {summary['plain']['zone_mae']:.4f} global {summary['plain']['global_mae']:.3f} (TTA {summary['tta']['zone_mae']:.4f} "
              f"{summary['tta']['global_mae']:.3f}), C {chosen}", flush=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "draw_noise.json").write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
