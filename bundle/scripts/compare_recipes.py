"""Is one scoring recipe better than another, or is the difference noise? Compare cross-validations.

Reads the out-of-fold predictions that ``train_recipe.py cv:VARIANT`` leaves in the logs folder
(``cv_<variant>_predictions.json``, also in its sub-folders of side experiments) and compares each with
a baseline run on the same images: the difference of zone MAE and global MAE, with a 95% interval from
a paired bootstrap over patients (:func:`monai_bsnet.cross_validation.compare_predictions`), and the
number of folds in which it is lower; rows "+ TTA" compare both runs with test-time mirroring. Writes
the comparison as JSON and prints a Markdown table. With ``--tta-effect`` each run is compared with itself
instead: its scores with test-time mirroring against its plain scores (does the mirror help this run?).

    python bundle/scripts/compare_recipes.py --logs bundle/logs --baseline cv_head --out bundle/logs/recipe_comparison.json
    python bundle/scripts/compare_recipes.py --logs bundle/logs --tta-effect --out bundle/logs/tta_effect.json

An interval that holds 0 means the 138 images cannot tell the two recipes apart; it does not include
the noise of training itself (runs of one recipe with other training seeds show that).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from monai_bsnet.cross_validation import compare_predictions

SUFFIX = "_predictions.json"


def runs(logs: Path) -> dict[str, Path]:
    """Every cross-validation's out-of-fold predictions under ``logs``, named by their path without the suffix."""
    found = sorted(logs.rglob(f"cv_*{SUFFIX}"))
    return {str(path.relative_to(logs))[: -len(SUFFIX)]: path for path in found}


def print_table(results: dict, baseline: str) -> None:
    print(f"| run | zone MAE | difference to {baseline} (95% interval) | folds lower | global MAE | difference (95% interval) |")
    print("|---|---|---|---|---|---|")
    for label, r in results.items():
        z, g = r["zone_mae"], r["global_mae"]
        print(f"| {label} | {z['candidate']:.3f} | {z['difference']:+.3f} ({z['ci95'][0]:+.3f}, {z['ci95'][1]:+.3f}) | "
              f"{z['folds_lower']} of {z['n_folds']} | {g['candidate']:.2f} | {g['difference']:+.2f} ({g['ci95'][0]:+.2f}, {g['ci95'][1]:+.2f}) |")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True, help="train_recipe.py's logs folder")
    parser.add_argument("--baseline", default="cv_head", help="the run the others are compared with (a name the table lists)")
    parser.add_argument("--out", type=Path, default=None, help="where to write the comparison (JSON)")
    parser.add_argument("--resamples", type=int, default=10000)
    parser.add_argument("--tta-effect", action="store_true", help="each run's test-time mirroring against its own plain scores")
    args = parser.parse_args(argv)
    found = runs(args.logs)
    results = {}
    if args.tta_effect:
        baseline_name = "each run's plain scores"
        for name, path in found.items():
            rows = json.loads(path.read_text())
            mirrored = [{**row, "probabilities": row["probabilities_tta"]} for row in rows]
            results[f"{name} + TTA"] = compare_predictions(rows, mirrored, n_resamples=args.resamples)
    else:
        if args.baseline not in found:
            raise SystemExit(f"no {args.baseline}{SUFFIX} under {args.logs}; found: {', '.join(found) or 'none'}")
        baseline_name, baseline = args.baseline, json.loads(found[args.baseline].read_text())
        for name, path in found.items():
            if name == args.baseline:
                continue
            candidate = json.loads(path.read_text())
            for key, label in (("probabilities", name), ("probabilities_tta", f"{name} + TTA")):
                results[label] = compare_predictions(baseline, candidate, key=key, n_resamples=args.resamples)
    print_table(results, baseline_name)
    if args.out:
        args.out.write_text(json.dumps({"baseline": baseline_name, "comparisons": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
