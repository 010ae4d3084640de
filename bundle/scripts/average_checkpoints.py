"""Average the weights of BS-Net checkpoints fine-tuned from one start into one network (a weight soup).

Every floating-point tensor of the state dicts (weights and batch-norm running statistics) is averaged
uniformly; integer buffers (batch-norm step counters) are taken from the first checkpoint. Averaging
networks that lie in one basin, as continued training from a common checkpoint does, takes out some of
the run-to-run variance at no cost at inference (stochastic weight averaging, Izmailov et al., UAI 2018;
model soups, Wortsman et al., ICML 2022).

    python bundle/scripts/average_checkpoints.py FIRST.pt SECOND.pt [...] --out WORK/models/alignment.pt
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from monai_bsnet.writers import atomic_path


def average_state_dicts(state_dicts: list[dict[str, torch.Tensor]], names: list[str] | None = None) -> dict[str, torch.Tensor]:
    """The uniform average of ``state_dicts`` (same keys and shapes), computed in float64; ``names`` (the
    files, say) are what an error about a state dict that does not match the first one names."""
    names = names or [f"checkpoint {i}" for i in range(len(state_dicts))]
    first = state_dicts[0]
    for name, sd in zip(names[1:], state_dicts[1:]):
        differing = sorted(sd.keys() ^ first.keys()) or [k for k in first if sd[k].shape != first[k].shape]
        if differing:
            raise ValueError(f"{name} is not the same network as {names[0]}: {differing[0]} differs")
    return {key: torch.stack([sd[key].double() for sd in state_dicts]).mean(0).to(value.dtype) if value.is_floating_point() else value.clone()
            for key, value in first.items()}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoints", nargs="+", type=Path, help="state dicts of one architecture (two or more)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if len(args.checkpoints) < 2:
        parser.error("give at least two checkpoints")
    state_dicts = [torch.load(path, map_location="cpu", weights_only=True) for path in args.checkpoints]
    try:
        average = average_state_dicts(state_dicts, [str(path) for path in args.checkpoints])
    except ValueError as error:
        parser.error(str(error))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as partial:  # never a half-written checkpoint under the final name
        torch.save(average, partial)
    return 0


if __name__ == "__main__":
    sys.exit(main())
