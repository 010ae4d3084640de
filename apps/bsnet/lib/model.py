"""The BS-Net the app serves: which checkpoint, loaded once per device, reloaded when training publishes.

The infer tasks, the active-learning strategy and the save-label hook all score images with the same
network, so they share one :class:`BrixiaModel`. Checkpoints, in order of preference:

1. the app's fine-tuned model (``<model_dir>/bsnet.pt``), published by the trainer;
2. the base weights (``--conf weights PATH``, default the bundle's ``bundle/models/model.pt``);
3. none: a randomly initialised BS-Net, seeded so that every process (server, trainer) builds the
   same one, with a loud warning and the quality flag ``random_weights`` on every result.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import torch

import monai_bsnet
from monai_bsnet.inference.predictor import BrixiaPredictor
from monai_bsnet.networks import BSNet, load_weights
from monai_bsnet.severity import mapping_beside
from monai_bsnet.zone_context import rating_beside

logger = logging.getLogger(__name__)

#: Seed of the random network used when no checkpoint exists (same network in every process).
RANDOM_INIT_SEED = 0
#: Quality flag added to every result scored by a random network.
RANDOM_WEIGHTS_FLAG = "random_weights"


def default_weights(app_dir: str | os.PathLike) -> Path:
    """The bundle's checkpoint, ``bundle/models/model.pt`` of the repository holding the app (or the package)."""
    for root in (Path(app_dir).resolve().parents[1], Path(monai_bsnet.__file__).resolve().parents[1]):
        candidate = root / "bundle" / "models" / "model.pt"
        if candidate.parent.is_dir():
            return candidate
    return Path(app_dir).resolve().parents[1] / "bundle" / "models" / "model.pt"


def build_network(weights: str | os.PathLike | None) -> BSNet:
    """A BS-Net with ``weights`` loaded, or the seeded random one when ``weights`` is None."""
    if weights is None:
        with torch.random.fork_rng(devices=[]):  # seed without disturbing the caller's random state
            torch.manual_seed(RANDOM_INIT_SEED)
            return BSNet()
    return load_weights(BSNet(), weights)


def warn_random_weights(paths: list[str]) -> None:
    """The loud warning for a server or trainer running without weights."""
    bar = "!" * 100
    logger.warning(
        "\n%s\nNO BS-NET WEIGHTS FOUND (looked for: %s).\nThe app runs a RANDOMLY INITIALISED network: its scores "
        "mean nothing. Every result carries the quality flag '%s'.\nTrain the bundle (bsnet train ...) or pass "
        "--conf weights PATH.\n%s",
        bar, ", ".join(paths), RANDOM_WEIGHTS_FLAG, bar,
    )


class BrixiaModel:
    """The served BS-Net: one predictor per device, rebuilt when the chosen checkpoint file changes.

    Args:
        paths: checkpoints in increasing preference (base weights, then the fine-tuned model); the last
            one that exists is used.
        lung_threshold: lung probability threshold of the masks.
        precision: network precision (``float32``, ``bfloat16``, ``float16``).
        mirror_tta: score each image and its mirror and average the zone probabilities
            (:class:`~monai_bsnet.inference.BrixiaPredictor`'s ``mirror_tta``).
    """

    def __init__(self, paths: list[str], lung_threshold: float = 0.5, precision: str = "float32", mirror_tta: bool = True) -> None:
        self.paths = [str(p) for p in paths]
        self.lung_threshold = lung_threshold
        self.precision = precision
        self.mirror_tta = mirror_tta
        self._lock = threading.Lock()
        self._cache: dict[str, tuple[BrixiaPredictor, dict[str, Any]]] = {}
        self._warned = False

    def current_path(self) -> str | None:
        """The checkpoint that would be used now (None: random weights)."""
        for path in reversed(self.paths):
            if path and os.path.isfile(path):
                return path
        return None

    def key(self) -> str:
        """Identifies the current weights (path and modification time): cached results of another key are stale."""
        path = self.current_path()
        return "random" if path is None else f"{path}@{os.stat(path).st_mtime_ns}"

    def predictor(self, device: str = "cpu") -> tuple[BrixiaPredictor, dict[str, Any]]:
        """The predictor for ``device`` and a description of its weights (path, key, fine-tuned, random)."""
        with self._lock:
            key = self.key()
            cached = self._cache.get(device)
            if cached is not None and cached[1]["key"] == key:
                return cached
            path = self.current_path()
            try:
                network = build_network(path)
            except Exception:
                # a checkpoint being written right now, or a broken one: keep serving the previous model
                if cached is not None:
                    logger.exception("could not load %s; still serving %s", path, cached[1]["weights"])
                    return cached
                raise
            if path is None and not self._warned:
                warn_random_weights(self.paths)
                self._warned = True
            info = {
                "key": key,
                "weights": path or "random initialisation",
                "fine_tuned": path is not None and path == self.paths[-1] and len(self.paths) > 1,
                "random": path is None,
            }
            version = monai_bsnet.__version__ + ("+fine-tuned" if info["fine_tuned"] else "")
            # the zone context stage fitted for these weights, if one lies beside them: the shipped weights
            # have one, a refit published by the trainer its own; a stage fitted for another scoring stage
            # (a fine-tuned model published over a refit) is refused, and the zones are rated by their medians
            predictor = BrixiaPredictor(
                network, device=device, lung_threshold=self.lung_threshold, precision=self.precision, mirror_tta=self.mirror_tta,
                model_name="BS-Net (monai-bsnet, MONAI Label app)", model_version=version,
                zone_context=rating_beside(path, network) if path is not None else None,
                # Cohen et al.'s extent and opacity, from the mapping fitted for these weights (the shipped
                # ones have one, a refit its own; otherwise the records hold null, as bsnet predict's would)
                cohen_mapping=mapping_beside(path, network) if path is not None else None,
            )
            logger.info("BS-Net for %s: %s", device, info["weights"])
            self._cache[device] = (predictor, info)
            return predictor, info
