"""MONAI transforms of monai-bsnet."""

from monai_bsnet.transforms.alignment import CanonicalLungAlignment, CanonicalLungAlignmentd, lung_orientation

__all__ = ["CanonicalLungAlignment", "CanonicalLungAlignmentd", "lung_orientation"]
