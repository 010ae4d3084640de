"""From a saved label to the six zone scores the trainer learns from.

A saved label is one of:

- label info ``{"brixia": "013220"}`` (scripts; zones A..F, the string read as text): taken as is;
- a zone map repainted in a viewer: the score of each zone is the majority score label inside it.
  The zones are those the radiologist saw: the app stores the zone geometry (``theta``) of the last
  ``bsnet`` result of each image in the image's info (key ``bsnet``); where there is none (a label
  made elsewhere), it is recomputed with the current network, whose alignment stage the fine-tuning
  never changes.

Viewers may renumber labels when they export a segmentation (3D Slicer numbers segments 1..n in its
own order and says so in ``label_info`` ``[{"name": "brixia 2", "idx": 1}, ...]``): values are mapped
back by label name.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import torch
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from monai_bsnet.inference.zone_map import zone_index_map
from monai_bsnet.label_maps import BRIXIA_LABELS, read_label_map, scores_from_label_map, zone_counts
from monai_bsnet.zones import ZONE_NAMES, scores_from_string, scores_to_string

logger = logging.getLogger(__name__)

#: Image-info key under which the app keeps the last BS-Net result of an image (geometry, entropy).
IMAGE_INFO_KEY = "bsnet"


def image_info_entry(record: dict[str, Any], model_key: str) -> dict[str, Any]:
    """What the app keeps about an image's last BS-Net result (zone geometry for labels, entropy for AL)."""
    return {
        "model": model_key,
        "theta": record["zone_geometry"]["theta"],
        "size": record["zone_geometry"]["size"],
        "brixia": scores_to_string([record["zones"][z]["score"] for z in ZONE_NAMES]),
        "mean_zone_entropy": record["uncertainty"]["mean_zone_entropy"],
        "ts": int(time.time()),
    }


class LabelError(ValueError):
    """A saved label that gives no training target, with the reason."""


def remap_label_values(labels: np.ndarray, label_info: Any) -> np.ndarray:
    """Map a viewer's label values back to the app's (``brixia s`` -> s + 1) using ``label_info`` names.

    Without a usable ``label_info`` (none, or no Brixia names in it) the values are kept.
    """
    if not isinstance(label_info, list):
        return labels
    mapping: dict[int, int] = {}
    for entry in label_info:
        if not isinstance(entry, dict):
            continue
        name = str(entry.get("name", "")).strip().lower()
        index = entry.get("idx", entry.get("label", entry.get("value")))
        if name in BRIXIA_LABELS and isinstance(index, (int, float, str)) and str(index).strip().lstrip("-").isdigit():
            mapping[int(index)] = BRIXIA_LABELS[name]
    if not mapping or all(k == v for k, v in mapping.items()):
        return labels
    out = np.zeros_like(labels)
    for value, target in mapping.items():
        out[labels == value] = target
    return out


def stored_theta(datastore: Datastore, image_id: str) -> torch.Tensor | None:
    """The zone geometry of the image's last ``bsnet`` result, if the app stored one."""
    info = datastore.get_image_info(image_id).get(IMAGE_INFO_KEY) or {}
    theta = info.get("theta")
    if theta is None:
        return None
    theta = torch.as_tensor(theta, dtype=torch.float32)
    return theta if theta.shape == (2, 3) else None


def compute_theta(model: Any, datastore: Datastore, image_id: str) -> torch.Tensor:
    """The zone geometry of an image from the current network (no stored result)."""
    from monai_bsnet.inference.single_image import score_image
    from monai_bsnet.transforms import LoadCXR

    path = datastore.get_image_uri(image_id)
    predictor, _ = model.predictor("cpu")
    return score_image(predictor, LoadCXR()(path), path).theta


def label_map_scores(
    labels: np.ndarray, theta: torch.Tensor
) -> tuple[list[int | None], list[list[int]]]:
    """Zone scores (None: zone not painted) and per-zone label pixel counts of a repainted zone map."""
    zone_index = zone_index_map(theta, labels.shape).numpy()
    return scores_from_label_map(labels, zone_index), zone_counts(labels, zone_index)


def scores_from_info(info: dict[str, Any]) -> list[int] | None:
    """Scores given directly as label info ``{"brixia": "013220"}`` (None when absent)."""
    value = info.get("brixia")
    if value is None or value == "":
        return None
    try:
        return scores_from_string(value if isinstance(value, str) else "".join(str(v) for v in value))
    except ValueError as e:
        raise LabelError(f"label info 'brixia' {value!r}: {e}") from e


def read_target(
    datastore: Datastore, image_id: str, model: Any | None = None, label_file: str | None = None,
    label_info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The training target of an image's final label: ``{"scores": [6 ints], "brixia": str, "source": ...}``.

    Args:
        datastore: where the label and the stored zone geometry are.
        image_id: the image.
        model: a :class:`~lib.model.BrixiaModel`, to recompute the zone geometry if none is stored
            (None: a missing geometry is an error).
        label_file, label_info: the label to read (default: the image's final label in the datastore).

    Raises:
        LabelError: the label gives no six scores (unreadable, a zone not painted, no geometry).
    """
    if label_info is None:
        label_id = datastore.get_label_by_image_id(image_id, DefaultLabelTag.FINAL)
        if not label_id:
            raise LabelError(f"{image_id}: no final label")
        label_info = datastore.get_label_info(label_id, DefaultLabelTag.FINAL)
        label_file = datastore.get_label_uri(label_id, DefaultLabelTag.FINAL)
    # scores given by a script, or read from the repainted map when it was saved (with the zones the
    # radiologist saw at that time)
    direct = scores_from_info(label_info)
    if direct is not None:
        return {"scores": direct, "brixia": scores_to_string(direct), "source": label_info.get("brixia_source", "label info")}
    if not label_file:
        raise LabelError(f"{image_id}: no label file")
    try:
        labels = read_label_map(label_file)
    except ValueError as e:
        raise LabelError(str(e)) from e
    labels = remap_label_values(labels, label_info.get("label_info"))
    theta = stored_theta(datastore, image_id)
    source = "label map, zones of the stored result"
    if theta is None:
        if model is None:
            raise LabelError(f"{image_id}: no stored zone geometry (run bsnet on the image first)")
        theta = compute_theta(model, datastore, image_id)
        source = "label map, zones recomputed"
    scores, counts = label_map_scores(labels, theta)
    missing = [z for z, s in zip(ZONE_NAMES, scores) if s is None]
    if missing:
        raise LabelError(f"{image_id}: zone(s) {', '.join(missing)} carry no score label in the saved label map")
    complete = [int(s) for s in scores]  # type: ignore[arg-type]
    return {"scores": complete, "brixia": scores_to_string(complete), "source": source, "zone_label_pixels": counts}
