"""What the experiments on the pooled head's cached features share (``finetune_pooled_head.py``,
``refit_pooled_head.py``, ``learning_curve.py``, ``zone_probe.py``): their command line, their data
(the public images' pooled zone vectors, read from a cache ``train_recipe.py`` built) and a seeded
patient order; and, for those that build a seeded cache of their own (``draw_noise.py``,
``zone_context_experiment.py``), its command line and the cache."""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from monai_bsnet.data import brixia_public_datalist
from monai_bsnet.frozen_head import FrozenStageCache
from monai_bsnet.networks import BSNet, load_weights
from monai_bsnet.networks.scoring import ZonePooling
from monai_bsnet.pooled_head import PooledFeatureCache, pooled_zone_features, scores_and_groups
from monai_bsnet.zones import NUM_ZONES

#: The shipped weights, whose frozen stages the seeded caches pool by default.
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "model.pt"


def experiment_parser(description: str) -> argparse.ArgumentParser:
    """The options every such experiment has: ``--data``, ``--cache``, ``--out``, ``--folds``, ``--limit``, ``--copies``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with brixia-public/")
    parser.add_argument("--cache", type=Path, required=True, help="a cache train_recipe.py built: WORK/pooled_stages (cv:pooled) or WORK/frozen_stages (--schedule cpu_cached)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="the first N images only (tests)")
    parser.add_argument("--copies", type=int, default=None, help="the first N cached copies only (6 of a draw_noise.py cache: plain, 2 draws, mirrors)")
    return parser


def seeded_cache_parser(description: str) -> argparse.ArgumentParser:
    """The options of an experiment that builds its own seeded pooled cache of the public images:
    ``--data``, ``--cache``, ``--out``, ``--weights``, ``--seed``, ``--limit``, ``--image-size``, ``--folds``."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="folder with brixia-public/")
    parser.add_argument("--cache", type=Path, required=True, help="where the pooled vectors are cached (resumable)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--weights", type=Path, default=SHIPPED_WEIGHTS)
    parser.add_argument("--seed", type=int, default=0, help="of the draws (0: cv:pooled's own)")
    parser.add_argument("--limit", type=int, default=None, help="the first N images only (tests)")
    parser.add_argument("--image-size", type=int, default=512)
    parser.add_argument("--lung-image-size", type=int, default=None,
                        help="compute the lung map and theta at this side and only the pooled encoder features at --image-size "
                             "(TwoPassPooledCache; default: everything at --image-size)")
    parser.add_argument("--folds", type=int, default=5)
    return parser


class TwoPassPooledCache(PooledFeatureCache):
    """A pooled cache whose lung map and alignment come from the copy shrunk to ``lung_size`` (area
    interpolation), and whose pooled zone vectors come from the encoder's features of the copy at the
    cache's own side: the served lung mask stays that of the side the segmentation was trained at, while the
    scores read finer features (``bundle/docs/experiments.md``, "the network's input at 640 px")."""

    def __init__(self, *args: Any, lung_size: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lung_size = lung_size

    def record(self, images: torch.Tensor) -> dict[str, Any]:  # under build's inference mode
        small = F.interpolate(images, size=(self.lung_size, self.lung_size), mode="area")
        _, _, theta, aligned_lung = self.bsnet.scoring_inputs(small)
        crops = self.bsnet.scoring.zone_crops(self.bsnet.encoder(images)[1:], theta, aligned_lung)
        return {"pooled": ZonePooling()(crops).view(images.shape[0], NUM_ZONES, -1).cpu()}


def seeded_pooled_cache(args: argparse.Namespace, n_draws: int) -> tuple[list[dict[str, Any]], PooledFeatureCache]:
    """The brixia-public items (the first ``--limit``) and their pooled cache of ``--weights`` with
    ``n_draws`` draws of seed ``--seed``, built (resumable; the weights' SHA-256 stamps the folder)."""
    items = brixia_public_datalist(args.data / "brixia-public")[: args.limit]
    weights_id = hashlib.sha256(args.weights.read_bytes()).hexdigest()
    network = load_weights(BSNet(), args.weights)
    lung_size = args.lung_image_size
    if lung_size and lung_size != args.image_size:  # the folder's stamp says the vectors were computed in two passes
        cache = TwoPassPooledCache(network, args.cache, n_draws, args.image_size, seed=args.seed, weights_id=f"{weights_id}+lung{lung_size}", lung_size=lung_size)
    else:
        cache = PooledFeatureCache(network, args.cache, n_draws, args.image_size, seed=args.seed, weights_id=weights_id)
    cache.build(items)
    return items, cache


def pooled_public_images(args: argparse.Namespace) -> tuple[list[dict[str, Any]], FrozenStageCache, np.ndarray, np.ndarray, np.ndarray]:
    """The brixia-public items, their cache, their pooled zone vectors (N, V, 6, 1920; the first ``--copies``
    of the cached copies), scores and patient groups."""
    items = brixia_public_datalist(args.data / "brixia-public")[: args.limit]
    cache = FrozenStageCache.built(args.cache)  # either kind: pooled_zone_features reads what each file holds
    scores, groups = scores_and_groups(items)
    return items, cache, pooled_zone_features(cache, items)[:, : args.copies], scores, groups


def patient_order(rows: np.ndarray, groups: np.ndarray, seed: int) -> np.ndarray:
    """``rows`` reordered patient by patient, the patients in a seeded order."""
    patients = np.random.default_rng(seed).permutation(sorted(set(groups[rows])))
    return np.concatenate([rows[groups[rows] == p] for p in patients])
