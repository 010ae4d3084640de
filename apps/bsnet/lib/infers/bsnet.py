"""Infer tasks: the Brixia zone map (``bsnet``) and the plain lung mask (``lung``).

Both are MONAI Label segmentation tasks over the shared :class:`~lib.model.BrixiaModel`; the work is
done by ``monai_bsnet`` (loading, preprocessing, network, record, zone map, label map writer). The
label comes back in the image's own geometry and, by default, in a lossless format that viewers
overlay on the image: PNG for PNG/JPEG images, NIfTI for DICOM and NIfTI images. A client may ask
for another with the usual MONAI Label parameters ``result_extension`` (OHIF asks ``.nrrd``),
``result_dtype`` and ``result_compress``.
"""

from __future__ import annotations

import logging
import math
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask

from lib.model import RANDOM_WEIGHTS_FLAG, BrixiaModel
from monai_bsnet.inference.single_image import ScoredImage, score_image
from monai_bsnet.label_maps import BRIXIA_LABEL_COLORS, BRIXIA_LABELS, LUNG_LABELS, write_label_map
from monai_bsnet.transforms import LoadCXRd
from monai_bsnet.zones import ZONE_NAMES

logger = logging.getLogger(__name__)

#: Label formats a client may ask for (ITK writes them all); anything else falls back to the default.
RESULT_EXTENSIONS = (".png", ".nii.gz", ".nii", ".nrrd", ".nhdr", ".mha", ".mhd")


def default_extension(image_format: str) -> str:
    """Lossless label format matching the image: PNG beside PNG/JPEG (a JPEG label would be ruined by
    compression), NIfTI beside DICOM and NIfTI (keeps pixel spacing; 3D Slicer and MONAI Label read it)."""
    return ".nii.gz" if image_format in ("dicom", "nifti") else ".png"


class BrixiaZonesInfer(BasicInferTask):
    """BS-Net as a 2D segmentation task whose label is the score: the Brixia zone map.

    Each of the six zones (A-C: patient's right lung, left of the image; D-F: left lung) is drawn
    inside the lungs and filled with the label of its score, ``brixia 0``..``brixia 3`` (values 1..4);
    zones are kept apart by a thin background line. The result JSON holds the full record: zone
    scores and probabilities, global score, quality flags, the zone geometry (``theta``) and the
    zone-score entropies.
    """

    output = "zones"

    def __init__(self, model: BrixiaModel, description: str | None = None, config: dict[str, Any] | None = None) -> None:
        labels = BRIXIA_LABELS if self.output == "zones" else LUNG_LABELS
        super().__init__(
            path=model.paths,
            network=None,
            type=InferType.SEGMENTATION,
            labels=labels,
            dimension=2,
            description=description
            or "BS-Net Brixia score of a frontal chest X-ray: six lung zones, each filled with its score label "
            "(brixia 0 green .. brixia 3 red); full result record in the JSON. Research use only.",
            config=config,
        )
        self.model = model

    # ---- MONAI Label plumbing ------------------------------------------------------------------------
    def is_valid(self) -> bool:
        return True  # without weights the model still runs (random, flagged): never hide the task

    def get_path(self, validate: bool = True) -> str | None:
        return self.model.current_path()

    def info(self) -> dict[str, Any]:
        info = super().info()
        if self.output == "zones":
            info["label_colors"] = {k: list(v) for k, v in BRIXIA_LABEL_COLORS.items()}
        info["weights"] = self.model.current_path() or "random initialisation"
        return info

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        # LoadCXR reads PNG/JPEG/DICOM/NIfTI by content and refuses what BS-Net cannot score
        return [LoadCXRd(keys="image")]

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        return []

    def inverse_transforms(self, data: dict[str, Any] | None = None) -> None:
        return None

    def clear(self) -> None:
        pass

    # ---- the work ---------------------------------------------------------------------------------------
    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda") -> dict[str, Any]:
        predictor, weights = self.model.predictor(device)
        source = str(data.get("image_path") or data["image"].meta.get("filename_or_obj", "upload"))
        scored = score_image(predictor, data["image"], source)
        record = scored.record
        record["model"]["weights"] = weights["weights"]
        record["model"]["fine_tuned"] = weights["fine_tuned"]
        if weights["random"] and RANDOM_WEIGHTS_FLAG not in record["quality_flags"]:
            record["quality_flags"].append(RANDOM_WEIGHTS_FLAG)
        record["image_format"] = data["image"].meta.get("format", "")
        if self.output == "zones":
            record["label_values"] = dict(BRIXIA_LABELS)
            data["pred"] = scored.labels
        elif self.output == "explain":
            record["label_values"] = dict(BRIXIA_LABELS)
            data["pred"] = self.explanation_label(predictor, data, scored, record)
        else:
            record["label_values"] = dict(LUNG_LABELS)
            data["pred"] = scored.lung.astype(np.uint8)
        data["result"] = record
        return data

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, dict[str, Any]]:
        requested = str(extension or data.get("result_extension") or "").lower()
        image_format = data["result"].get("image_format", "")
        ext = requested if requested in RESULT_EXTENSIONS else default_extension(image_format)
        out_dtype = np.dtype(dtype or data.get("result_dtype") or "uint8")
        compress = bool(data.get("result_compress", True))
        path = tempfile.NamedTemporaryFile(suffix=ext, prefix=f"bsnet_{self.output}_", delete=False).name
        # the label lies over the image in any viewer: same size, pixel spacing, origin and axes
        write_label_map(
            data["pred"], path, reference=data.get("image_path"), dtype=out_dtype, compress=compress, strict=False
        )
        result = json_safe(data["result"])
        result["label_file_format"] = ext
        return path, result


