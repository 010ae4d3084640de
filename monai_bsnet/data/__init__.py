"""Dataset readers: public data layouts -> MONAI datalists (lists of dicts)."""

from monai_bsnet.data.brixia import RATERS, brixia_full_datalist, brixia_full_splits, brixia_public_datalist
from monai_bsnet.data.cohen import cohen_severity_datalist
from monai_bsnet.data.lung_masks import image_mask_pairs, lungseg_datalist

__all__ = [
    "RATERS",
    "brixia_full_datalist",
    "brixia_full_splits",
    "brixia_public_datalist",
    "cohen_severity_datalist",
    "image_mask_pairs",
    "lungseg_datalist",
]
