"""Dataset readers: public chest X-ray data layouts -> MONAI datalists (lists of dicts).

Every item holds ``image`` (absolute path) and, depending on the source, ``label`` (six Brixia zone
scores A..F, 0..3; or the lung mask path for segmentation data), ``global`` (their sum), ``mask``,
``patient_id`` (string, ``""`` when unknown) and source-specific fields documented per reader.
Bad tables and missing files raise :class:`monai_bsnet.errors.CXRInputError` naming the file, the
line and the entry; readers that can leave out entries with missing files take ``missing="skip"``.

- :func:`brixia_public_datalist`: the public BrixIA annotations (senior and junior raters).
- :func:`brixia_full_datalist`, :func:`brixia_full_splits`: the full BrixIA COVID-19 dataset and its
  patient-grouped train/val split with the consensus set as test.
- :func:`lungseg_datalist`, :func:`image_mask_pairs`: lung-mask folders.
- :func:`cohen_severity_datalist`: Cohen et al.'s geographic extent and opacity scores;
  :func:`cohen_scores_of`: those of a datalist's images.
"""

from monai_bsnet.data.brixia import RATERS, brixia_full_datalist, brixia_full_splits, brixia_public_datalist
from monai_bsnet.data.cohen import cohen_scores_of, cohen_severity_datalist
from monai_bsnet.data.lung_masks import IMAGE_SUFFIXES, image_mask_pairs, lungseg_datalist

__all__ = [
    "IMAGE_SUFFIXES",
    "RATERS",
    "brixia_full_datalist",
    "brixia_full_splits",
    "brixia_public_datalist",
    "cohen_scores_of",
    "cohen_severity_datalist",
    "image_mask_pairs",
    "lungseg_datalist",
]
