"""The nested cross-validation of the zone context stage (``monai_bsnet.zone_context``) on one set of draws.

A screen on stored out-of-fold predictions found that a second stage reading the whole image's zone
probabilities, its ratings held to the first stage's global score, lowered the zone MAE at the same
global MAE (``bundle/docs/experiments.md``, "A second stage that reads the whole image's zones?"). That
screen fitted the second stage on predictions whose first-stage fits had seen the held-out fold's labels.
This script runs it nested (:func:`monai_bsnet.pooled_head.cross_validate_features` ``with_context``) on a pooled cache
of the shipped stages with 2 seeded draws per image (the cache of ``draw_noise.py --draws 2``; seed 0's
draws are ``cv:pooled``'s own) and compares the served ratings with the pooled head's alone, plain and with
mirror TTA (paired patient bootstrap).

    python bundle/scripts/zone_context_experiment.py --data ../shared/data --cache WORK/cache_seed0 \\
        --out bundle/logs/zone_context/seed0 [--seed 0] [--weights bundle/models/model.pt] [--context-c chosen 0.1]

``--context-c`` adds stages of other strengths (``chosen``: chosen on each fold's own rows) to the same
first-stage fits, reported under ``other_context`` and compared with the served stage (``against_served``; its C
chosen on each fold's rows since 0.3.5, :data:`monai_bsnet.zone_context.SERVED_CONTEXT_C`; the logs of 0.3.4 and
before call it ``against_C1``, the strength served then).

About 7.5 min on two cores for the cache of the 138 images (resumable), then about 3 min of fits.
"""

from __future__ import annotations

import json
import time

from pooled_experiments import seeded_cache_parser, seeded_pooled_cache

from monai_bsnet.cross_validation import compare_predictions, summarise_predictions
from monai_bsnet.metrics import brixia_metrics
from monai_bsnet.pooled_head import context_variant_name, cross_validate_features, pooled_zone_features

#: (first stage's probabilities, the served ratings with the context stage), plain and with mirror TTA
FORMS = {"plain": ("probabilities", "scores_context"), "tta": ("probabilities_tta", "scores_context_tta")}


def main(argv=None) -> int:
    parser = seeded_cache_parser(__doc__)
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--context-c", nargs="*", default=[], type=lambda v: None if v == "chosen" else float(v),
                        help="other strengths of the context stage to rate with ('chosen': chosen on each fold's rows)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    items, cache = seeded_pooled_cache(args, 2)  # the cache of draw_noise.py --draws 2
    cache_seconds = time.perf_counter() - start
    rows, folds_log = cross_validate_features(items, pooled_zone_features(cache, items), args.folds, with_context=True,
                                              other_context_c=args.context_c)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "predictions.json").write_text(json.dumps(rows))
    first_stage = summarise_predictions(rows)
    result = {"n_images": len(items), "weights_sha256": cache.settings["weights"], "draw_seed": args.seed, "cache": cache.settings,
              "cache_seconds": round(cache_seconds, 1), "folds": folds_log, "first_stage": {}, "with_context": {}, "comparison": {}}
    for form, (probabilities, ratings) in FORMS.items():
        served = brixia_metrics([row[ratings] for row in rows], [row["label_senior"] for row in rows])
        result["first_stage"][form] = {k: first_stage[form][k] for k in ("zone_mae", "global_mae", "zone_accuracy")}
        result["with_context"][form] = {k: served[k] for k in ("zone_mae", "global_mae", "zone_accuracy", "kappa_linear", "kappa_quadratic", "zone_confusion_matrix")}
        result["comparison"][form] = compare_predictions(rows, rows, probabilities, n_resamples=args.resamples, candidate_key=ratings)
        print(f"{form}: first stage {first_stage[form]['zone_mae']:.4f} / {first_stage[form]['global_mae']:.3f}, "
              f"with context {served['zone_mae']:.4f} / {served['global_mae']:.3f}", flush=True)
    if args.context_c:
        result["other_context"] = {name: other_context_result(rows, name, args.resamples) for name in map(context_variant_name, args.context_c)}
    result["seconds"] = round(time.perf_counter() - start, 1)
    (args.out / "zone_context.json").write_text(json.dumps(result, indent=1))
    return 0


def other_context_result(rows: list[dict], name: str, resamples: int) -> dict:
    """The served ratings of the stage ``name`` (plain and TTA), measured and compared with the served stage's."""
    out = {}
    for form, (_, served_key) in FORMS.items():
        ratings = served_key.replace("scores_context", f"scores_context_{name}")
        served = brixia_metrics([row[ratings] for row in rows], [row["label_senior"] for row in rows])
        out[form] = {**{k: served[k] for k in ("zone_mae", "global_mae", "zone_accuracy", "kappa_quadratic")},
                     "against_served": compare_predictions(rows, rows, served_key, n_resamples=resamples, candidate_key=ratings)}
        print(f"{form}: context {name} {served['zone_mae']:.4f} / {served['global_mae']:.3f}", flush=True)
    return out


if __name__ == "__main__":
    raise SystemExit(main())
