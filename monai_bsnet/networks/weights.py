"""Loading BS-Net weights from the checkpoints that training and the bundle write."""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn as nn

__all__ = ["load_weights", "state_dict_from_checkpoint"]


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


def load_weights(network: nn.Module, path: str | os.PathLike, key: str | None = None, strict: bool = True) -> nn.Module:
    """Load a checkpoint into ``network`` (see :func:`state_dict_from_checkpoint`); returns the network."""
    target = getattr(network, "bsnet", network)  # a stage view holds the BS-Net
    target = getattr(target, "module", target)  # DistributedDataParallel
    target.load_state_dict(state_dict_from_checkpoint(path, key), strict=strict)
    return network
