"""Loading BS-Net weights from the checkpoints that training and the bundle write."""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
import torch.nn as nn

from monai_bsnet.networks.bsnet import BSNet

T = TypeVar("T")
logger = logging.getLogger(__name__)

__all__ = ["load_weights", "state_dict_from_checkpoint", "zone_classifier_of", "stage_fingerprint", "fitted_file_beside"]


def state_dict_from_checkpoint(path: str | os.PathLike, key: str | None = None) -> dict[str, torch.Tensor]:
    """The network state dict stored in ``path``, as float32 tensors.

    Accepts a plain state dict (``bundle/models/model.pt``, possibly stored in half precision to stay
    small) and the dictionaries of MONAI's ``CheckpointSaver`` (``{"network": ..., "optimizer": ...}``;
    ``key`` picks the entry, default: ``"network"`` or ``"model"`` when present). Keys of a network
    saved inside a stage view (``bsnet.``) or under DDP (``module.``) are unwrapped.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"no BS-Net weights at {path}: train them with the bundle's training configs, or point to a checkpoint"
        )
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if key is None:
        key = next((k for k in ("network", "model") if isinstance(checkpoint, dict) and k in checkpoint), None)
    state = checkpoint[key] if key is not None else checkpoint
    out = {}
    for name, value in state.items():
        for prefix in ("module.", "bsnet."):
            if name.startswith(prefix):
                name = name[len(prefix) :]
        out[name] = value.float() if value.is_floating_point() else value
    return out


def zone_classifier_of(state: dict[str, torch.Tensor]) -> str | None:
    """The zone classifier form a BS-Net state dict holds (``"bsnet"`` or ``"pooled_linear"``), None
    when it holds no scoring stage."""
    if "scoring.classifiers.0.linear.weight" in state:
        return "pooled_linear"
    if any(name.startswith("scoring.") for name in state):
        return "bsnet"
    return None


def load_weights(network: nn.Module, path: str | os.PathLike, key: str | None = None, strict: bool = True) -> nn.Module:
    """Load a checkpoint into ``network`` (see :func:`state_dict_from_checkpoint`); returns the network.

    The checkpoint decides the form of the zone classifier: a BS-Net built with the authors' head
    receives the pooled linear one when the checkpoint holds it (the shipped model), and the other
    way round, so that every ``load_weights(BSNet(), path)`` runs what was trained. Frozen stages stay
    frozen.
    """
    target = getattr(network, "bsnet", network)  # a stage view holds the BS-Net
    target = getattr(target, "module", target)  # DistributedDataParallel
    state = state_dict_from_checkpoint(path, key)
    form = zone_classifier_of(state)
    if isinstance(target, BSNet) and form is not None and form != target.scoring.zone_classifier:
        target.scoring = target.scoring.with_zone_classifier(form)
        target.freeze(list(target.frozen))
    target.load_state_dict(state, strict=strict)
    return network


def stage_fingerprint(bsnet: nn.Module, scoring: bool) -> str:
    """SHA-256 of a BS-Net's scoring-stage weights (``scoring``) or of every other weight (the frozen
    stages), rounded to half precision: equal for a checkpoint and its half-precision export, so it
    says which weights something fitted on their outputs belongs to."""
    digest = hashlib.sha256()
    for name, value in sorted(bsnet.state_dict().items()):
        if name.startswith("scoring.") == scoring:
            value = value.detach().cpu()
            digest.update(name.encode() + (value.half() if value.is_floating_point() else value).numpy().tobytes())
    return digest.hexdigest()


def fitted_file_beside(weights: str | os.PathLike, name: str, load: Callable[[Path], T], network: nn.Module | None = None) -> T | None:
    """The file ``name`` in the folder of ``weights``, read by ``load``, that was fitted on those weights'
    zone probabilities (the zone context stage, Cohen's mapping), or None where there is none.

    What ``load`` returns may be marked with the :func:`stage_fingerprint` of the scoring stage it was
    fitted for (``fitted_for``): given the ``network`` loaded from ``weights`` (a BS-Net, or a module
    holding one as ``bsnet``), a file fitted for another scoring stage is refused with a warning, say one
    left beside weights that a later training replaced. Unmarked, or without a network, it is taken as fitted for them.
    """
    path = Path(weights).with_name(name)
    if not path.is_file():
        return None
    fitted = load(path)
    mark = getattr(fitted, "fitted_for", None)
    if mark and network is not None and mark != stage_fingerprint(getattr(network, "bsnet", network), scoring=True):
        logger.warning("%s was fitted for another scoring stage than %s's: not used", path, weights)
        return None
    return fitted
