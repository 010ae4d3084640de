"""Corrected Brixia zone maps as DICOM Segmentations, to and from a PACS.

A zone map (values 1..4 = scores 0..3, see :mod:`monai_bsnet.label_maps`) becomes a binary DICOM
SEG of the scored image with one segment per score label, ``brixia 0`` .. ``brixia 3``: the segment
names are the label names viewers use (OHIF exports its segments under the same names), so a SEG
made by a viewer or by this module reads back into the same zone map.

Written with highdicom (no dcmqi needed: MONAI Label's own DICOM SEG export calls dcmqi's
``itkimage2segimage``, which it downloads from the internet at start-up); read with pydicom.
"""

from __future__ import annotations

from collections.abc import Mapping

import highdicom as hd
import numpy as np
import pydicom

from monai_bsnet.dicom_writers import lung_segment, projection_segmentation
from monai_bsnet.label_maps import BRIXIA_LABEL_COLORS, BRIXIA_LABELS
from monai_bsnet.zones import SCORE_MEANINGS

__all__ = ["brixia_label_segmentation", "label_map_from_segmentation", "referenced_series", "cielab"]

#: SeriesNumber of corrected zone maps (the automatic results use 901 and 902).
SERIES_NUMBER = 903


def cielab(rgb: tuple[int, int, int]) -> list[int]:
    """sRGB 0-255 -> DICOM's scaled CIELab (RecommendedDisplayCIELabValue, each 0-65535)."""
    from skimage.color import rgb2lab

    lab = rgb2lab(np.asarray(rgb, dtype=np.float64).reshape(1, 1, 3) / 255.0)[0, 0]
    scaled = [lab[0] * 65535 / 100, (lab[1] + 128) * 65535 / 255, (lab[2] + 128) * 65535 / 255]
    return [int(round(min(max(v, 0), 65535))) for v in scaled]


def brixia_label_segmentation(
    source: pydicom.Dataset,
    labels: np.ndarray,
    version: str,
    brixia: str | None = None,
    creator: str | None = None,
) -> hd.seg.Segmentation:
    """A binary DICOM SEG of ``source`` holding a (corrected) Brixia zone map.

    Args:
        source: the scored image (a single-frame CR, DX or secondary capture).
        labels: (rows, columns) zone map in the image's geometry, values 1..4 = scores 0..3.
        version: software version written into the object.
        brixia: the six scores (``"013220"``, zones A..F) for the series description, if known.
        creator: who made the correction (ContentCreatorName), if known.
    """
    labels = np.asarray(labels)
    if labels.shape != (int(source.Rows), int(source.Columns)):
        raise ValueError(f"zone map {labels.shape} does not match the image ({source.Rows}, {source.Columns})")
    descriptions = []
    for name, value in BRIXIA_LABELS.items():
        # a radiologist may have repainted it: "semi-automatic" is the honest description
        description = lung_segment(value, name, version, hd.seg.SegmentAlgorithmTypeValues.SEMIAUTOMATIC)
        description.SegmentDescription = f"Brixia score {value - 1}: {SCORE_MEANINGS[value - 1]}"
        description.RecommendedDisplayCIELabValue = cielab(BRIXIA_LABEL_COLORS[name])
        descriptions.append(description)
    masks = np.stack([labels == value for value in BRIXIA_LABELS.values()], axis=-1)
    seg = projection_segmentation(
        source,
        masks,
        descriptions,
        version,
        series_number=SERIES_NUMBER,
        content_label="BRIXIA",
        content_description=f"Brixia zone scores {brixia}" if brixia else "Brixia zone scores",
        content_creator_name=creator,
    )
    seg.SeriesDescription = f"BS-Net Brixia {brixia} (corrected)" if brixia else "BS-Net Brixia zones (corrected)"
    return seg


def referenced_series(seg: pydicom.Dataset) -> str:
    """SeriesInstanceUID of the image series a SEG segments ("" when it does not say)."""
    for item in seg.get("ReferencedSeriesSequence", []) or []:
        uid = str(item.get("SeriesInstanceUID", "") or "")
        if uid:
            return uid
    return ""


def label_map_from_segmentation(seg: pydicom.Dataset, names: Mapping[str, int] = BRIXIA_LABELS) -> np.ndarray:
    """The zone map (rows, columns) in a single-image SEG: segments named ``brixia 0`` .. ``brixia 3``
    (case and surrounding blanks ignored) become values 1..4; other segments are ignored.

    Raises:
        ValueError: not a SEG, or no segment with a Brixia label, or frames of several images.
    """
    if str(seg.get("Modality", "")) != "SEG" or "SegmentSequence" not in seg:
        raise ValueError("not a DICOM Segmentation")
    by_number = {}
    for item in seg.SegmentSequence:
        name = str(item.get("SegmentLabel", "")).strip().lower()
        if name in names:
            by_number[int(item.SegmentNumber)] = names[name]
    if not by_number:
        raise ValueError("the SEG has no segment named " + ", ".join(names))
    rows, columns = int(seg.Rows), int(seg.Columns)
    frames = seg.pixel_array.reshape(-1, rows, columns)
    groups = seg.get("PerFrameFunctionalGroupsSequence", [])
    sources = set()
    out = np.zeros((rows, columns), dtype=np.uint8)
    for k, frame in enumerate(frames):
        group = groups[k] if k < len(groups) else None
        if group is None or "SegmentIdentificationSequence" not in group:
            raise ValueError(f"frame {k + 1} does not say which segment it holds")
        number = int(group.SegmentIdentificationSequence[0].ReferencedSegmentNumber)
        for derivation in group.get("DerivationImageSequence", []) or []:
            for item in derivation.get("SourceImageSequence", []) or []:
                sources.add(str(item.get("ReferencedSOPInstanceUID", "")))
        if number in by_number:
            out[(frame > 0) & (out == 0)] = by_number[number]
    if len(sources) > 1:
        raise ValueError(f"the SEG covers {len(sources)} images; a chest X-ray zone map covers one")
    return out
