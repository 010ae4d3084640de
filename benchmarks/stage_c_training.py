"""Cost of one stage-c (scoring) training step: on-the-fly (``train.json``) against cached frozen outputs.

With the encoder, segmentation and alignment frozen, the bundle's training still runs them, and the
augmentation, for every image of every step. ``monai_bsnet.frozen_head`` runs them once per augmented
copy and trains the head alone. This prints, per training image:

- ``on_the_fly``: ``train.json``'s preprocessing and random transforms, then the whole network forward
  and the head's backward (what one bundle step costs, data loading in the same process);
- ``cached``: one step of :func:`monai_bsnet.frozen_head.train_head` (zone crops from cached outputs,
  pyramid and classifiers forward and backward, AdamW);
- ``cached_layer4``: the same with the encoder's ``layer4`` tuned too (recipe ``flip_layer4``: it is
  recomputed from the cached ``layer3`` output and trained with the head);
- ``cache_build``: building the cache, per image (``2 * (1 + draws)`` copies through the frozen stages),
  paid once for every fold and recipe.

Random weights (the compute is the same as with trained ones); the bundle's sample radiographs.

    python benchmarks/stage_c_training.py [--batch-size 8] [--repeats 3] [--draws 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def seconds(fn, repeats: int) -> float:
    fn()  # warm-up (allocations, oneDNN primitive creation)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> int:
    from monai.transforms import Compose

    from monai_bsnet.cross_validation import ScoringRecipe
    from monai_bsnet.frozen_head import CachedScoringStage, FrozenStageCache, train_config, train_head
    from monai_bsnet.networks import BSNet, ZoneScorer

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--draws", type=int, default=2)
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / f"stage_c-cpu-{platform.node()}.json")
    args = parser.parse_args()
    torch.manual_seed(0)
    samples = sorted((REPO / "bundle" / "sample").glob("*.jpg"))
    items = [{"image": str(samples[i % len(samples)]), "label": [0, 1, 2, 3, 2, 1]} for i in range(args.batch_size)]
    bsnet = BSNet().freeze(["encoder", "segmentation", "alignment"]).train()
    config = train_config(512)
    preprocessing = Compose(config.get_parsed_content("train#deterministic_transforms") + config.get_parsed_content("train#random_transforms"))
    scorer, loss_function = ZoneScorer(bsnet), config.get_parsed_content("loss")
    optimizer = torch.optim.AdamW([p for p in bsnet.parameters() if p.requires_grad], lr=1e-3)

    def on_the_fly_step():
        batch = [preprocessing(dict(item)) for item in items]
        images = torch.stack([torch.as_tensor(b["image"]) for b in batch])
        labels = torch.stack([torch.as_tensor(b["label"]) for b in batch])
        loss = loss_function(scorer(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    result = {"batch_size": args.batch_size, "image_size": 512, "torch_threads": torch.get_num_threads(), "processor": platform.processor()}
    result["on_the_fly_s_per_image"] = seconds(on_the_fly_step, args.repeats) / args.batch_size
    with tempfile.TemporaryDirectory() as folder:
        cache = FrozenStageCache(bsnet, folder, n_draws=args.draws)
        unique = [{"image": str(p), "label": [0] * 6} for p in samples]
        start = time.perf_counter()
        cache.build(unique)
        result["cache_build_s_per_image"] = (time.perf_counter() - start) / len(unique)
        outputs = cache.load([unique[i % len(unique)] for i in range(args.batch_size)])
    labels = torch.zeros(args.batch_size, 6, dtype=torch.long)
    recipe = ScoringRecipe(head_epochs=1, lateral_flip_prob=0.5, batch_size=args.batch_size)
    head = bsnet.scoring
    result["cached_s_per_image"] = seconds(lambda: train_head(head, outputs, labels, np.arange(args.batch_size), [], recipe), args.repeats) / args.batch_size
    tuned = CachedScoringStage(head, bsnet.encoder, tuned_stages=1)
    result["cached_layer4_s_per_image"] = seconds(lambda: train_head(tuned, outputs, labels, np.arange(args.batch_size), [], recipe), args.repeats) / args.batch_size
    result["speed_up"] = result["on_the_fly_s_per_image"] / result["cached_s_per_image"]
    print(f"{'stage c, seconds per training image':<40}{'':>10}")
    for key in ("on_the_fly_s_per_image", "cached_s_per_image", "cached_layer4_s_per_image", "cache_build_s_per_image", "speed_up"):
        print(f"{key:<40}{result[key]:>10.3f}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
