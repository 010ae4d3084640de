"""Small pieces the bundle's training configs call: stage preparation, splits, resuming."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
from monai.inferers import SimpleInferer
from sklearn.model_selection import GroupShuffleSplit

from monai_bsnet.networks.bsnet import BSNet
from monai_bsnet.networks.weights import load_weights
from monai_bsnet.transforms import mirror_average

__all__ = [
    "AutocastInferer",
    "MirrorZoneInferer",
    "cpu_has_bfloat16",
    "prepare_network",
    "train_val_split",
    "latest_checkpoint",
    "resume_handlers",
    "trainable_parameters",
    "BestValidationRecord",
]

logger = logging.getLogger(__name__)


class AutocastInferer(SimpleInferer):
    """MONAI's ``SimpleInferer`` with the forward pass under ``torch.autocast`` on the inputs' device,
    the outputs cast back to float32 so that losses and metrics are computed in full precision.

    Why: MONAI's trainers and evaluators autocast on CUDA only (their ``amp``), and a CPU with
    bfloat16 instructions (AVX-512 BF16, AMX) runs the network's convolutions about twice as fast in
    bfloat16 (``bundle/docs/experiments.md``, "Half-precision (bfloat16) training on the CPU").

    Args:
        dtype: the autocast type (``torch.bfloat16``); ``None`` runs in full precision, as ``SimpleInferer``.
    """

    def __init__(self, dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.dtype = dtype

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> Any:
        if self.dtype is None:
            return super().__call__(inputs, network, *args, **kwargs)
        with torch.autocast(inputs.device.type, dtype=self.dtype):
            outputs = super().__call__(inputs, network, *args, **kwargs)
        return _to_float32(outputs)


class MirrorZoneInferer(AutocastInferer):
    """Zone logits (B, 6, 4) with the mirror test-time augmentation that inference serves by default:
    the log of the mean of the image's zone probabilities and its left-right mirror's (zones swapped
    back), so that the evaluator's softmax gives what :class:`~monai_bsnet.inference.BrixiaPredictor`
    averages. For networks that return zone logits (:class:`~monai_bsnet.networks.ZoneScorer`).

    Args:
        dtype: the autocast type, as :class:`AutocastInferer`'s.
        mirror: False gives the image's own zone logits, as :class:`AutocastInferer` (``--tta false``).
    """

    def __init__(self, dtype: torch.dtype | None = None, mirror: bool = True) -> None:
        super().__init__(dtype)
        self.mirror = mirror

    def __call__(self, inputs: torch.Tensor, network: Any, *args: Any, **kwargs: Any) -> torch.Tensor:
        logits = super().__call__(inputs, network, *args, **kwargs)
        if not self.mirror:
            return logits
        mirrored = super().__call__(inputs.flip(-1), network, *args, **kwargs)
        probabilities = mirror_average(torch.softmax(logits.float(), -1), torch.softmax(mirrored.float(), -1))
        return torch.log(probabilities.clamp_min(torch.finfo(torch.float32).tiny))


def cpu_has_bfloat16() -> bool:
    """Whether this CPU has bfloat16 instructions (AVX-512 BF16 or AMX), on which :class:`AutocastInferer`
    with ``torch.bfloat16`` trains about twice as fast as float32; without them bfloat16 is emulated."""
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()


def _to_float32(outputs: Any) -> Any:
    if isinstance(outputs, torch.Tensor):
        return outputs.float() if outputs.is_floating_point() else outputs
    if isinstance(outputs, Mapping):
        return {key: _to_float32(value) for key, value in outputs.items()}
    if isinstance(outputs, tuple) and hasattr(outputs, "_fields"):  # a NamedTuple such as BSNetOutput
        return type(outputs)(*map(_to_float32, outputs))
    if isinstance(outputs, (list, tuple)):
        return type(outputs)(map(_to_float32, outputs))
    return outputs


def prepare_network(
    bsnet: BSNet, init_ckpt: str | os.PathLike | None = None, frozen_stages: Iterable[str] = (), required: bool = False
) -> BSNet:
    """Start a training stage: load the previous stage's checkpoint, then freeze the given stages.

    Args:
        bsnet: the network.
        init_ckpt: checkpoint of the previous stage ("from the part to the whole"); skipped with a
            warning when absent, unless ``required``.
        frozen_stages: stages whose weights this stage must not change.
        required: fail when ``init_ckpt`` is missing (a scoring stage on an untrained encoder and
            segmentation would learn on garbage masks).
    """
    if init_ckpt:
        if Path(init_ckpt).is_file():
            load_weights(bsnet, init_ckpt)
            logger.info("loaded %s", init_ckpt)
        elif required:
            raise FileNotFoundError(f"the previous stage's checkpoint {init_ckpt} is missing: train that stage first")
        else:
            logger.warning("no checkpoint at %s: this stage starts from random weights", init_ckpt)
    return bsnet.freeze(list(frozen_stages))


def trainable_parameters(network: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimiser should see: the frozen stages' are left out."""
    return [p for p in network.parameters() if p.requires_grad]


