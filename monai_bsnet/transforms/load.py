"""Loading chest X-rays: DICOM, PNG/JPEG (and anything Pillow reads), NIfTI -> grey image in [0, 1].

One function per format turns a file into a float image (H, W) in [0, 1], where 0 is black and 1 is
white as a radiologist sees it, plus metadata. :class:`LoadCXR` picks the format from the file's
content (not its name), checks that the image is something BS-Net may score, and returns a MONAI
``MetaTensor`` (1, H, W). Every problem raises :class:`~monai_bsnet.errors.CXRInputError` naming
the file and the reason.

Intensity conventions, per format:

- DICOM: stored values -> modality LUT (RescaleSlope/Intercept or Modality LUT Sequence) -> VOI LUT
  (VOI LUT Sequence, else WindowCenter/WindowWidth), both with pydicom -> scaled to [0, 1] over the
  nominal output range (the range of the LUT's values for a VOI LUT table, else the range of
  ``BitsStored`` stored values through the modality LUT: what a viewer maps to black..white) ->
  inverted for MONOCHROME1. Colour (RGB, YBR) becomes luma (ITU-R BT.601).
- PNG/JPEG/TIFF/BMP: 8-bit over 0..255, 16-bit over 0..65535; colour becomes luma; an alpha
  channel is dropped; EXIF orientation is applied (photos of screens and films).
- NIfTI (as MONAI Label hands DICOMweb CR/DX series over): a 2D image or a single-slice volume,
  axes (x, y) -> (rows, columns), scaled over its own min..max (NIfTI keeps no display range).
"""

from __future__ import annotations

import math
import os
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, Transform

from monai_bsnet.errors import CXRInputError

__all__ = ["LoadCXR", "LoadCXRd", "read_cxr", "MIN_IMAGE_SIZE", "LATERAL_VIEWS", "sniff_format"]

#: Images smaller than this (in pixels, either side) are refused: nothing reliable can be scored.
MIN_IMAGE_SIZE = 64
#: DICOM ViewPosition values of lateral views (BS-Net scores frontal PA/AP views only).
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD"})
_SUPPORTED_PHOTOMETRIC = ("MONOCHROME1", "MONOCHROME2", "RGB", "YBR_FULL", "YBR_FULL_422")
_LUMA = np.array([0.299, 0.587, 0.114])
_PILLOW_GREY = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})


def sniff_format(path: Path) -> str:
    """``"dicom"``, ``"nifti"`` or ``"pillow"`` from a file's first bytes (and NIfTI's name)."""
    with open(path, "rb") as f:
        head = f.read(132)
    if not head:
        raise CXRInputError(path, "empty file (0 bytes)")
    if head[128:132] == b"DICM":
        return "dicom"
    name = path.name.lower()
    if name.endswith((".nii", ".nii.gz")):
        return "nifti"
    if name.endswith(".dcm"):
        return "dicom"  # a DICOM file without the 128-byte preamble, read with force
    return "pillow"


def _text(ds, keyword: str) -> str:
    value = ds.get(keyword, "")
    return "" if value is None else str(value).strip()


def _metadata(**values: Any) -> dict[str, Any]:
    """The metadata record of one image; every key is always present, so that batches collate."""
    meta = {
        "format": "",
        "modality": "",
        "photometric_interpretation": "",
        "bits_stored": 0,
        "view_position": "",
        "patient_id": "",
        "study_date": "",
        "study_instance_uid": "",
        "series_instance_uid": "",
        "sop_instance_uid": "",
        "pixel_spacing": [math.nan, math.nan],  # mm, (row, column); NaN where the file does not say
    }
    meta.update(values)
    return meta


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb[..., :3].astype(np.float64) @ _LUMA


