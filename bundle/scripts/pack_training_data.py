"""Pack lungseg/ and brixia-public/ small enough to send to a remote GPU machine (about 25 MB).

Every image is read as training reads it (:func:`monai_bsnet.transforms.read_cxr`: grey, [0, 1]),
resized to 512 x 512 with "area" interpolation exactly as the network's preprocessing does, and
stored as 8-bit JPEG (quality 95) under its original file name (the loader finds the format by
content, so the tables need no change). Masks stay lossless PNG. Each packed picture is the original's
resized picture up to 8-bit rounding and JPEG noise (a mean absolute difference of about 0.003). The
histogram equalisation that follows can amplify that noise: where a large dark area lies at the edge of
its first bin, the copy's grey mapping moves as a whole (``benchmarks/reencoding.py``: for 7 of the 138
public images the shipped network's expected global score moves by 0.5 or more, up to 3.1). Training on the packed copy
therefore sees a few pictures with shifted grey levels, much as the augmentations' intensity changes do.

    python bundle/scripts/pack_training_data.py ../shared/data .devdata
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from monai_bsnet.transforms import NETWORK_SIZE, read_cxr


def pack_image(source: Path, target: Path, size: int = NETWORK_SIZE, quality: int = 95) -> None:
    pixels, _ = read_cxr(source)
    image = torch.nn.functional.interpolate(torch.as_tensor(pixels, dtype=torch.float32)[None, None], (size, size), mode="area")
    array = np.clip(image[0, 0].numpy() * 255 + 0.5, 0, 255).astype(np.uint8)
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(target, format="JPEG", quality=quality)


def main(source: str, target: str) -> int:
    source_dir, target_dir = Path(source), Path(target)
    for folder in ("lungseg", "brixia-public"):
        for path in sorted((source_dir / folder).rglob("*")):
            out = target_dir / path.relative_to(source_dir)
            if path.is_dir():
                continue
            if path.parent.name == "images":
                pack_image(path, out)
            else:
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, out)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