def patient_groups(datalist: Sequence[Mapping[str, Any]], group_key: str = "patient_id") -> list[str]:
    """The group of each item for patient-grouped splits: its patient id, or a group of its own where it has none."""
    return [str(item.get(group_key) or f"__item{i}") for i, item in enumerate(datalist)]


def train_val_split(
    datalist: Sequence[Mapping[str, Any]], val_fraction: float = 0.2, seed: int = 0, group_key: str = "patient_id"
) -> tuple[list[Mapping[str, Any]], list[Mapping[str, Any]]]:
    """Split a datalist into training and validation items, keeping each patient on one side.

    Items without ``group_key`` form groups of their own. ``val_fraction`` 0 returns all items for
    training and an empty validation list (for the final model trained on everything).
    """
    items = list(datalist)
    if val_fraction <= 0 or len(items) < 2:
        return items, []
    splitter = GroupShuffleSplit(n_splits=1, test_size=val_fraction, random_state=seed)
    train_index, val_index = next(splitter.split(items, groups=patient_groups(items, group_key)))
    return [items[i] for i in sorted(train_index)], [items[i] for i in sorted(val_index)]


def latest_checkpoint(checkpoint_dir: str | os.PathLike, prefix: str) -> Path | None:
    """The newest epoch checkpoint ``{prefix}_*epoch=N.pt`` that MONAI's ``CheckpointSaver`` left."""
    found = []
    for path in Path(checkpoint_dir).glob(f"{prefix}_*epoch=*.pt"):
        try:
            found.append((int(path.stem.rsplit("epoch=", 1)[1]), path))
        except ValueError:
            continue
    return max(found)[1] if found else None


def resume_handlers(checkpoint_dir: str | os.PathLike, prefix: str, load_dict: Mapping[str, Any]) -> list:
    """A ``CheckpointLoader`` for the trainer when an interrupted run left an epoch checkpoint behind.

    The loader restores network, optimiser, LR schedule and the trainer's epoch counter, so that
    ``trainer.run()`` goes on where the interrupted run stopped; with no checkpoint it returns [].
    """
    from monai.handlers import CheckpointLoader

    checkpoint = latest_checkpoint(checkpoint_dir, prefix)
    if checkpoint is None:
        return []
    logger.info("resuming from %s", checkpoint)
    # checkpoints written before the best-validation record existed lack it; ignite refuses a missing
    # key, so such a run resumes without it (and says what that costs) instead of not resuming at all
    saved = torch.load(checkpoint, map_location="cpu", mmap=True, weights_only=False).keys()
    missing = [k for k, v in load_dict.items() if k not in saved and isinstance(v, BestValidationRecord)]
    if missing:
        logger.warning("%s has no best-validation record (written by an older version): the first validation "
                       "after this resume may replace the best checkpoint even if an earlier epoch was better", checkpoint)
    load_dict = {k: v for k, v in load_dict.items() if k not in missing}
    return [CheckpointLoader(load_path=str(checkpoint), load_dict=load_dict, map_location="cpu")]


class BestValidationRecord:
    """The best validation metric of a run, kept in its epoch checkpoints so that a resumed run still
    compares against it.

    MONAI's evaluator keeps ``best_metric`` and ``best_metric_epoch`` in its engine state, and the
    ``CheckpointSaver`` that writes the best checkpoint keeps the score of that file; neither is part
    of the trainer's state. Without this record a resumed run starts both from nothing, and its first
    validation overwrites the best checkpoint even when the epochs before the restart were better.

    Args:
        evaluator: the validation engine.
        best_saver: the ``CheckpointSaver`` with ``save_key_metric=True`` that writes the best checkpoint.
        lower_is_better: the key metric improves downwards (the saver then ranks its negation).
    """

    def __init__(self, evaluator: Any, best_saver: Any, lower_is_better: bool = False) -> None:
        self.evaluator = evaluator
        self.best_saver = best_saver
        self.lower_is_better = lower_is_better

    def state_dict(self) -> dict[str, Any]:
        state = self.evaluator.state
        return {"best_metric": float(state.best_metric), "best_metric_epoch": int(state.best_metric_epoch)}

    def load_state_dict(self, state_dict: Mapping[str, Any]) -> None:
        self.evaluator.state.best_metric = state_dict["best_metric"]
        self.evaluator.state.best_metric_epoch = state_dict["best_metric_epoch"]
        if state_dict["best_metric_epoch"] > 0:  # -1: no validation had run
            score = -state_dict["best_metric"] if self.lower_is_better else state_dict["best_metric"]
            # ignite's Checkpoint state: (priority, file name) of each file it keeps; the saver's own
            # fixed file name (key_metric_filename) is what it removes and writes, whatever is here
            self.best_saver.load_state_dict({"_saved": [(score, "best")]})
