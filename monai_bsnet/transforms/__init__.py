"""MONAI transforms of monai-bsnet: loading, preprocessing, alignment targets, lung-mask clean-up."""

from monai_bsnet.transforms.augment import LATERAL_ZONE_SWAP, RandLateralFlipd, RandRaterLabeld, mirror_average, swap_zone_sides
from monai_bsnet.transforms.alignment import CanonicalLungAlignment, CanonicalLungAlignmentd, lung_orientation
from monai_bsnet.transforms.load import LATERAL_VIEWS, MIN_IMAGE_SIZE, LoadCXR, LoadCXRd, read_cxr
from monai_bsnet.transforms.lung_mask import clean_lung_probability
from monai_bsnet.transforms.preprocess import (
    NETWORK_SIZE,
    EqualiseHistogram,
    EqualiseHistogramd,
    cxr_preprocessing,
    cxr_preprocessingd,
    equalise_histogram,
    to_original_geometry,
)

__all__ = [
    "CanonicalLungAlignment",
    "LATERAL_ZONE_SWAP",
    "RandLateralFlipd",
    "RandRaterLabeld",
    "swap_zone_sides",
    "mirror_average",
    "CanonicalLungAlignmentd",
    "EqualiseHistogram",
    "EqualiseHistogramd",
    "LATERAL_VIEWS",
    "LoadCXR",
    "LoadCXRd",
    "MIN_IMAGE_SIZE",
    "NETWORK_SIZE",
    "cxr_preprocessing",
    "cxr_preprocessingd",
    "equalise_histogram",
    "clean_lung_probability",
    "lung_orientation",
    "read_cxr",
    "to_original_geometry",
]
