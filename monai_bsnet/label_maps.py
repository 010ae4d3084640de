"""Brixia zone label maps as viewers show them: label values, colours, reading, writing, scores back.

Viewers (OHIF, 3D Slicer) only show segmentations, so the zone scores travel as a label map: each
of the six zones drawn over the lungs in the image's own geometry, filled with the label of its
score (value = score + 1, see :func:`monai_bsnet.inference.zone_map.zone_label_map`). A radiologist
corrects a zone by repainting it with another score label; :func:`scores_from_label_map` reads the
six scores back (the majority score label inside each zone).

Label maps are read and written with ITK, the library 3D Slicer and MONAI Label use, and a written
map copies the geometry (origin, spacing, direction, number of dimensions) ITK reads from the scored
image: the map then lies exactly over the image in a viewer, whatever the format (PNG/JPEG, a DICOM
with its pixel spacing, a single-slice NIfTI from a DICOMweb series).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from monai_bsnet.zones import NUM_SCORES, NUM_ZONES

logger = logging.getLogger(__name__)

__all__ = [
    "BRIXIA_LABELS",
    "BRIXIA_LABEL_COLORS",
    "LUNG_LABELS",
    "ImageGeometry",
    "image_geometry",
    "read_label_map",
    "write_label_map",
    "scores_from_label_map",
    "zone_counts",
    "complete_scores",
]

#: Label name -> value of the zone map: a zone scored s is filled with s + 1; 0 is background.
BRIXIA_LABELS: dict[str, int] = {f"brixia {s}": s + 1 for s in range(NUM_SCORES)}
#: Display colours (RGB 0-255), green (no abnormality) to red (alveolar dominant), like a traffic light.
BRIXIA_LABEL_COLORS: dict[str, tuple[int, int, int]] = {
    "brixia 0": (0, 176, 80),
    "brixia 1": (255, 192, 0),
    "brixia 2": (255, 112, 0),
    "brixia 3": (192, 0, 0),
}
#: Label of the plain lung mask.
LUNG_LABELS: dict[str, int] = {"lung": 1}


class ImageGeometry(NamedTuple):
    """Where an image's pixels lie, as ITK (and so 3D Slicer) reads the file.

    Attributes:
        size: pixels along each axis, ITK order (columns, rows[, slices]).
        spacing, origin: per axis, millimetres.
        direction: direction cosines, one row per axis.
    """

    size: tuple[int, ...]
    spacing: tuple[float, ...]
    origin: tuple[float, ...]
    direction: tuple[tuple[float, ...], ...]


def image_geometry(path: str | os.PathLike) -> ImageGeometry | None:
    """The geometry of an image file from its header (pixels are not decoded); None if ITK cannot read it."""
    import itk

    try:
        io = itk.ImageIOFactory.CreateImageIO(str(path), itk.CommonEnums.IOFileMode_ReadMode)
        if io is None:
            return None
        io.SetFileName(str(path))
        io.ReadImageInformation()
    except Exception:  # ITK raises RuntimeError subclasses with C++ messages; any failure means "unknown"
        return None
    n = io.GetNumberOfDimensions()
    return ImageGeometry(
        size=tuple(int(io.GetDimensions(i)) for i in range(n)),
        spacing=tuple(float(io.GetSpacing(i)) for i in range(n)),
        origin=tuple(float(io.GetOrigin(i)) for i in range(n)),
        direction=tuple(tuple(float(v) for v in io.GetDirection(i)) for i in range(n)),
    )


def read_label_map(path: str | os.PathLike) -> np.ndarray:
    """A label map file (PNG, NIfTI, NRRD, ... anything ITK reads) as an integer array (rows, columns).

    A single-slice volume (a 2D image saved by 3D Slicer or converted from DICOM) gives its slice.

    Raises:
        ValueError: the file is not a single-channel 2D label map (RGB picture, several slices, unreadable).
    """
    import itk

    try:
        image = itk.imread(str(path))
    except Exception as e:
        raise ValueError(f"{path}: not a label map ITK can read ({type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''})") from e
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ValueError(f"{path}: a label map has one value per pixel, this file has {image.GetNumberOfComponentsPerPixel()}")
    array = np.asarray(itk.array_from_image(image))  # numpy order: (slices,) rows, columns
    if array.ndim == 3 and array.shape[0] == 1:
        array = array[0]
    if array.ndim != 2:
        raise ValueError(f"{path}: expected a 2D label map (or one slice), got shape {array.shape}")
    if np.issubdtype(array.dtype, np.floating):
        if not np.all(np.isfinite(array)) or not np.array_equal(array, np.round(array)):
            raise ValueError(f"{path}: label values must be whole numbers")
    return array.astype(np.int64)


def write_label_map(
    labels: np.ndarray,
    path: str | os.PathLike,
    reference: str | os.PathLike | None = None,
    dtype: str | np.dtype = np.uint8,
    compress: bool = True,
    strict: bool = True,
) -> Path:
    """Write a label map (rows, columns) with the geometry ITK reads from ``reference``.

    The format follows ``path``'s ending (``.png``, ``.nii.gz``, ``.nrrd``, ...). Where the reference
    is a volume of one slice (a DICOM file or a NIfTI), the map is written as one slice too, so that
    viewers overlay it without resampling. Without a reference (or one ITK cannot read), pixels are
    1 x 1 at the origin, which is how viewers place PNG/JPEG images anyway.

    A reference of another size (a JPEG whose EXIF orientation the loader applied and ITK does not)
    raises ``ValueError``, or with ``strict=False`` is ignored: the map is written without geometry.
    """
    import itk

    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"expected a 2D label map, got shape {labels.shape}")
    geometry = image_geometry(reference) if reference is not None else None
    if geometry is not None and tuple(geometry.size[:2]) != (labels.shape[1], labels.shape[0]):
        message = (
            f"label map {labels.shape[1]} x {labels.shape[0]} (columns x rows) does not match the reference "
            f"{reference} ({geometry.size[0]} x {geometry.size[1]})"
        )
        if strict:
            raise ValueError(message)
        logger.warning("%s: writing the label map without the reference's geometry", message)
        geometry = None
    array = labels.astype(dtype)
    if geometry is not None and len(geometry.size) == 3:
        array = array[None]
    image = itk.image_from_array(np.ascontiguousarray(array))
    if geometry is not None:
        image.SetSpacing([float(s) for s in geometry.spacing])
        image.SetOrigin([float(o) for o in geometry.origin])
        # ITK stores direction cosines as columns of the matrix; GetDirection(i) above gave axis i's
        direction = np.array(geometry.direction, dtype=np.float64).T
        image.SetDirection(itk.matrix_from_array(np.ascontiguousarray(direction)))
    path = Path(path)
    itk.imwrite(image, str(path), compression=compress)
    return path


def scores_from_label_map(labels: np.ndarray, zone_index: np.ndarray, min_pixels: int = 1) -> list[int | None]:
    """The six zone scores (A..F) painted in a label map: the majority score label inside each zone.

    Args:
        labels: (rows, columns) label map, values 1..4 = scores 0..3 (others, background 0 included,
            are ignored).
        zone_index: (rows, columns) zone index 0..5 of every pixel, -1 outside
            (:func:`~monai_bsnet.inference.zone_map.zone_index_map` for this image's ``theta``); any
            size: it is resampled (nearest) onto the label map when the sizes differ.
        min_pixels: fewest score pixels a zone needs to count as scored.

    Returns:
        Six scores, ``None`` for a zone with no score label in it (not scored). A tie between two
        labels goes to the higher score (the more severe finding is not dropped silently).
    """
    labels = np.asarray(labels)
    zone_index = np.asarray(zone_index)
    if labels.ndim != 2 or zone_index.ndim != 2:
        raise ValueError(f"expected 2D maps, got {labels.shape} and {zone_index.shape}")
    if zone_index.shape != labels.shape:
        rows = (np.arange(labels.shape[0]) * zone_index.shape[0] // labels.shape[0]).clip(0, zone_index.shape[0] - 1)
        cols = (np.arange(labels.shape[1]) * zone_index.shape[1] // labels.shape[1]).clip(0, zone_index.shape[1] - 1)
        zone_index = zone_index[rows[:, None], cols[None, :]]
    scores: list[int | None] = []
    valid = (labels >= 1) & (labels <= NUM_SCORES)
    for z in range(NUM_ZONES):
        inside = labels[(zone_index == z) & valid]
        if inside.size < min_pixels:
            scores.append(None)
            continue
        counts = np.bincount(inside.astype(np.int64) - 1, minlength=NUM_SCORES)
        # argmax of the reversed counts picks the highest score among ties
        scores.append(int(NUM_SCORES - 1 - np.argmax(counts[::-1])))
    return scores


def zone_counts(labels: np.ndarray, zone_index: np.ndarray) -> list[list[int]]:
    """Pixels of each score label (1..4) inside each zone, (6, 4) as nested lists (for logs and JSON)."""
    labels = np.asarray(labels)
    out = []
    for z in range(NUM_ZONES):
        inside = labels[(np.asarray(zone_index) == z) & (labels >= 1) & (labels <= NUM_SCORES)]
        out.append(np.bincount(inside.astype(np.int64) - 1, minlength=NUM_SCORES).tolist())
    return out


def complete_scores(scores: Sequence[int | None]) -> list[int] | None:
    """The scores as six integers, or None when a zone was not scored."""
    return None if any(s is None for s in scores) else [int(s) for s in scores]  # type: ignore[arg-type]
