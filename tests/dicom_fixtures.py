"""DICOM files of every kind a chest X-ray tool meets, made from real radiographs at test time.

Nothing here is committed as a file: tests write these DICOMs into temporary folders from the
bundle's sample radiographs (or ``../shared/data``), so that DICOM handling is tested on real anatomy.

:func:`write_dicom` takes a grey uint8 image as it should be displayed (0 black, 255 white) and
stores it in one of :data:`KINDS`; each kind documents the stored values, so a test knows what a
correct reader must give back. :func:`write_bad_file` makes the inputs a reader must refuse.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pydicom
from PIL import Image
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    ExplicitVRLittleEndian,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = ["KINDS", "BAD_KINDS", "write_dicom", "write_bad_file", "load_source"]

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage


def load_source(path: str | Path, size: tuple[int, int] | None = None) -> np.ndarray:
    """A real radiograph as grey uint8 (H, W), resized to ``size`` = (width, height) if given."""
    image = Image.open(path).convert("L")
    if size is not None:
        image = image.resize(size, Image.BILINEAR)
    return np.asarray(image)


def _dataset(path: Path, pixels: np.ndarray, sop_class: str, modality: str, syntax: str) -> FileDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName = "CXR-TEST-001", "Test^Radiograph"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.SeriesNumber, ds.InstanceNumber = "20200315", 1, 1
    ds.Modality, ds.BodyPartExamined = modality, "CHEST"
    ds.ViewPosition = "PA" if modality == "DX" else "AP"
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelRepresentation = 0
    spacing = [0.139, 0.139] if modality == "DX" else [0.2, 0.2]
    ds.ImagerPixelSpacing = spacing
    if modality == "CR":
        ds.PixelSpacing = spacing
    return ds


def _store(ds: Dataset, stored: np.ndarray, bits_stored: int) -> None:
    ds.BitsAllocated = 8 if stored.dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelData = stored.tobytes()


def _mono2_8bit(ds: Dataset, v: np.ndarray) -> None:
    """stored = v (8 bits)."""
    _store(ds, v.astype(np.uint8), 8)


def _mono1_16bit(ds: Dataset, v: np.ndarray) -> None:
    """MONOCHROME1, stored = 65535 - 257 v (16 bits): white is the lowest value."""
    ds.PhotometricInterpretation = "MONOCHROME1"
    _store(ds, (65535 - v.astype(np.uint16) * 257).astype(np.uint16), 16)


def _mono2_12bit(ds: Dataset, v: np.ndarray) -> None:
    """stored = round(4095 v / 255) in 16-bit words, 12 bits stored."""
    _store(ds, np.round(v.astype(np.float64) * 4095 / 255).astype(np.uint16), 12)


def _mono2_16bit_window(ds: Dataset, v: np.ndarray) -> None:
    """stored = 20000 + 16 v; WindowCenter 22040.5 / WindowWidth 4081 map 20000..24080 onto black..white."""
    _store(ds, (20000 + 16 * v.astype(np.uint16)).astype(np.uint16), 16)
    ds.WindowCenter, ds.WindowWidth = 22040.5, 4081
    ds.VOILUTFunction = "LINEAR"


def _mono2_voilut(ds: Dataset, v: np.ndarray) -> None:
    """stored = 4095 - 16 v (12 bits, inverted), and a VOI LUT table that inverts it back:
    LUT[x] = 16 (4095 - x), so the displayed values are 256 v (without the LUT the image is a negative)."""
    _store(ds, (4095 - 16 * v.astype(np.uint16)).astype(np.uint16), 12)
    item = Dataset()
    item.LUTDescriptor = [4096, 0, 16]
    item.LUTData = [16 * (4095 - x) for x in range(4096)]
    item["LUTData"].VR = "US"
    ds.VOILUTSequence = [item]


def _mono2_rescale(ds: Dataset, v: np.ndarray) -> None:
    """stored = 1024 + 8 v (12 bits) with RescaleSlope 2, RescaleIntercept -2048: modality values 16 v."""
    _store(ds, (1024 + 8 * v.astype(np.uint16)).astype(np.uint16), 12)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, -2048, "US"


def _rle(inner: Callable[[Dataset, np.ndarray], None]) -> Callable[[Dataset, np.ndarray], None]:
    def encode(ds: Dataset, v: np.ndarray) -> None:
        inner(ds, v)
        ds.compress(RLELossless, encoding_plugin="pydicom")

    encode.__doc__ = f"{inner.__doc__} RLE Lossless."
    return encode


def _jpeg_baseline(ds: Dataset, v: np.ndarray) -> None:
    """stored = v (8 bits), JPEG Baseline (lossy, quality 95), encoded with Pillow."""
    buffer = io.BytesIO()
    Image.fromarray(v.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = encapsulate([buffer.getvalue()])
    ds["PixelData"].is_undefined_length = True
    ds.LossyImageCompression = "01"


def _jpeg2000(ds: Dataset, v: np.ndarray) -> None:
    """stored = 257 v (16 bits), JPEG 2000 lossless, encoded with openjpeg."""
    from openjpeg import encode

    stored = (v.astype(np.uint16) * 257).astype(np.uint16)
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelData = encapsulate([encode(stored, bits_stored=16, photometric_interpretation=2, use_mct=False)])
    ds["PixelData"].is_undefined_length = True


def _secondary_capture_rgb(ds: Dataset, v: np.ndarray) -> None:
    """Secondary capture (a screenshot): RGB, 8 bits, R = G = B = v."""
    rgb = np.repeat(v.astype(np.uint8)[..., None], 3, axis=2)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.Modality = "OT"
    del ds.ImagerPixelSpacing
    _store(ds, rgb, 8)


#: kind -> (SOP class, modality, transfer syntax after encoding, writer); see each writer's docstring.
KINDS: dict[str, tuple[str, str, str, Callable[[Dataset, np.ndarray], None]]] = {
    "dx_mono2_8bit": (DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_8bit),
    "dx_mono1_16bit": (DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono1_16bit),
    "cr_mono2_12bit": (CR_STORAGE, "CR", ExplicitVRLittleEndian, _mono2_12bit),
    "dx_mono2_16bit_window": (DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_16bit_window),
    "dx_mono2_12bit_voilut": (DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_voilut),
    "dx_mono2_12bit_rescale": (DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_rescale),
    "dx_mono1_16bit_rle": (DX_STORAGE, "DX", RLELossless, _rle(_mono1_16bit)),
    "cr_mono2_12bit_rle": (CR_STORAGE, "CR", RLELossless, _rle(_mono2_12bit)),
    "dx_mono2_8bit_jpeg": (DX_STORAGE, "DX", JPEGBaseline8Bit, _jpeg_baseline),
    "cr_mono2_16bit_j2k": (CR_STORAGE, "CR", JPEG2000Lossless, _jpeg2000),
    "sc_rgb": (SecondaryCaptureImageStorage, "OT", ExplicitVRLittleEndian, _secondary_capture_rgb),
}


def write_dicom(path: str | Path, pixels: np.ndarray, kind: str, **tags: Any) -> Path:
    """Store the displayed grey image ``pixels`` (uint8, H x W) as a DICOM file of ``kind``.

    ``tags`` set or override any DICOM keyword (``PatientID="P7"``, ``ViewPosition="AP"``, ...).
    """
    sop_class, modality, syntax, writer = KINDS[kind]
    path = Path(path)
    ds = _dataset(path, pixels, sop_class, modality, ExplicitVRLittleEndian)
    writer(ds, np.asarray(pixels))
    ds.file_meta.TransferSyntaxUID = syntax
    for keyword, value in tags.items():
        setattr(ds, keyword, value)
    ds.save_as(path, write_like_original=False)
    return path


def _no_pixel_data(path: Path, v: np.ndarray) -> None:
    ds = _dataset(path, v, DX_STORAGE, "DX", ExplicitVRLittleEndian)
    ds.save_as(path, write_like_original=False)


def _multiframe(path: Path, v: np.ndarray) -> None:
    ds = _dataset(path, v, DX_STORAGE, "DX", ExplicitVRLittleEndian)
    _store(ds, np.stack([v, v, v]).astype(np.uint8), 8)
    ds.NumberOfFrames = 3
    ds.save_as(path, write_like_original=False)


def _tagged(**tags: Any) -> Callable[[Path, np.ndarray], None]:
    def write(path: Path, v: np.ndarray) -> None:
        write_dicom(path, v, "dx_mono2_8bit", **tags)

    return write


def _tiny(path: Path, v: np.ndarray) -> None:
    write_dicom(path, np.asarray(Image.fromarray(v).resize((40, 40))), "dx_mono2_8bit")


def _palette(path: Path, v: np.ndarray) -> None:
    ds = _dataset(path, v, SecondaryCaptureImageStorage, "OT", ExplicitVRLittleEndian)
    ds.PhotometricInterpretation = "PALETTE COLOR"
    grey = list(range(0, 65536, 257))
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", np.array(grey, dtype=np.uint16).tobytes())
    _store(ds, v.astype(np.uint8), 8)
    ds.save_as(path, write_like_original=False)


def _truncated(path: Path, v: np.ndarray) -> None:
    write_dicom(path, v, "dx_mono1_16bit")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


#: Inputs a reader must refuse, with the reason its error should give.
BAD_KINDS: dict[str, tuple[Callable[[Path, np.ndarray], None], str]] = {
    "empty": (lambda path, v: path.write_bytes(b""), "empty file"),
    "not_an_image": (lambda path, v: path.write_text("Chest X-ray report: no acute findings.\n" * 20), "not an image"),
    "no_pixel_data": (_no_pixel_data, "without pixel data"),
    "multiframe": (_multiframe, "multi-frame DICOM (3 frames)"),
    "lateral": (_tagged(ViewPosition="LL"), "lateral view"),
    "tiny": (_tiny, "smaller than the 64 px minimum"),
    "palette_color": (_palette, "unsupported photometric interpretation PALETTE COLOR"),
    "truncated": (_truncated, "pixel data"),
}


def write_bad_file(path: str | Path, pixels: np.ndarray, kind: str) -> Path:
    """Write the bad input ``kind`` of :data:`BAD_KINDS` (a ``.dcm`` name for DICOM kinds)."""
    path = Path(path)
    BAD_KINDS[kind][0](path, np.asarray(pixels))
    return path
