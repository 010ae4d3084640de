"""Scoring chest X-ray files end to end (the bundle's inference and ``bsnet predict``)."""

from monai_bsnet.inference.inputs import CXRInput, find_inputs
from monai_bsnet.inference.predictor import QUALITY_FLAGS, BrixiaPredictor
from monai_bsnet.inference.zone_map import ZONE_BANDS, zone_index_map, zone_label_map

__all__ = ["BrixiaPredictor", "CXRInput", "QUALITY_FLAGS", "ZONE_BANDS", "find_inputs", "zone_index_map", "zone_label_map"]