class BrixiaExplainInfer(BrixiaZonesInfer):
    """Where each zone's score comes from: the explanation map of :mod:`monai_bsnet.explain` as a label.

    Viewers show labels, not float maps, so the label keeps, inside each zone, the pixels whose
    relevance for the zone's predicted score reaches half of that zone's strongest, filled with the
    score's label (``brixia 0``..``brixia 3``, the zone map's colours): the "hot spots" of the BrixIA
    figures. The JSON holds the result record and, per zone, the strongest relevance and the share
    of the zone's lung that is kept. Grad-CAM by default (~15 s on a 2-core CPU); ``method``
    ``occlusion`` (the authors' super-pixels, ~50 s) with ``{"explain_method": "occlusion"}`` in the
    request or ``--conf explain_method occlusion``.
    """

    output = "explain"
    #: a pixel is kept where its relevance reaches this fraction of the zone's strongest
    hot_fraction = 0.5

    def __init__(self, model: BrixiaModel, method: str = "gradcam", config: dict[str, Any] | None = None) -> None:
        super().__init__(
            model,
            description="BS-Net explanation: in each zone, the pixels that drive its Brixia score, filled with the "
            "score's label; the JSON holds the record and per-zone relevance. Research use only.",
            config=config,
        )
        self.method = method

    def explanation_label(self, predictor: Any, data: dict[str, Any], scored: ScoredImage, record: dict[str, Any]) -> np.ndarray:
        from monai_bsnet.explain import explain

        method = str(data.get("explain_method") or self.method)
        # the scoring's own network input and lung map: nothing is preprocessed or segmented twice
        explanation = explain(predictor.network, scored.net_input, method, lung=scored.network_lung)
        relevance, _ = explanation.to_original(scored.labels.shape)
        label = np.zeros(scored.labels.shape, np.uint8)
        zones = {}
        for z, name in enumerate(ZONE_NAMES):
            score = record["zones"][name]["score"]
            inside = (scored.zone_index == z) & scored.lung
            strength = np.where(inside, relevance[z, score], 0.0)
            peak = float(strength.max()) if inside.any() else 0.0
            hot = inside & (strength >= self.hot_fraction * peak) if peak > 0 else np.zeros_like(inside)
            label[hot] = score + 1
            zones[name] = {"score": score, "peak_relevance": peak, "hot_fraction_of_zone": float(hot.sum() / max(inside.sum(), 1))}
        record["explanation"] = {"method": method, "units": explanation.units, "zones": zones,
                                 "label": f"pixels with relevance >= {self.hot_fraction} x the zone's peak, for its predicted score"}
        return label


def json_safe(value: Any) -> Any:
    """``value`` with NaN/infinite numbers as None: the result JSON is parsed by browsers (OHIF), whose
    JSON.parse refuses Python's ``NaN`` (a PNG has no pixel spacing: the record says NaN)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class LungInfer(BrixiaZonesInfer):
    """BS-Net's lung segmentation alone: label ``lung`` (1) in the image's own geometry."""

    output = "lung"

    def __init__(self, model: BrixiaModel, config: dict[str, Any] | None = None) -> None:
        super().__init__(
            model,
            description="BS-Net lung segmentation of a frontal chest X-ray (label 'lung'); the JSON holds the "
            "Brixia result record too. Research use only.",
            config=config,
        )
