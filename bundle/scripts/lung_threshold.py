"""Which probability threshold should the served lung mask use? (chosen on validation images, judged on test)

The served lung mask is the network's lung map, cleaned (two largest regions, holes filled) at a
threshold, 0.5 by default. The threshold shapes only the served mask, never the scores. This computes
the cleaned mean Dice at each threshold of a grid on stage a's validation images (``train_val_split`` of
lungseg's training split, fraction 0.1, seed 0, as ``train_segmentation.json`` made it), chooses the best
(ties: the one nearest 0.5), and reports every threshold's Dice on the 45 test images beside it
(``bundle/docs/experiments.md``, "The served lung mask's threshold").

    python bundle/scripts/lung_threshold.py --data ../shared/data --out bundle/logs/lung_threshold.json

About 2 min per 45 images on two cores.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from train_recipe import _dice_summary, lung_maps

from monai_bsnet.data import lungseg_datalist
from monai_bsnet.metrics import lung_dice
from monai_bsnet.training import train_val_split
from monai_bsnet.transforms import clean_lung_probability

SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "model.pt"


def cleaned_dice(args, items: list[dict], thresholds: list[float]) -> np.ndarray:
    """(thresholds, images) Dice of the cleaned lung mask at each threshold."""
    dice = []
    for lung, mask in lung_maps(args, args.weights, args.image_size, items):
        dice.append([float(lung_dice(clean_lung_probability(lung[0], t)[None], mask, threshold=t)[0]) for t in thresholds])
    return np.array(dice).T


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with lungseg/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--thresholds", type=float, nargs="+", default=[round(0.30 + 0.05 * i, 2) for i in range(9)])
    parser.add_argument("--limit", type=int, default=None, help="the first N images of each set only (tests)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    thresholds = sorted(set(args.thresholds) | {0.5})
    _, validation = train_val_split(lungseg_datalist(args.data / "lungseg", split="train"), 0.1, 0)
    sets = {"validation": validation[: args.limit], "test": lungseg_datalist(args.data / "lungseg", split="test")[: args.limit]}
    dice = {name: cleaned_dice(args, items, thresholds) for name, items in sets.items()}
    means = dice["validation"].mean(1)
    chosen = min((t for t, m in zip(thresholds, means) if m == means.max()), key=lambda t: abs(t - 0.5))
    per_threshold = {f"{t:.2f}": {name: {"n": d.shape[1], **_dice_summary(list(d[i]))} for name, d in dice.items()} for i, t in enumerate(thresholds)}
    result = {"weights": str(args.weights), "chosen_on_validation": chosen, "cleaned": per_threshold,
              "test_difference_from_0.5": {k: per_threshold[f"{chosen:.2f}"]["test"][k] - per_threshold["0.50"]["test"][k] for k in ("dice_mean", "dice_min")},
              "seconds": round(time.perf_counter() - start, 1)}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k != "cleaned"}), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
