"""How often reduced precision changes BS-Net's ratings: ``--precision bfloat16`` against float32.

Runs the shipped weights through :class:`~monai_bsnet.inference.BrixiaPredictor`'s network call (the
path ``bsnet predict`` takes, autocast included) on every image of a folder, once in float32 and once
in each reduced precision, and prints, against float32: the fraction of zone scores and of global
scores that stay the same, the largest and the mean change of a zone probability, and the network time
per image. The single network pass, without the default mirror test-time augmentation, which
would only average two such passes. Writes JSON (default ``benchmarks/results/precision-<device>-<host>.json``).

    python benchmarks/precision_agreement.py [--images ../shared/data/brixia-public/images] [--device cpu]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np
from agreement import score_agreement, write_result

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    from monai_bsnet.cli import default_weights
    from monai_bsnet.inference import BrixiaPredictor, find_inputs
    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.transforms import LoadCXR, cxr_preprocessing

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "brixia-public" / "images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precisions", nargs="+", default=["bfloat16"])
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    paths = [found.path for found in find_inputs([args.images])]  # what `bsnet predict` would score there
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    load, preprocess = LoadCXR(), cxr_preprocessing()
    inputs = [preprocess(load(p)).as_tensor()[None] for p in paths]
    network = load_weights(BSNet(), default_weights())

    def run(precision: str) -> tuple[np.ndarray, float]:
        predictor = BrixiaPredictor(network, device=args.device, precision=precision, mirror_tta=False)
        start = time.perf_counter()
        probabilities = np.concatenate([predictor.forward(x)["zone_probabilities"].numpy() for x in inputs])
        return probabilities, (time.perf_counter() - start) / len(inputs)

    reference, reference_s = run("float32")
    result = {"images": str(args.images), "n_images": len(paths), "device": args.device, "host": platform.node(),
              "float32_network_s_per_image": reference_s}
    print(f"{'precision':<10}{'zone scores same':>18}{'global same':>13}{'max |dp|':>10}{'mean |dp|':>11}{'s/image':>9}")
    print(f"{'float32':<10}{'':>18}{'':>13}{'':>10}{'':>11}{reference_s:>9.3f}")
    for precision in args.precisions:
        probabilities, seconds = run(precision)
        row = {
            **score_agreement(reference, probabilities),
            "max_abs_probability_difference": float(np.abs(probabilities - reference).max()),
            "mean_abs_probability_difference": float(np.abs(probabilities - reference).mean()),
            "network_s_per_image": seconds,
        }
        result[precision] = row
        print(f"{precision:<10}{row['zone_score_agreement']:>18.4f}{row['global_score_agreement']:>13.4f}"
              f"{row['max_abs_probability_difference']:>10.4f}{row['mean_abs_probability_difference']:>11.5f}{seconds:>9.3f}")
    write_result(result, args.output, f"precision-{args.device}-{platform.node()}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
