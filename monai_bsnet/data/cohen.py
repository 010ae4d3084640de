"""Datalist of Cohen et al.'s severity scores (geographic extent 0-8, opacity 0-6)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pandas as pd

from monai_bsnet.errors import CXRInputError

__all__ = ["cohen_severity_datalist"]


def cohen_severity_datalist(csv_path: str | os.PathLike, images_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """``cohen-severity.csv`` (filename, geographic_mean, opacity_mean) as a datalist.

    Each item: ``image``, ``filename``, ``geographic_extent`` (0..8) and ``opacity`` (0..6), the
    means of three raters (Cohen et al., Cureus 2020).
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise CXRInputError(csv_path, "no such file")
    table = pd.read_csv(csv_path, dtype={"filename": str})
    items = []
    for _, row in table.iterrows():
        extent, opacity = float(row["geographic_mean"]), float(row["opacity_mean"])
        if not (0 <= extent <= 8 and 0 <= opacity <= 6):
            raise CXRInputError(
                csv_path, f"row {row['filename']!r}: geographic extent {extent} (0-8) or opacity {opacity} (0-6) out of range"
            )
        image = Path(images_dir) / row["filename"]
        if not image.is_file():
            raise CXRInputError(image, f"image listed in {csv_path.name} is missing")
        items.append({"image": str(image), "filename": row["filename"], "geographic_extent": extent, "opacity": opacity})
    return items
