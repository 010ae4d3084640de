"""DICOM files of every kind a chest X-ray tool meets, made from real radiographs at test time.

Why: a loader that only ever sees one encoding passes its tests and then shows a negative, a black
square or a crash on the first MONOCHROME1, windowed or compressed file from a PACS. Real DICOMs
cannot be shipped (patients), so this module turns a real radiograph (a bundle sample or one of
``../shared/data``) into each encoding instead. Nothing here is committed as a file: tests write
these DICOMs into temporary folders, so DICOM handling is tested on real anatomy.

:func:`write_dicom` takes a grey uint8 image ``v`` as it should be displayed (0 black, 255 white,
the MONOCHROME2 sense) and stores it as one of :data:`KINDS`. Each kind's writer documents its
stored values as a function of ``v`` and how the file's own tags (modality LUT, VOI LUT/window,
MONOCHROME1) turn them back into ``v``, so a test knows exactly what a correct reader must give:

===========================  ====  ==========================  =================================================
kind                         bits  transfer syntax             stored values -> displayed
===========================  ====  ==========================  =================================================
``dx_mono2_8bit``            8     Explicit VR Little Endian   ``v``
``dx_mono1_16bit``           16    Explicit VR Little Endian   ``65535 - 257 v``; MONOCHROME1: ``65535 - x = 257 v``
``cr_mono2_12bit``           12    Explicit VR Little Endian   ``round(4095 v / 255)`` (16-bit words)
``dx_mono2_16bit_window``    16    Explicit VR Little Endian   ``20000 + 16 v``; window C 22040.5 W 4081 -> ``257 v``
``dx_mono2_12bit_voilut``    12    Explicit VR Little Endian   ``4095 - 16 v`` (a negative); VOI LUT -> ``256 v``
``dx_mono2_16bit_voilut``    16    Explicit VR Little Endian   ``20000 + round(4080 sqrt(v / 255))``; VOI LUT -> ``257 v``
``dx_mono2_12bit_rescale``   12    Explicit VR Little Endian   ``1024 + 8 v``; slope 2, intercept -2048 -> ``16 v``
``dx_mono1_16bit_rle``       16    RLE Lossless                as ``dx_mono1_16bit``
``dx_mono2_16bit_rle``       16    RLE Lossless                ``257 v``
``cr_mono2_12bit_rle``       12    RLE Lossless                as ``cr_mono2_12bit``
``dx_mono2_8bit_jpeg``       8     JPEG Baseline (lossy)       ``v`` + JPEG error (Pillow, quality 95)
``cr_mono2_16bit_j2k``       16    JPEG 2000 Lossless          ``257 v`` (encoded with pylibjpeg-openjpeg)
``dx_mono2_16bit_jpegls``    16    JPEG-LS Lossless            ``257 v`` (encoded with pillow-jpls / CharLS)
``dx_mono1_16bit_jpegls``    16    JPEG-LS Lossless            as ``dx_mono1_16bit``
``sc_rgb``                   8     Explicit VR Little Endian   RGB, ``R = G = B = v`` (Secondary Capture)
===========================  ====  ==========================  =================================================

Every good file is a conformant DX (For Presentation), CR or Secondary Capture instance (checked
with dicom3tools' ``dciodvfy``), with one deliberate exception: the DX IOD requires RescaleSlope 1 and
RescaleIntercept 0, which ``dx_mono2_12bit_rescale`` breaks on purpose, as some vendors' files do.
Because DX For Presentation requires a VOI, DX kinds without a window or table of their own carry
RescaleSlope 1 / RescaleIntercept 0 and a full-range window that changes nothing (8 bits: WindowCenter
128, WindowWidth 256); CR and Secondary Capture kinds carry no VOI at all.

:func:`write_bad_file` makes the inputs a reader must refuse (:data:`BAD_KINDS`), each with the words
its error should contain. :func:`load_source` reads a real radiograph as grey uint8.

Encoders: pydicom 2.4 encodes only RLE itself; JPEG Baseline is Pillow's, JPEG 2000 is
pylibjpeg-openjpeg's and JPEG-LS is pillow-jpls's (a dependency of highdicom), each put into the
DICOM file with :func:`pydicom.encaps.encapsulate`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Callable, NamedTuple

import numpy as np
from PIL import Image
from pydicom.datadict import tag_for_keyword
from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
    generate_uid,
)

__all__ = ["KINDS", "BAD_KINDS", "Kind", "BadKind", "write_dicom", "write_bad_file", "load_source"]

DX_STORAGE = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
CR_STORAGE = "1.2.840.10008.5.1.4.1.1.1"  # Computed Radiography Image Storage

Writer = Callable[[Dataset, np.ndarray], None]


def load_source(path: str | Path, size: int | tuple[int, int] | None = None) -> np.ndarray:
    """A real radiograph as grey uint8 (H, W), resized to ``size`` if given.

    ``size`` is ``(width, height)`` (Pillow's order) or one int for a square. Tests use 256-512 px
    images: the DICOM paths under test do not depend on the size, and small ones keep tests fast.
    """
    image = Image.open(path).convert("L")
    if size is not None:
        width, height = (size, size) if isinstance(size, int) else size
        image = image.resize((width, height), Image.BILINEAR)  # Pillow antialiases when shrinking
    return np.asarray(image)


# ---- the header every good file shares ------------------------------------------------------------
def _dataset(path: Path, pixels: np.ndarray, sop_class: str, modality: str) -> FileDataset:
    """File meta, patient, study, series, equipment and grey image-pixel tags of a chest radiograph.

    Written as Explicit VR Little Endian; compressing writers change the transfer syntax.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.is_little_endian, ds.is_implicit_VR = True, False  # pydicom 2.x writes by these, not the meta
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "CXR-TEST-001", "Test^Radiograph", "", "O"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20200315", "101500", "1", ""
    ds.ReferringPhysicianName = ""
    ds.ContentDate, ds.ContentTime = ds.StudyDate, ds.StudyTime
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.Modality, ds.BodyPartExamined = modality, "CHEST"
    ds.Manufacturer = "monai_bsnet test fixtures"
    ds.ViewPosition = "AP" if modality == "CR" else "PA"
    ds.PatientOrientation = ["L", "F"]  # frontal view as displayed: columns to the patient's left, rows to the feet
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.Rows, ds.Columns = pixels.shape[:2]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.PixelRepresentation = 0
    ds.LossyImageCompression = "00"
    if modality == "DX":
        _dx_tags(ds)
    elif modality == "CR":
        ds.PixelSpacing = ds.ImagerPixelSpacing = [0.2, 0.2]  # a CR plate reader's 200 um
    return ds


def _dx_tags(ds: Dataset) -> None:
    """What the DX For Presentation IOD requires on top (DX Series, DX Image, DX Detector modules)."""
    ds.PresentationIntentType = "FOR PRESENTATION"
    ds.ImagerPixelSpacing = [0.139, 0.139]  # a flat-panel detector's 139 um
    ds.ImageLaterality = "U"  # unpaired: the chest
    ds.AnatomicRegionSequence = [_code("43799004", "SCT", "Chest")]
    ds.PixelIntensityRelationship, ds.PixelIntensityRelationshipSign = "LOG", 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "US"  # DX: identity modality LUT
    ds.BurnedInAnnotation = "NO"
    ds.DetectorType = "SCINTILLATOR"
    ds.PositionerType = ""
    ds.AcquisitionContextSequence = []


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, scheme, meaning
    return item


def _store(ds: Dataset, stored: np.ndarray, bits_stored: int) -> None:
    """Native (uncompressed) pixel data; 8-bit arrays get 8-bit words, others 16-bit ones."""
    ds.BitsAllocated = 8 if stored.dtype == np.uint8 else 16
    ds.BitsStored, ds.HighBit = bits_stored, bits_stored - 1
    ds.PixelData = stored.tobytes()


def _encapsulated(ds: Dataset, frame: bytes, bits_allocated: int, bits_stored: int) -> None:
    """One compressed frame as encapsulated Pixel Data (undefined length, empty offset table)."""
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits_allocated, bits_stored, bits_stored - 1
    ds.PixelData = encapsulate([frame])
    ds["PixelData"].is_undefined_length = True


# ---- the kinds' writers: each docstring is the kind's exact mapping from v ------------------------
def _mono2_8bit(ds: Dataset, v: np.ndarray) -> None:
    """stored = v (8 bits)."""
    _store(ds, v.astype(np.uint8), 8)


def _mono1_16bit(ds: Dataset, v: np.ndarray) -> None:
    """MONOCHROME1, stored = 65535 - 257 v (16 bits): white is the lowest value."""
    ds.PhotometricInterpretation = "MONOCHROME1"
    _store(ds, (65535 - v.astype(np.uint16) * 257).astype(np.uint16), 16)


def _mono2_16bit(ds: Dataset, v: np.ndarray) -> None:
    """stored = 257 v (16 bits): 0..255 spread over the full 0..65535."""
    _store(ds, v.astype(np.uint16) * 257, 16)


def _mono2_12bit(ds: Dataset, v: np.ndarray) -> None:
    """stored = round(4095 v / 255) in 16-bit words, 12 bits stored."""
    _store(ds, np.round(v.astype(np.float64) * 4095 / 255).astype(np.uint16), 12)


def _mono2_16bit_window(ds: Dataset, v: np.ndarray) -> None:
    """stored = 20000 + 16 v; WindowCenter 22040.5 / WindowWidth 4081 map 20000..24080 onto black..white.

    With the linear window of PS3.3 C.11.2.1.2 (output 0..65535) the displayed value is exactly 257 v;
    read over the full 16-bit range without the window the image is a flat grey (20000..24080 of 65535).
    """
    _store(ds, (20000 + 16 * v.astype(np.uint16)).astype(np.uint16), 16)
    ds.WindowCenter, ds.WindowWidth = 22040.5, 4081
    ds.VOILUTFunction = "LINEAR"


def _mono2_voilut(ds: Dataset, v: np.ndarray) -> None:
    """stored = 4095 - 16 v (12 bits, inverted), and a VOI LUT table that inverts it back:
    LUT[x] = 16 (4095 - x), so the displayed values are 256 v (without the LUT the image is a negative)."""
    _store(ds, (4095 - 16 * v.astype(np.uint16)).astype(np.uint16), 12)
    _voi_lut(ds, first_mapped=0, table=16 * (4095 - np.arange(4096)))


def _mono2_16bit_voilut(ds: Dataset, v: np.ndarray) -> None:
    """stored = 20000 + round(4080 sqrt(v / 255)) (16 bits: a square-root, detector-like response);
    VOI LUT from 20000 (4081 entries, 16-bit): LUT[i] = 257 round(255 (i / 4080)^2), so the displayed
    values are exactly 257 v. No window or min-max stretch gives the image back: only the table does.
    """
    stored = 20000 + np.round(4080 * np.sqrt(v.astype(np.float64) / 255))
    _store(ds, stored.astype(np.uint16), 16)
    _voi_lut(ds, first_mapped=20000, table=257 * np.round(255 * (np.arange(4081) / 4080) ** 2))


def _voi_lut(ds: Dataset, first_mapped: int, table: np.ndarray) -> None:
    """A VOI LUT Sequence of one 16-bit table whose first entry maps stored value ``first_mapped``."""
    item = Dataset()
    item.LUTDescriptor = [len(table), first_mapped, 16]
    item.LUTData = [int(x) for x in table]
    item["LUTData"].VR = "US"  # LUTData is "US or OW" in the dictionary: say which
    item.LUTExplanation = "test fixture VOI LUT"
    ds.VOILUTSequence = [item]


def _mono2_rescale(ds: Dataset, v: np.ndarray) -> None:
    """stored = 1024 + 8 v (12 bits) with RescaleSlope 2, RescaleIntercept -2048: modality values 16 v."""
    _store(ds, (1024 + 8 * v.astype(np.uint16)).astype(np.uint16), 12)
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = 2, -2048, "US"


def _rle(inner: Writer) -> Writer:
    """``inner``'s stored values, RLE Lossless (pydicom's own encoder)."""

    def encode(ds: Dataset, v: np.ndarray) -> None:
        inner(ds, v)
        ds.compress(RLELossless, encoding_plugin="pydicom")

    encode.__doc__ = f"{inner.__doc__} RLE Lossless."
    return encode


def _jpeg_baseline(ds: Dataset, v: np.ndarray) -> None:
    """stored = v (8 bits), JPEG Baseline (lossy, quality 95), encoded with Pillow: pydicom 2.4 cannot."""
    buffer = io.BytesIO()
    Image.fromarray(v.astype(np.uint8)).save(buffer, format="JPEG", quality=95)
    _encapsulated(ds, buffer.getvalue(), 8, 8)
    ds.LossyImageCompression, ds.LossyImageCompressionMethod = "01", "ISO_10918_1"
    ds.LossyImageCompressionRatio = round(v.size / len(buffer.getvalue()), 2)


def _jpeg2000(inner: Writer) -> Writer:
    """``inner``'s stored values, JPEG 2000 lossless (reversible 5-3 wavelet), encoded with pylibjpeg-openjpeg."""

    def encode(ds: Dataset, v: np.ndarray) -> None:
        from openjpeg import encode as encode_j2k

        inner(ds, v)
        bits = int(ds.BitsStored)
        # photometric 2 = greyscale: no colour transform; a raw J2K codestream, as DICOM wants (not JP2)
        frame = encode_j2k(ds.pixel_array, bits_stored=bits, photometric_interpretation=2, use_mct=False)
        _encapsulated(ds, frame, int(ds.BitsAllocated), bits)

    encode.__doc__ = f"{inner.__doc__} JPEG 2000 Lossless."
    return encode


def _jpeg_ls(inner: Writer) -> Writer:
    """``inner``'s stored values, JPEG-LS lossless, encoded with pillow-jpls (CharLS)."""

    def encode(ds: Dataset, v: np.ndarray) -> None:
        import pillow_jpls  # noqa: F401  (registers Pillow's "JPEG-LS" format)

        inner(ds, v)
        bits, buffer = int(ds.BitsStored), io.BytesIO()
        # spiff=None: a bare JPEG-LS stream, without the SPIFF header DICOM does not use
        Image.fromarray(ds.pixel_array).save(buffer, format="JPEG-LS", spiff=None, bits_per_sample=bits)
        _encapsulated(ds, buffer.getvalue(), int(ds.BitsAllocated), bits)

    encode.__doc__ = f"{inner.__doc__} JPEG-LS Lossless."
    return encode


def _secondary_capture_rgb(ds: Dataset, v: np.ndarray) -> None:
    """Secondary capture (a screenshot): RGB, 8 bits, R = G = B = v."""
    rgb = np.repeat(v.astype(np.uint8)[..., None], 3, axis=2)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.ConversionType = "WSD"  # workstation
    _store(ds, rgb, 8)


class Kind(NamedTuple):
    """A good kind: what the file claims, and the writer that stores ``v`` (its docstring: the mapping)."""

    sop_class: str
    modality: str
    transfer_syntax: str
    writer: Writer


#: kind -> (SOP class, modality, transfer syntax of the file, writer); see the module table.
KINDS: dict[str, Kind] = {
    "dx_mono2_8bit": Kind(DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_8bit),
    "dx_mono1_16bit": Kind(DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono1_16bit),
    "cr_mono2_12bit": Kind(CR_STORAGE, "CR", ExplicitVRLittleEndian, _mono2_12bit),
    "dx_mono2_16bit_window": Kind(DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_16bit_window),
    "dx_mono2_12bit_voilut": Kind(DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_voilut),
    "dx_mono2_16bit_voilut": Kind(DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_16bit_voilut),
    "dx_mono2_12bit_rescale": Kind(DX_STORAGE, "DX", ExplicitVRLittleEndian, _mono2_rescale),
    "dx_mono1_16bit_rle": Kind(DX_STORAGE, "DX", RLELossless, _rle(_mono1_16bit)),
    "dx_mono2_16bit_rle": Kind(DX_STORAGE, "DX", RLELossless, _rle(_mono2_16bit)),
    "cr_mono2_12bit_rle": Kind(CR_STORAGE, "CR", RLELossless, _rle(_mono2_12bit)),
    "dx_mono2_8bit_jpeg": Kind(DX_STORAGE, "DX", JPEGBaseline8Bit, _jpeg_baseline),
    "cr_mono2_16bit_j2k": Kind(CR_STORAGE, "CR", JPEG2000Lossless, _jpeg2000(_mono2_16bit)),
    "dx_mono2_16bit_jpegls": Kind(DX_STORAGE, "DX", JPEGLSLossless, _jpeg_ls(_mono2_16bit)),
    "dx_mono1_16bit_jpegls": Kind(DX_STORAGE, "DX", JPEGLSLossless, _jpeg_ls(_mono1_16bit)),
    "sc_rgb": Kind(SecondaryCaptureImageStorage, "OT", ExplicitVRLittleEndian, _secondary_capture_rgb),
}


def write_dicom(path: str | Path, pixels: np.ndarray, kind: str, **tags: Any) -> Path:
    """Store the displayed grey image ``pixels`` (uint8, H x W; 0 black) as a DICOM file of ``kind``.

    ``tags`` set or override any DICOM keyword after the kind is written (``PatientID="P7"``,
    ``ViewPosition="AP"``, ``StudyDate="20210101"``); ``None`` deletes the element. Overriding
    SOPClassUID or SOPInstanceUID updates the file meta to match. Pixel-describing tags (Rows,
    BitsStored, ...) can be overridden too, but then the file no longer holds what it says.
    """
    pixels = np.asarray(pixels)
    if pixels.ndim != 2 or pixels.dtype != np.uint8:
        raise ValueError(f"expected a 2D uint8 grey image, got {pixels.dtype} of shape {pixels.shape}")
    sop_class, modality, syntax, writer = KINDS[kind]
    path = Path(path)
    ds = _dataset(path, pixels, sop_class, modality)
    writer(ds, pixels)
    ds.file_meta.TransferSyntaxUID = syntax
    if modality == "DX":  # DX: IDENTITY for MONOCHROME2, INVERSE for MONOCHROME1 (PS3.3 C.8.11.3.1.6)
        ds.PresentationLUTShape = "INVERSE" if ds.PhotometricInterpretation == "MONOCHROME1" else "IDENTITY"
        if "VOILUTSequence" not in ds and "WindowCenter" not in ds:
            _full_range_window(ds)
    _override(ds, tags)
    ds.save_as(path, write_like_original=False)
    return path


def _full_range_window(ds: Dataset) -> None:
    """The window that changes nothing: it spans every value BitsStored allows, through the modality LUT.

    DX For Presentation requires a VOI (window or table); real ones always carry one. With the
    linear window of PS3.3 C.11.2.1.2, lowest value lo and highest hi map onto themselves when
    WindowWidth = hi - lo + 1 and WindowCenter = lo + (hi - lo + 1) / 2 (8 bits: 256 and 128).
    """
    slope, intercept = float(ds.RescaleSlope), float(ds.RescaleIntercept)
    lo, hi = intercept, (2 ** int(ds.BitsStored) - 1) * slope + intercept
    ds.WindowWidth, ds.WindowCenter = hi - lo + 1, lo + (hi - lo + 1) / 2
    ds.WindowCenterWidthExplanation = "FULL RANGE"
    ds.VOILUTFunction = "LINEAR"


def _override(ds: FileDataset, tags: dict[str, Any]) -> None:
    for keyword, value in tags.items():
        if tag_for_keyword(keyword) is None:  # a typo would otherwise be a silent plain attribute
            raise KeyError(f"{keyword!r} is not a DICOM keyword")
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
    # the file meta repeats the SOP class and instance: keep them in step with overrides
    ds.file_meta.MediaStorageSOPClassUID = ds.get("SOPClassUID", ds.file_meta.MediaStorageSOPClassUID)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.get("SOPInstanceUID", ds.file_meta.MediaStorageSOPInstanceUID)


# ---- bad inputs -----------------------------------------------------------------------------------
def _no_pixel_data(path: Path, v: np.ndarray) -> None:
    """A DX header (Rows, Columns, bits and all) without Pixel Data: e.g. a PACS metadata-only export."""
    ds = _dataset(path, v, DX_STORAGE, "DX")
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PresentationLUTShape = "IDENTITY"
    ds.save_as(path, write_like_original=False)


def _multiframe(path: Path, v: np.ndarray) -> None:
    """NumberOfFrames 3, each frame ``v`` (8 bits): a cine or a multi-exposure series in one file."""
    ds = _dataset(path, v, DX_STORAGE, "DX")
    _store(ds, np.stack([v, v, v]).astype(np.uint8), 8)
    ds.NumberOfFrames = 3
    ds.PresentationLUTShape = "IDENTITY"
    ds.save_as(path, write_like_original=False)


def _tagged(**tags: Any) -> Callable[[Path, np.ndarray], None]:
    """A good ``dx_mono2_8bit`` file with ``tags`` overridden."""

    def write(path: Path, v: np.ndarray) -> None:
        write_dicom(path, v, "dx_mono2_8bit", **tags)

    return write


def _tiny(path: Path, v: np.ndarray) -> None:
    """``v`` shrunk to 40 x 40, as ``dx_mono2_8bit``: a thumbnail, nothing to score."""
    write_dicom(path, np.asarray(Image.fromarray(v).resize((40, 40), Image.BILINEAR)), "dx_mono2_8bit")


def _palette(path: Path, v: np.ndarray) -> None:
    """PALETTE COLOR: stored = v (8 bits) and grey 16-bit palettes R = G = B = 257 x."""
    ds = _dataset(path, v, SecondaryCaptureImageStorage, "OT")
    ds.PhotometricInterpretation = "PALETTE COLOR"
    ds.ConversionType = "WSD"
    grey = np.arange(256, dtype=np.uint16) * 257
    for colour in ("Red", "Green", "Blue"):
        setattr(ds, f"{colour}PaletteColorLookupTableDescriptor", [256, 0, 16])
        setattr(ds, f"{colour}PaletteColorLookupTableData", grey.tobytes())
    _store(ds, v.astype(np.uint8), 8)
    ds.save_as(path, write_like_original=False)


def _truncated(path: Path, v: np.ndarray) -> None:
    """A good ``dx_mono1_16bit`` file with its second half cut off (an interrupted transfer)."""
    write_dicom(path, v, "dx_mono1_16bit")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_an_image(path: Path, v: np.ndarray) -> None:
    """A text file named like an image."""
    path.write_text("Chest X-ray report: no acute findings.\n" * 20)


def _truncated_png(path: Path, v: np.ndarray) -> None:
    """A PNG of ``v`` with its second half cut off: the header reads, the pixels do not."""
    buffer = io.BytesIO()
    Image.fromarray(v).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])