# ---- DICOM ---------------------------------------------------------------------------------------
def _read_dicom(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(path, force=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError) as e:
        raise CXRInputError(path, f"not a readable DICOM file ({type(e).__name__}: {e})") from e
    if "SOPClassUID" not in ds and "PixelData" not in ds and "Rows" not in ds:
        # read with force=True, anything parses: a file without these is no DICOM image at all
        raise CXRInputError(path, "not an image (no DICOM image elements found)")
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        sop = _text(ds, "SOPClassUID")
        name = getattr(ds.get("SOPClassUID"), "name", "") if sop else ""
        raise CXRInputError(path, f"DICOM file without pixel data (SOP class {name or sop or 'unknown'})")
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    if frames > 1:
        raise CXRInputError(path, f"multi-frame DICOM ({frames} frames): one frontal radiograph per file is expected")
    photometric = _text(ds, "PhotometricInterpretation").upper()
    if photometric not in _SUPPORTED_PHOTOMETRIC:
        raise CXRInputError(
            path, f"unsupported photometric interpretation {photometric or '(missing)'}: expected one of {', '.join(_SUPPORTED_PHOTOMETRIC)}"
        )
    view = _text(ds, "ViewPosition").upper()
    if view in LATERAL_VIEWS:
        raise CXRInputError(path, f"lateral view (ViewPosition {view}): BS-Net scores frontal (PA/AP) views only")

    try:
        stored = ds.pixel_array
    except Exception as e:  # pydicom raises many types for broken or undecodable pixel data
        syntax = getattr(ds.file_meta, "TransferSyntaxUID", None) if hasattr(ds, "file_meta") else None
        reason = f"cannot decode the pixel data ({type(e).__name__}: {e})"
        if syntax is not None:
            reason += f"; transfer syntax {getattr(syntax, 'name', syntax)}"
        raise CXRInputError(path, reason) from e
    if stored.ndim == 3 and photometric.startswith("MONOCHROME"):
        raise CXRInputError(path, f"3D pixel data of shape {stored.shape}: a single 2D radiograph is expected")

    if photometric.startswith("MONOCHROME"):
        image, (lo, hi) = _dicom_grey(ds, stored)
    else:  # colour: a screenshot or secondary capture of a grey image
        if photometric.startswith("YBR") and not ds.file_meta.TransferSyntaxUID.is_compressed:
            image = stored[..., 0].astype(np.float64)  # Y is the luma already
        else:  # decoders hand compressed colour images over as RGB
            image = _luma(stored)
        lo, hi = 0.0, float(2 ** int(ds.get("BitsStored", 8)) - 1)
    image = np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0)
    if photometric == "MONOCHROME1":
        image = 1.0 - image  # MONOCHROME1: the lowest value is white

    spacing = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
    meta = _metadata(
        format="dicom",
        modality=_text(ds, "Modality"),
        photometric_interpretation=photometric,
        bits_stored=int(ds.get("BitsStored", 0) or 0),
        view_position=view,
        patient_id=_text(ds, "PatientID"),
        study_date=_text(ds, "StudyDate"),
        study_instance_uid=_text(ds, "StudyInstanceUID"),
        series_instance_uid=_text(ds, "SeriesInstanceUID"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"),
        pixel_spacing=[float(spacing[0]), float(spacing[1])] if spacing and len(spacing) == 2 else [math.nan, math.nan],
    )
    return image, meta


def _dicom_grey(ds, stored: np.ndarray) -> tuple[np.ndarray, tuple[float, float]]:
    """Modality and VOI LUTs on a grey image; returns the values and their nominal (black, white) range."""
    from pydicom.pixel_data_handlers.util import apply_modality_lut, apply_voi_lut

    bits = int(ds.get("BitsStored", 8 * stored.itemsize))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    extremes = np.array([-(2 ** (bits - 1)), 2 ** (bits - 1) - 1] if signed else [0, 2**bits - 1])
    image = stored
    # an identity rescale (DX files must carry slope 1, intercept 0) would only turn the integers into
    # floats, which pydicom's VOI LUT then warns about: apply the modality LUT when it changes values
    if "ModalityLUTSequence" in ds or float(ds.get("RescaleSlope", 1)) != 1 or float(ds.get("RescaleIntercept", 0)) != 0:
        image = apply_modality_lut(stored, ds)
        extremes = apply_modality_lut(extremes, ds)  # the nominal range goes through the same LUT
    lo, hi = (float(v) for v in extremes)
    voi_lut = ds.get("VOILUTSequence")
    if voi_lut:
        lut = np.asarray(voi_lut[0].LUTData, dtype=np.float64)
        lo, hi = float(lut.min()), float(lut.max())  # vendors' LUT descriptors often overstate the bits
        image = apply_voi_lut(image, ds, index=0, prefer_lut=True)
    elif "WindowCenter" in ds and "WindowWidth" in ds:
        image = apply_voi_lut(image, ds, index=0)  # windowing maps onto the same nominal range
    return image.astype(np.float64), (lo, hi)


# ---- Pillow ---------------------------------------------------------------------------------------
def _read_pillow(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()  # decode now: truncated files fail here, not later
            kind = (im.format or path.suffix.lstrip(".")).lower()
            im = ImageOps.exif_transpose(im)
            mode = im.mode
            grey = mode in _PILLOW_GREY
            if mode.startswith("I"):  # 16-bit (I;16*) or 32-bit integer grey
                image, hi, bits = np.asarray(im).astype(np.float64), 65535.0, 16
            elif mode == "F":
                image = np.asarray(im).astype(np.float64)
                hi, bits = max(float(image.max()), 1.0), 32
            elif grey:  # L, LA, 1: the grey channel, any alpha dropped
                image, hi, bits = np.asarray(im.getchannel(0).convert("L")).astype(np.float64), 255.0, 8
            else:  # RGB(A), P, CMYK, YCbCr, ...: luma of the RGB rendering
                image, hi, bits = _luma(np.asarray(im.convert("RGB"))), 255.0, 8
    except UnidentifiedImageError as e:
        raise CXRInputError(path, "not an image (neither DICOM nor a format Pillow reads)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise CXRInputError(path, f"truncated or corrupt image file ({e})") from e
    if image.ndim != 2:
        raise CXRInputError(path, f"unexpected pixel array of shape {image.shape} in {kind.upper()} mode {mode}")
    meta = _metadata(format=kind, photometric_interpretation="MONOCHROME2" if grey else "RGB", bits_stored=bits)
    return np.clip(image / hi, 0.0, 1.0), meta


# ---- NIfTI ----------------------------------------------------------------------------------------
def _read_nifti(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    import nibabel as nib

    try:
        img = nib.load(str(path))
        data = np.asarray(img.dataobj, dtype=np.float64)
    except Exception as e:  # nibabel raises several types for broken files
        raise CXRInputError(path, f"not a readable NIfTI file ({type(e).__name__}: {e})") from e
    squeezed = data.reshape([s for s in data.shape if s != 1]) if data.ndim > 2 else data
    if squeezed.ndim != 2:
        raise CXRInputError(path, f"3D volume of shape {data.shape}: a single 2D radiograph (one slice) is expected")
    image = squeezed.T  # NIfTI voxel axes are (x = column, y = row)
    lo, hi = float(image.min()), float(image.max())
    zooms = img.header.get_zooms()
    meta = _metadata(format="nifti", photometric_interpretation="MONOCHROME2", pixel_spacing=[float(zooms[1]), float(zooms[0])])
    return np.clip((image - lo) / max(hi - lo, 1e-12), 0.0, 1.0), meta


_READERS = {"dicom": _read_dicom, "pillow": _read_pillow, "nifti": _read_nifti}


def read_cxr(path: str | os.PathLike, min_size: int = MIN_IMAGE_SIZE) -> tuple[np.ndarray, dict[str, Any]]:
    """Read one chest X-ray file as a float image (H, W) in [0, 1] and its metadata.

    Raises:
        CXRInputError: the file is missing, empty, truncated, not an image, has no pixel data, holds
            several frames or a volume, has an unsupported photometric interpretation, is smaller
            than ``min_size`` pixels, or is a lateral view according to its DICOM tags.
    """
    path = Path(path)
    if not path.is_file():
        raise CXRInputError(path, "no such file")
    image, meta = _READERS[sniff_format(path)](path)
    height, width = image.shape
    if min(height, width) < min_size:
        raise CXRInputError(path, f"image of {width} x {height} pixels is smaller than the {min_size} px minimum")
    if not np.isfinite(image).all():
        raise CXRInputError(path, "pixel data holds NaN or infinite values")
    meta["filename_or_obj"] = str(path)
    meta["spatial_shape"] = [height, width]  # the original geometry, to map outputs back onto
    return image.astype(np.float32), meta


class LoadCXR(Transform):
    """Load a chest X-ray file as a ``MetaTensor`` (1, H, W) in [0, 1] (0 = black) with its metadata.

    The metadata (``tensor.meta``) holds ``filename_or_obj``, ``spatial_shape`` (original H, W),
    ``format``, ``modality``, ``photometric_interpretation``, ``bits_stored``, ``view_position``,
    ``patient_id``, ``study_date``, ``study_instance_uid``, ``series_instance_uid``,
    ``sop_instance_uid`` and ``pixel_spacing`` (mm, row/column; NaN when unknown); strings are empty
    where the file does not say. See the module documentation for the intensity conventions.

    Args:
        min_size: smallest accepted side in pixels.
    """

    def __init__(self, min_size: int = MIN_IMAGE_SIZE) -> None:
        self.min_size = min_size

    def __call__(self, path: str | os.PathLike) -> MetaTensor:
        image, meta = read_cxr(path, self.min_size)
        return MetaTensor(torch.from_numpy(image)[None], meta=meta)


class LoadCXRd(MapTransform):
    """Dictionary version of :class:`LoadCXR`: replaces the file paths under ``keys`` by images."""

    def __init__(self, keys: KeysCollection, min_size: int = MIN_IMAGE_SIZE, allow_missing_keys: bool = False) -> None:
        super().__init__(keys, allow_missing_keys)
        self.loader = LoadCXR(min_size)

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        for key in self.key_iterator(d):
            d[key] = self.loader(d[key])
        return d
