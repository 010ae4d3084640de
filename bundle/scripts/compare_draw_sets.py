"""Are a candidate's frozen stages better than the shipped ones on every set of augmentation draws?

The pooled head's cross-validated scores move by about 0.02 zone MAE with the random augmentation draws it
is fitted on (``draw_noise.py``), so new frozen stages are judged on several sets of draws, each fitted
on the shipped stages and on the candidate's. For each set this compares the two out-of-fold predictions
(:func:`monai_bsnet.cross_validation.compare_predictions`: differences with a paired patient bootstrap),
plain and with mirror TTA, and applies the shipping rule of ``bundle/docs/experiments.md`` ("Stage a"):
with the served scores (``--key``, default TTA) the candidate's zone MAE is lower on every set, lower by
at least ``--zone-margin`` on their mean, and its mean global MAE is not higher by more than
``--global-margin``. ``--rule no_worse`` is the rule for stages shipped for another reason (a stage a that
reaches the Dice target): the candidate's mean zone MAE at most ``--zone-margin`` and its mean global MAE at
most ``--global-margin`` above the baseline's. The served ratings of ``zone_context_experiment.py``'s
``predictions.json`` (``scores_context``, ``scores_context_tta``: the zone context stage's) are compared too
where both files hold them, and can be judged (``--key scores_context_tta``).

    python bundle/scripts/compare_draw_sets.py \\
        --pair "seed 0" bundle/logs/cv_pooled_predictions.json WORK/logs/cv_pooled_predictions.json \\
        --pair "seed 1" bundle/logs/draw_noise/seed1/cv_pooled_draws12_predictions.json WORK/seed1/cv_pooled_draws12_predictions.json \\
        --out decision.json
    python bundle/scripts/compare_draw_sets.py --rule no_worse --zone-margin 0.005 --global-margin 0.05 \\
        --key scores_context_tta --pair "seed 0" bundle/logs/zone_context/seed0/predictions.json WORK/zc/seed0/predictions.json ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from monai_bsnet.cross_validation import compare_predictions

KEYS = ("probabilities", "probabilities_tta")
#: the zone context stage's ratings (zone scores), in the nested runs' predictions
SERVED_KEYS = ("scores_context", "scores_context_tta")


def mean_over_sets(comparisons: list[dict], metric: str) -> dict[str, float]:
    """The baseline's and the candidate's ``metric`` averaged over the sets of draws."""
    return {side: round(sum(c[metric][side] for c in comparisons) / len(comparisons), 4) for side in ("baseline", "candidate")}


def shipping_rule(comparisons: list[dict], zone_margin: float, global_margin: float, rule: str = "better") -> dict:
    """The rule on one key's comparisons (one per set of draws): every condition, and whether all hold.

    ``better``: lower zone MAE on every set and by ``zone_margin`` on the mean; ``no_worse``: the mean zone MAE
    at most ``zone_margin`` higher. Both: the mean global MAE at most ``global_margin`` higher."""
    zone, global_ = mean_over_sets(comparisons, "zone_mae"), mean_over_sets(comparisons, "global_mae")
    if rule == "better":
        conditions = {
            "zone_mae_lower_on_every_set": all(c["zone_mae"]["candidate"] < c["zone_mae"]["baseline"] for c in comparisons),
            f"mean_zone_mae_at_least_{zone_margin}_lower": zone["candidate"] <= zone["baseline"] - zone_margin,
        }
    elif rule == "no_worse":
        conditions = {f"mean_zone_mae_at_most_{zone_margin}_higher": zone["candidate"] <= zone["baseline"] + zone_margin}
    else:
        raise ValueError(f"unknown rule {rule!r}: 'better' or 'no_worse'")
    conditions[f"mean_global_mae_at_most_{global_margin}_higher"] = global_["candidate"] <= global_["baseline"] + global_margin
    return {"rule": rule, "n_sets": len(comparisons), "mean_zone_mae": zone, "mean_global_mae": global_, **conditions, "passes": all(conditions.values())}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pair", nargs=3, action="append", required=True, metavar=("LABEL", "BASELINE", "CANDIDATE"),
                        help="one set of draws: its label and the two out-of-fold prediction files fitted on it")
    parser.add_argument("--key", choices=KEYS + SERVED_KEYS, default="probabilities_tta",
                        help="the scores the rule judges (default: the pooled head's, as served before the zone context stage)")
    parser.add_argument("--rule", choices=("better", "no_worse"), default="better")
    parser.add_argument("--zone-margin", type=float, default=0.010)
    parser.add_argument("--global-margin", type=float, default=0.03)
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--out", type=Path, default=None, help="where to write the comparisons and the rule (JSON)")
    args = parser.parse_args(argv)
    result = {"pairs": {}, "rule": {}}
    for label, baseline, candidate in args.pair:
        rows = [json.loads(Path(path).read_text()) for path in (baseline, candidate)]
        keys = KEYS + tuple(key for key in SERVED_KEYS if all(key in side[0] for side in rows))
        if args.key not in keys:
            parser.error(f"{baseline} or {candidate} holds no {args.key!r}")
        result["pairs"][label] = {"baseline": baseline, "candidate": candidate,
                                  **{key: compare_predictions(*rows, key, n_resamples=args.resamples) for key in keys}}
    print("| draws | scores | zone MAE: baseline / candidate (difference, 95% interval) | global MAE: baseline / candidate (difference) |")
    print("|---|---|---|---|")
    for label, pair in result["pairs"].items():
        for key in (k for k in KEYS + SERVED_KEYS if k in pair):
            z, g = pair[key]["zone_mae"], pair[key]["global_mae"]
            print(f"| {label} | {key} | {z['baseline']:.3f} / {z['candidate']:.3f} ({z['difference']:+.3f}; {z['ci95'][0]:+.3f}, "
                  f"{z['ci95'][1]:+.3f}) | {g['baseline']:.2f} / {g['candidate']:.2f} ({g['difference']:+.2f}) |")
    result["rule"] = {"key": args.key, **shipping_rule([pair[args.key] for pair in result["pairs"].values()], args.zone_margin, args.global_margin, args.rule)}
    print(json.dumps(result["rule"], indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
