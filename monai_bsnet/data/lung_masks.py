"""Datalists of chest X-rays with lung masks: the lungseg layout and image/mask folder pairs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from monai_bsnet.errors import CXRInputError

__all__ = ["lungseg_datalist", "image_mask_pairs", "MASK_SUFFIXES"]

MASK_SUFFIXES = (".png", ".jpg", ".jpeg", ".dcm", ".nii.gz", ".nii")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in MASK_SUFFIXES:
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def lungseg_datalist(root: str | os.PathLike, split: str | None = None) -> list[dict[str, Any]]:
    """The ``lungseg`` folder (``images/<id>.png``, ``masks/<id>.png``, ``manifest.csv``) as a datalist.

    Each item: ``image``, ``label`` and ``mask`` (the same mask path: ``label`` for training
    configs), ``id``, ``patient_id``, ``view``, ``split`` and ``mask_has_holes`` (the annotators cut
    a region out of the lung, listed in ``masks_with_holes.txt``).

    Args:
        root: the folder.
        split: ``"train"`` (every id not in the test split), ``"test"``, or None for all.
    """
    root = Path(root)
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        raise CXRInputError(manifest, "no such file: not a lungseg folder")
    table = pd.read_csv(manifest, dtype=str, keep_default_na=False)
    holes_file = root / "masks_with_holes.txt"
    holes = set(holes_file.read_text().split()) if holes_file.is_file() else set()
    if split not in (None, "train", "test"):
        raise ValueError(f"split must be 'train', 'test' or None, got {split!r}")
    items = []
    for _, row in table.iterrows():
        row_split = "test" if row["split"] == "test" else "train"
        if split is not None and row_split != split:
            continue
        image, mask = root / "images" / f"{row['id']}.png", root / "masks" / f"{row['id']}.png"
        for path in (image, mask):
            if not path.is_file():
                raise CXRInputError(path, f"listed in {manifest.name} but missing")
        items.append(
            {
                "image": str(image),
                "label": str(mask),
                "mask": str(mask),
                "id": row["id"],
                "patient_id": row.get("patientid", ""),
                "view": row.get("view", ""),
                "split": row_split,
                "mask_has_holes": row["id"] in holes,
            }
        )
    return items


def image_mask_pairs(image_dir: str | os.PathLike, mask_dir: str | os.PathLike, mask_suffix: str = "", missing: str = "error") -> list[dict[str, Any]]:
    """Pair images and lung masks of two folders by file name (``<stem>`` and ``<stem><mask_suffix>``).

    Args:
        image_dir, mask_dir: the folders (not searched recursively).
        mask_suffix: what the mask names add to the image stem (``"_mask"`` for ``x.png`` / ``x_mask.png``).
        missing: ``"error"`` refuses images without a mask (naming them), ``"skip"`` leaves them out.
    """
    masks = {_stem(p): p for p in Path(mask_dir).iterdir() if p.name.lower().endswith(MASK_SUFFIXES)}
    items, unmatched = [], []
    for image in sorted(Path(image_dir).iterdir()):
        if not image.name.lower().endswith(MASK_SUFFIXES):
            continue
        mask = masks.get(_stem(image) + mask_suffix)
        if mask is None:
            unmatched.append(image.name)
            continue
        items.append({"image": str(image), "label": str(mask), "mask": str(mask), "id": _stem(image)})
    if unmatched and missing == "error":
        raise CXRInputError(image_dir, f"{len(unmatched)} image(s) without a mask in {mask_dir}: {', '.join(unmatched[:5])}")
    return items
