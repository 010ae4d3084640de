"""How much BS-Net's scores move when the same radiograph is stored another way (re-encoding robustness).

Each image of a folder is scored from its original file and from re-encoded copies of it:

- ``pack_512_q95``: the 512 x 512 8-bit JPEG (quality 95) that ``bundle/scripts/pack_training_data.py``
  makes for the GPU machine;
- ``full_q90``: the full-size image as an 8-bit JPEG of quality 90 (a typical export);
- ``png16_12bit``: the full-size image as a 16-bit PNG holding 12-bit values (0..4095), as some archives
  (PadChest, for one) distribute radiographs: the loader scales 16-bit files over 0..65535, so the picture
  fills only the lowest sixteenth of [0, 1].

The shipped weights, one plain pass (no mirror test-time augmentation), the network's zone
probabilities, with three histogram equalisations (256 bins each; the cumulative histogram rescaled so that
the first bin maps to 0 and interpolated between bin centres, as MONAI's ``HistogramNormalize`` does):

- ``image_range``: MONAI's ``HistogramNormalize``, bins over the image's own [min, max], as
  :func:`~monai_bsnet.transforms.cxr_preprocessing` does;
- ``fixed_range``: bins fixed over [0, 1], where every loaded image lies (a candidate, not adopted);
- ``zero_to_max``: bins over [0, the image's max], :class:`~monai_bsnet.transforms.EqualiseHistogram` (adopted
  by the rule for re-encoding, then not shipped: the served ratings of the stages fitted on it were worse).

All three run the shipped weights (fitted on ``image_range``'s pictures): what is compared is how far a
re-encoding moves the scores under each equalisation.
Where the image spans [0, 1] the three are the same. For each copy and each equalisation it prints the
absolute change of the expected global score per image (median, 95th percentile, maximum, and the image
with the maximum) and the fraction of zone scores and of global scores (sums of the zone medians) that stay
the same. Writes JSON (default ``benchmarks/results/reencoding-<host>.json``). ``bundle/docs/experiments.md``,
"Preprocessing: histogram equalisation with fixed bins?".

    python benchmarks/reencoding.py [--images ../shared/data/brixia-public/images] [--limit N]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from agreement import score_agreement, write_result
from monai.transforms import HistogramNormalize

from monai_bsnet.transforms import EqualiseHistogram, equalise_histogram

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bundle" / "scripts"))
COPIES = ("pack_512_q95", "full_q90", "png16_12bit")

EQUALISATIONS = {
    "image_range": lambda x: torch.as_tensor(HistogramNormalize(num_bins=256, min=0, max=1)(x)),  # the shipped one
    "fixed_range": EqualiseHistogram(hi=1.0),
    "zero_to_max": EqualiseHistogram(),
}


def main() -> int:
    from monai.transforms import Resize
    from pack_training_data import pack_image
    from PIL import Image

    from monai_bsnet.cli import default_weights
    from monai_bsnet.inference import BrixiaPredictor, find_inputs
    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.transforms import LoadCXR, cxr_preprocessing, read_cxr

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, default=REPO.parent / "shared" / "data" / "brixia-public" / "images")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    paths = [found.path for found in find_inputs([args.images])][: args.limit]
    if not paths:
        raise SystemExit(f"no images in {args.images}")
    load, resize = LoadCXR(), Resize((512, 512), mode="area")
    # image_range is what the library serves, and the equalisations differ only in their bins' range
    first = resize(load(paths[0])).as_tensor()
    if not torch.allclose(EQUALISATIONS["image_range"](first), cxr_preprocessing()(load(paths[0])).as_tensor(), atol=1e-5):
        raise SystemExit("image_range is no longer cxr_preprocessing's equalisation")
    own_range = torch.as_tensor(equalise_histogram(first, lo=float(first.min()), hi=float(first.max())), dtype=torch.float32)
    if not torch.allclose(own_range, EQUALISATIONS["image_range"](first), atol=1e-5):
        raise SystemExit("equalise_histogram() over the image's own range differs from MONAI's HistogramNormalize")
    predictor = BrixiaPredictor(load_weights(BSNet(), default_weights()), device="cpu", mirror_tta=False)

    def copies(path: str, folder: Path) -> dict[str, str]:
        """The original and its re-encoded copies, as files."""
        pack = folder / "pack_512_q95.jpg"
        pack_image(Path(path), pack)
        pixels, _ = read_cxr(path)
        full = folder / "full_q90.jpg"
        Image.fromarray(np.clip(np.asarray(pixels) * 255 + 0.5, 0, 255).astype(np.uint8)).save(full, format="JPEG", quality=90)
        png16 = folder / "png16_12bit.png"
        Image.fromarray(np.round(np.asarray(pixels) * 4095).astype(np.uint16)).save(png16)
        return {"original": path, "pack_512_q95": str(pack), "full_q90": str(full), "png16_12bit": str(png16)}

    probabilities: dict[tuple[str, str], list[np.ndarray]] = {}
    with tempfile.TemporaryDirectory() as tmp, torch.inference_mode():
        for path in paths:
            for copy, file in copies(path, Path(tmp)).items():
                image = resize(load(file)).as_tensor()
                for name, equalisation in EQUALISATIONS.items():
                    x = equalisation(image).reshape(1, 1, 512, 512)
                    probabilities.setdefault((name, copy), []).append(predictor.forward(x)["zone_probabilities"].numpy()[0])
    names = [Path(p).name for p in paths]
    result = {"images": str(args.images), "n_images": len(paths), "host": platform.node(), "weights": str(default_weights())}
    print(f"{'equalisation':<13}{'copy':<14}{'|d expected global|: median':>29}{'p95':>7}{'max':>7}  {'zone scores same':>16}{'global same':>12}  image with the max")
    for name in EQUALISATIONS:
        original = np.stack(probabilities[name, "original"])
        for copy in COPIES:
            other = np.stack(probabilities[name, copy])
            change = np.abs((other * np.arange(4)).sum((1, 2)) - (original * np.arange(4)).sum((1, 2)))
            row = {"expected_global_change_median": float(np.median(change)), "expected_global_change_p95": float(np.percentile(change, 95)),
                   "expected_global_change_max": float(change.max()), "image_with_max": names[int(change.argmax())],
                   **score_agreement(original, other),
                   "expected_global_change": {n: round(float(c), 4) for n, c in zip(names, change)}}
            result[f"{name}/{copy}"] = row
            print(f"{name:<13}{copy:<14}{row['expected_global_change_median']:>29.3f}{row['expected_global_change_p95']:>7.2f}{row['expected_global_change_max']:>7.2f}"
                  f"  {row['zone_score_agreement']:>16.3f}{row['global_score_agreement']:>12.3f}  {row['image_with_max']}")
    write_result(result, args.output, f"reencoding-{platform.node()}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
