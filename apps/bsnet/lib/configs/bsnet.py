"""Task config ``bsnet``: BS-Net's weights, infer tasks, trainer and active-learning strategy.

``--conf`` options (all optional):

=====================  ============================================================================
``weights``            base checkpoint (default: the bundle's ``bundle/models/model.pt``; missing:
                       random initialisation, loudly flagged)
``model_dir``          where fine-tuned models and training runs go (default: ``<app>/model``)
``lung_threshold``     lung probability threshold (default 0.5)
``precision``          ``float32`` (default), ``bfloat16``, ``float16``
``tta``                mirror test-time augmentation of the zone scores (default ``true``; ``false``: half the time)
``train_threads``      CPU threads of a training (default: all cores but one)
``method``             retraining: ``auto`` (default: ``refit`` for the shipped pooled zone
                       classifier, ``fine_tune`` for a BS-Net head), ``refit`` or ``fine_tune``
``max_epochs`` ...     defaults of the fine-tuning: ``max_epochs``, ``val_split``, ``learning_rate``,
                       ``image_size``, ``train_batch_size``, ``val_batch_size``
``explain_method``     ``gradcam`` (default) or ``occlusion``: the method of infer ``bsnet_explain``
``entropy_max_new``    images ``bsnet_entropy`` scores per call at most (default 32)
=====================  ============================================================================
"""

from __future__ import annotations

import logging
import os
from typing import Any

from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

from lib.activelearning.entropy import BrixiaEntropy
from lib.infers.bsnet import BrixiaExplainInfer, BrixiaZonesInfer, LungInfer
from lib.model import BrixiaModel, default_weights
from lib.trainers.bsnet import BrixiaScoringTrain, as_bool
from monai_bsnet.label_maps import BRIXIA_LABEL_COLORS, BRIXIA_LABELS

logger = logging.getLogger(__name__)

#: File name of the fine-tuned model the trainer publishes in ``model_dir``.
FINE_TUNED = "bsnet.pt"

_TRAIN_OPTIONS = {
    "method": str,
    "max_epochs": int,
    "val_split": float,
    "learning_rate": float,
    "image_size": int,
    "train_batch_size": int,
    "val_batch_size": int,
}


class BSNetConfig(TaskConfig):
    """The app's one model: BS-Net (zones map ``bsnet``, lung mask ``lung``)."""

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        super().init(name, model_dir, conf, planner, **kwargs)
        app_dir = kwargs.get("app_dir") or os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        self.labels = dict(BRIXIA_LABELS)
        self.label_colors = {k: list(v) for k, v in BRIXIA_LABEL_COLORS.items()}
        weights = conf.get("weights") or str(default_weights(app_dir))
        self.path = [os.path.abspath(weights), os.path.join(model_dir, FINE_TUNED)]
        self.model = BrixiaModel(
            self.path,
            lung_threshold=float(conf.get("lung_threshold", 0.5)),
            precision=conf.get("precision", "float32"),
            mirror_tta=as_bool(conf.get("tta", True)),
        )
        if self.model.current_path() is None:
            from lib.model import warn_random_weights

            warn_random_weights(self.path)
        logger.info("BS-Net weights: %s", self.model.current_path() or "random initialisation")

    def infer(self) -> dict[str, InferTask]:
        method = self.conf.get("explain_method", "gradcam")
        return {
            self.name: BrixiaZonesInfer(self.model),
            "lung": LungInfer(self.model),
            f"{self.name}_explain": BrixiaExplainInfer(self.model, method=method),
        }

    def trainer(self) -> TrainTask | None:
        threads = self.conf.get("train_threads")
        config = {k: cast(self.conf[k]) for k, cast in _TRAIN_OPTIONS.items() if self.conf.get(k)}
        return BrixiaScoringTrain(
            self.model,
            model_dir=os.path.join(self.model_dir, f"{self.name}_train"),
            threads=int(threads) if threads else max(1, (os.cpu_count() or 2) - 1),
            config=config,
        )

    def strategy(self) -> dict[str, Strategy]:
        return {f"{self.name}_entropy": BrixiaEntropy(self.model, int(self.conf.get("entropy_max_new", 32)))}
