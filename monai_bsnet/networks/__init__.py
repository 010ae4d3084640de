"""BS-Net and its parts."""

from monai_bsnet.networks.alignment import LungAlignmentNet, warp
from monai_bsnet.networks.encoder import ResNet18Encoder
from monai_bsnet.networks.bsnet import STAGES, BSNet, BSNetOutput, BSNetZoneProbabilities
from monai_bsnet.networks.scoring import ZoneClassifier, ZonePyramid, ZoneScoringHead, pool_zones, zone_boxes
from monai_bsnet.networks.segmentation import UNetPlusPlusDecoder
from monai_bsnet.networks.stages import LungSegmenter, MaskAligner, ZoneScorer
from monai_bsnet.networks.weights import load_weights, state_dict_from_checkpoint

__all__ = [
    "BSNet",
    "BSNetOutput",
    "BSNetZoneProbabilities",
    "ResNet18Encoder",
    "STAGES",
    "LungAlignmentNet",
    "UNetPlusPlusDecoder",
    "ZoneClassifier",
    "ZonePyramid",
    "ZoneScoringHead",
    "pool_zones",
    "zone_boxes",
    "warp",
    "LungSegmenter",
    "MaskAligner",
    "ZoneScorer",
    "load_weights",
    "state_dict_from_checkpoint",
]
