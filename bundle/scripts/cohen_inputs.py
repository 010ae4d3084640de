"""Which inputs should the mapping to Cohen et al.'s extent and opacity take? (patient-grouped screen)

The mapping (``monai_bsnet.severity``) is a ridge regression on summaries of the zone probabilities. This
screen cross-validates it with the shipped inputs and with each candidate set, by patient (5 folds,
repeated over ``--repeats`` split seeds), on each stored set of out-of-fold TTA probabilities of the
shipped stages (``bundle/logs/draw_noise/``: three seeds x three pairs of draws), and writes the MAE of
each set and their means (``bundle/docs/experiments.md``, "Cohen et al.'s scores: measured by patient").

    python bundle/scripts/cohen_inputs.py --data ../shared/data --out bundle/logs/cohen_inputs.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from monai_bsnet.data import cohen_severity_datalist
from monai_bsnet.severity import FEATURES, cross_validated_mae

LOGS = Path(__file__).resolve().parents[1] / "logs"
CANDIDATES = {"shipped": FEATURES, "lung_max": (*FEATURES, "lung_max")}
SCORES = ("geographic_extent_mae", "opacity_mae")


def prediction_sets(logs: Path) -> dict[str, Path]:
    """The nine sets of out-of-fold predictions: seed 0's in ``draw_noise/``, seeds 1 and 2 in its sub-folders."""
    folders = {"seed 0": logs / "draw_noise", "seed 1": logs / "draw_noise" / "seed1", "seed 2": logs / "draw_noise" / "seed2"}
    return {f"{seed}, draws {d}": folder / f"cv_pooled_draws{d}_predictions.json" for seed, folder in folders.items() for d in ("12", "34", "56")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with brixia-public/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--logs", type=Path, default=LOGS)
    parser.add_argument("--repeats", type=int, default=20, help="split seeds of the 5-fold cross-validation")
    args = parser.parse_args(argv)
    root = args.data / "brixia-public"
    cohen = cohen_severity_datalist(root / "cohen-severity.csv", root / "images")
    extent, opacity = (np.array([d[k] for d in cohen]) for k in ("geographic_extent", "opacity"))
    groups = [d["patient_id"] or d["filename"] for d in cohen]
    per_set = {}
    for name, path in prediction_sets(args.logs).items():
        by_name = {row["filename"]: row["probabilities_tta"] for row in json.loads(path.read_text())}
        probs = np.array([by_name[d["filename"]] for d in cohen])
        per_set[name] = {}
        for candidate, features in CANDIDATES.items():
            scores = cross_validated_mae(probs, extent, opacity, groups, features=features, repeats=args.repeats)
            per_set[name][candidate] = {s: round(scores[s], 4) for s in SCORES}
        print(name, per_set[name], flush=True)
    mean = {c: {s: round(float(np.mean([v[c][s] for v in per_set.values()])), 4) for s in SCORES} for c in CANDIDATES}
    lower = {c: {s: sum(v[c][s] < v["shipped"][s] for v in per_set.values()) for s in SCORES} for c in CANDIDATES if c != "shipped"}
    result = {"n_images": len(cohen), "n_patients": len(set(groups)), "repeats": args.repeats, "inputs": {c: list(f) for c, f in CANDIDATES.items()},
              "mean": mean, "sets_lower_than_shipped": lower, "per_set": per_set}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("mean", mean, "lower", lower)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
