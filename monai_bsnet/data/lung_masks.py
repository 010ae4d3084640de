"""Datalists of chest X-rays with lung masks: the ``lungseg`` layout and generic image/mask folders.

Mask items carry the mask path twice, as ``mask`` and as ``label``: the segmentation and alignment
training configs read ``label``. (In Brixia-scored datalists ``label`` is the six zone scores.)
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path
from typing import Any

from monai_bsnet.data._common import MISSING_POLICIES, absolute, apply_missing_policy, check_choice, check_unique, preview, read_table
from monai_bsnet.errors import CXRInputError

__all__ = ["IMAGE_SUFFIXES", "LUNGSEG_SPLITS", "lungseg_datalist", "image_mask_pairs"]

#: File endings that :func:`image_mask_pairs` recognises, for images and masks alike (any case).
IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".dcm", ".nii.gz", ".nii")

#: Values of ``split`` that :func:`lungseg_datalist` accepts; None means all.
LUNGSEG_SPLITS = ("train", "test")


def lungseg_datalist(root: str | os.PathLike, split: str | None = None, missing: str = "error") -> list[dict[str, Any]]:
    """The ``lungseg`` folder as a MONAI datalist, in the order of ``manifest.csv``.

    Layout of ``root``: ``images/<id>.png``, ``masks/<id>.png`` (0/255 mask of both lungs),
    ``manifest.csv`` (id, original_path, original_width, original_height, patientid, view, license,
    split) and ``masks_with_holes.txt`` (optional; one id per line).

    Each item:
        - ``image``: absolute path of the image; ``mask`` and ``label``: absolute path of its mask.
        - ``id``: the manifest id; ``patient_id`` (``patientid``), ``view``: the manifest's text.
        - ``split``: ``"test"`` where the manifest says ``test``, else ``"train"``.
        - ``mask_has_holes``: the annotators cut a region (pacemaker, markup) out of this mask, so
          the hole is not lung-free tissue: exclude or weight such masks as the task needs.

    The split is by image, as the BS-Net authors made it, not by patient: a few patients (4 in the
    team's copy) have images on both sides.

    Args:
        root: the folder (``../shared/data/lungseg`` in the team's copy).
        split: ``"train"`` (every manifest row whose split is not ``test``), ``"test"``, or None
            for all rows.
        missing: ``"error"`` (default) refuses the folder when a listed image or mask is absent,
            naming it; ``"skip"`` leaves such rows out.

    Returns:
        A list of dicts, one per image/mask pair.

    Raises:
        CXRInputError: the manifest is absent or malformed, lists an id twice, or a file is missing.
        ValueError: ``split`` or ``missing`` is not one of the choices above.
    """
    check_choice("split", split, (*LUNGSEG_SPLITS, None))
    check_choice("missing", missing, MISSING_POLICIES)
    root = absolute(root)
    manifest = root / "manifest.csv"
    table = read_table(manifest, ["id", "split"], "a lungseg manifest (manifest.csv)")
    check_unique(table, "id", manifest)
    holes_file = root / "masks_with_holes.txt"
    holes = set(holes_file.read_text().split()) if holes_file.is_file() else set()
    items = []
    for _, row in table.iterrows():
        row_split = "test" if row["split"].strip().lower() == "test" else "train"
        if split is not None and row_split != split:
            continue
        mask = str(root / "masks" / f"{row['id']}.png")
        items.append(
            {
                "image": str(root / "images" / f"{row['id']}.png"),
                "mask": mask,
                "label": mask,
                "id": row["id"],
                "patient_id": row.get("patientid", "").strip(),
                "view": row.get("view", "").strip(),
                "split": row_split,
                "mask_has_holes": row["id"] in holes,
            }
        )
    return apply_missing_policy(items, ["image", "mask"], missing, manifest)


def image_mask_pairs(
    image_dir: str | os.PathLike, mask_dir: str | os.PathLike, mask_suffix: str = "", missing: str = "error"
) -> list[dict[str, Any]]:
    """Pair the images of one folder with the lung masks of another by file name.

    The image ``<stem>.<ext>`` pairs with the mask ``<stem><mask_suffix>.<ext2>``, any endings of
    :data:`IMAGE_SUFFIXES` on either side (``x.dcm`` with ``x_mask.png``). Both may be one folder
    when ``mask_suffix`` tells masks apart: then the files named ``*<mask_suffix>.<ext>`` are masks.
    Other files (``.txt``, ``.DS_Store``, sub-folders) are ignored; folders are not searched
    recursively.

    Each item: ``image``, ``mask`` and ``label`` (absolute paths; ``label`` = ``mask``), ``id``
    (the image stem) and ``patient_id`` (``""``: unknown here), sorted by image name.

    Args:
        image_dir: the folder of images.
        mask_dir: the folder of masks.
        mask_suffix: what a mask's stem adds to its image's stem (``"_mask"``); ``""`` for equal stems.
        missing: ``"error"`` (default) refuses when any image has no mask, listing them;
            ``"skip"`` leaves those images out.

    Returns:
        A list of dicts, one per image that has a mask.

    Raises:
        CXRInputError: a folder is absent, two files share a stem (``x.png`` and ``x.jpg``: which is
            meant?), or images lack masks (with ``missing="error"``).
        ValueError: ``missing`` is not one of the choices above.
    """
    check_choice("missing", missing, MISSING_POLICIES)
    image_dir, mask_dir = absolute(image_dir), absolute(mask_dir)
    masks = _by_stem(mask_dir)
    if mask_dir == image_dir:
        if not mask_suffix:
            raise CXRInputError(image_dir, "images and masks in one folder need a mask_suffix to tell them apart")
        images = {stem: path for stem, path in masks.items() if not stem.endswith(mask_suffix)}
    else:
        images = _by_stem(image_dir)
    items, unmatched = [], []
    for stem, image in sorted(images.items(), key=lambda kv: kv[1].name):
        mask = masks.get(stem + mask_suffix)
        if mask is None:
            unmatched.append(image.name)
            continue
        items.append({"image": str(image), "mask": str(mask), "label": str(mask), "id": stem, "patient_id": ""})
    if unmatched and missing == "error":
        raise CXRInputError(
            image_dir, f"{len(unmatched)} image(s) without a mask <stem>{mask_suffix}.* in {mask_dir}: {preview(unmatched)}"
        )
    return items


def _stem(name: str) -> str | None:
    """The name without its recognised ending (``x.nii.gz`` -> ``x``); None for other files."""
    lower = name.lower()
    return next((name[: -len(s)] for s in IMAGE_SUFFIXES if lower.endswith(s)), None)


def _by_stem(folder: Path) -> dict[str, Path]:
    """stem -> file of a folder's image files; refuses a missing folder and ambiguous stems."""
    if not folder.is_dir():
        raise CXRInputError(folder, "no such folder")
    found: dict[str, list[Path]] = defaultdict(list)
    for path in folder.iterdir():
        stem = _stem(path.name)
        if stem and path.is_file():
            found[stem].append(path)
    clashes = sorted(" / ".join(sorted(p.name for p in paths)) for paths in found.values() if len(paths) > 1)
    if clashes:
        raise CXRInputError(folder, f"several files share a stem, so the pairing is ambiguous: {preview(clashes)}")
    return {stem: paths[0] for stem, paths in found.items()}