class BadKind(NamedTuple):
    """A bad input: its writer, words a reader's error should contain, and the file suffix it needs."""

    writer: Callable[[Path, np.ndarray], None]
    reason: str
    suffix: str | None = None  # None: the caller's file name as given (DICOM files often have no suffix)


#: Inputs a reader must refuse: kind -> (writer, the words its error should contain, forced suffix).
BAD_KINDS: dict[str, BadKind] = {
    "empty": BadKind(lambda path, v: path.write_bytes(b""), "empty file"),
    "not_an_image": BadKind(_not_an_image, "not an image", ".png"),
    "truncated_png": BadKind(_truncated_png, "truncated or corrupt image file", ".png"),
    "no_pixel_data": BadKind(_no_pixel_data, "without pixel data"),
    "multiframe": BadKind(_multiframe, "multi-frame DICOM (3 frames)"),
    "lateral": BadKind(_tagged(ViewPosition="LL"), "lateral view"),
    "tiny": BadKind(_tiny, "smaller than the 64 px minimum"),
    "palette_color": BadKind(_palette, "unsupported photometric interpretation PALETTE COLOR"),
    "truncated": BadKind(_truncated, "pixel data"),
}


def write_bad_file(path: str | Path, pixels: np.ndarray, kind: str) -> Path:
    """Write the bad input ``kind`` of :data:`BAD_KINDS` from the radiograph ``pixels`` (uint8).

    Kinds that are about a file's name (``not_an_image``, ``truncated_png``: ``.png``) replace the
    suffix of ``path``; the path actually written is returned.
    """
    path = Path(path)
    bad = BAD_KINDS[kind]
    if bad.suffix is not None:
        path = path.with_suffix(bad.suffix)
    bad.writer(path, np.asarray(pixels))
    return path
