"""Datalist of Cohen et al.'s COVID-19 severity scores: geographic extent (0-8) and opacity (0-6).

Cohen et al. ("Predicting COVID-19 Pneumonia Severity on Chest X-ray with Deep Learning", Cureus
2020) scored each lung for extent of involvement (0-4) and degree of opacity (0-3), summed over the
two lungs; the CSV holds the mean of three raters, so values are fractional.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from monai_bsnet.data._common import MISSING_POLICIES, absolute, apply_missing_policy, check_choice, check_unique, csv_line, read_table
from monai_bsnet.errors import CXRInputError

__all__ = ["COHEN_SCORES", "GEOGRAPHIC_EXTENT_MAX", "OPACITY_MAX", "cohen_severity_datalist", "cohen_scores_of"]

GEOGRAPHIC_EXTENT_MAX = 8.0
OPACITY_MAX = 6.0
#: The two scores, in the order of :func:`cohen_scores_of`'s columns (the result records' field names).
COHEN_SCORES = ("geographic_extent", "opacity")


def cohen_severity_datalist(
    csv_path: str | os.PathLike,
    images_dir: str | os.PathLike,
    missing: str = "error",
    images_csv: str | os.PathLike | None = None,
) -> list[dict[str, Any]]:
    """``cohen-severity.csv`` (filename, geographic_mean, opacity_mean) as a MONAI datalist.

    Each item:
        - ``image``: absolute path of ``images_dir/<filename>``; ``filename``: the CSV's name.
        - ``geographic_extent``: float 0..8; ``opacity``: float 0..6 (means of three raters).
        - ``patient_id``: from the image metadata CSV (``images.csv`` of the public BrixIA layout),
          ``""`` where unknown.

    Args:
        csv_path: the severity CSV (``../shared/data/brixia-public/cohen-severity.csv``).
        images_dir: the folder of the images it names.
        missing: ``"error"`` (default) refuses the CSV when a listed image is absent, naming it;
            ``"skip"`` leaves such rows out.
        images_csv: a CSV with ``filename`` and ``patientid`` columns; None looks for ``images.csv``
            beside ``csv_path`` and leaves ``patient_id`` blank where there is none.

    Returns:
        A list of dicts, one per row, in the CSV's order.

    Raises:
        CXRInputError: the CSV is absent or malformed, a score is blank, not a number or out of
            range (the message names the CSV, the line and the filename), a filename is listed
            twice, or an image is missing.
        ValueError: ``missing`` is not one of the choices above.
    """
    check_choice("missing", missing, MISSING_POLICIES)
    csv_path, images_dir = absolute(csv_path), absolute(images_dir)
    table = read_table(csv_path, ["filename", "geographic_mean", "opacity_mean"], "Cohen severity scores")
    check_unique(table, "filename", csv_path)
    if images_csv is None:
        patients = _patients(csv_path.parent / "images.csv", required=False)
    else:
        patients = _patients(absolute(images_csv), required=True)
    items = []
    for index, row in table.iterrows():
        where = f"line {csv_line(index)} ({row['filename']})"
        extent = _score(row["geographic_mean"], GEOGRAPHIC_EXTENT_MAX, "geographic_mean (extent)", csv_path, where)
        opacity = _score(row["opacity_mean"], OPACITY_MAX, "opacity_mean", csv_path, where)
        items.append(
            {
                "image": str(images_dir / row["filename"]),
                "filename": row["filename"],
                "geographic_extent": extent,
                "opacity": opacity,
                "patient_id": patients.get(row["filename"], ""),
            }
        )
    return apply_missing_policy(items, ["image"], missing, csv_path)


def cohen_scores_of(items: Sequence[Mapping[str, Any]], csv_path: str | os.PathLike, images_dir: str | os.PathLike) -> np.ndarray:
    """(N, 2) extent and opacity (:data:`COHEN_SCORES`) of ``items``, by their ``filename``, from the Cohen
    severity CSV of the images in ``images_dir``; NaN for images it does not score (in the public BrixIA
    subset, 55 of the 138 images have them)."""
    rows = cohen_severity_datalist(csv_path, images_dir, missing="skip")
    scored = {row["filename"]: [row[s] for s in COHEN_SCORES] for row in rows}
    return np.array([scored.get(item["filename"], [math.nan, math.nan]) for item in items], dtype=np.float64).reshape(len(items), 2)


def _score(text: str, maximum: float, column: str, csv_path: Path, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= maximum:  # NaN (blank or non-numeric) fails too
        raise CXRInputError(csv_path, f"{where}: {column} {text!r} is out of range: expected a number 0..{maximum:g}")
    return value


def _patients(path: Path, required: bool) -> dict[str, str]:
    """filename -> patient id of an image metadata CSV; empty when an optional one is absent."""
    if not required and not path.is_file():
        return {}
    info = read_table(path, ["filename", "patientid"], "image metadata with filename and patientid columns")
    return dict(zip(info["filename"], info["patientid"].str.strip()))
