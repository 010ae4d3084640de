"""The DICOM test fixtures are what they claim, checked with pydicom alone (no monai_bsnet code).

tests/dicom_fixtures.py documents, per kind, the stored values as a function of the displayed
radiograph ``v`` and how the file's own tags turn them back into ``v``. These tests restate those
mappings independently (``SPECS``) and check them on files made from real radiographs: the tags, the
transfer syntax, the stored values as every installed pydicom decoder gives them, and the displayed
image after pydicom's modality LUT, VOI LUT/window and MONOCHROME1 inversion. The loader tests
(test_dicom.py) can then trust that a mismatch is the loader's.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pydicom
import pydicom.config
import pytest
from dicom_fixtures import BAD_KINDS, KINDS, load_source, write_bad_file, write_dicom
from PIL import Image, UnidentifiedImageError
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixel_data_handlers.util import apply_color_lut, apply_modality_lut, apply_voi_lut
from pydicom.uid import (
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
    SecondaryCaptureImageStorage,
)

DX = "1.2.840.10008.5.1.4.1.1.1.1"
CR = "1.2.840.10008.5.1.4.1.1.1"


class Spec(NamedTuple):
    """What a kind's file must hold (restated here, not imported, so that a slip shows)."""

    sop_class: str
    syntax: str
    photometric: str
    bits_allocated: int
    bits_stored: int
    stored: Callable[[np.ndarray], np.ndarray]  # stored values from the displayed image v (int64)
    display_scale: float  # displayed value (after the file's LUTs) = display_scale * v
    lossless: bool = True


def _mono1_16(v):
    return 65535 - 257 * v


def _mono2_12(v):
    return np.round(v * 4095 / 255).astype(np.int64)


SPECS: dict[str, Spec] = {
    "dx_mono2_8bit": Spec(DX, ExplicitVRLittleEndian, "MONOCHROME2", 8, 8, lambda v: v, 1),
    "dx_mono1_16bit": Spec(DX, ExplicitVRLittleEndian, "MONOCHROME1", 16, 16, _mono1_16, 257),
    "cr_mono2_12bit": Spec(CR, ExplicitVRLittleEndian, "MONOCHROME2", 16, 12, _mono2_12, 4095 / 255),
    "dx_mono2_16bit_window": Spec(DX, ExplicitVRLittleEndian, "MONOCHROME2", 16, 16, lambda v: 20000 + 16 * v, 257),
    "dx_mono2_12bit_voilut": Spec(DX, ExplicitVRLittleEndian, "MONOCHROME2", 16, 12, lambda v: 4095 - 16 * v, 256),
    "dx_mono2_16bit_voilut": Spec(
        DX, ExplicitVRLittleEndian, "MONOCHROME2", 16, 16, lambda v: 20000 + np.round(4080 * np.sqrt(v / 255)).astype(np.int64), 257
    ),
    "dx_mono2_12bit_rescale": Spec(DX, ExplicitVRLittleEndian, "MONOCHROME2", 16, 12, lambda v: 1024 + 8 * v, 16),
    "dx_mono1_16bit_rle": Spec(DX, RLELossless, "MONOCHROME1", 16, 16, _mono1_16, 257),
    "dx_mono2_16bit_rle": Spec(DX, RLELossless, "MONOCHROME2", 16, 16, lambda v: 257 * v, 257),
    "cr_mono2_12bit_rle": Spec(CR, RLELossless, "MONOCHROME2", 16, 12, _mono2_12, 4095 / 255),
    "dx_mono2_8bit_jpeg": Spec(DX, JPEGBaseline8Bit, "MONOCHROME2", 8, 8, lambda v: v, 1, lossless=False),
    "cr_mono2_16bit_j2k": Spec(CR, JPEG2000Lossless, "MONOCHROME2", 16, 16, lambda v: 257 * v, 257),
    "dx_mono2_16bit_jpegls": Spec(DX, JPEGLSLossless, "MONOCHROME2", 16, 16, lambda v: 257 * v, 257),
    "dx_mono1_16bit_jpegls": Spec(DX, JPEGLSLossless, "MONOCHROME1", 16, 16, _mono1_16, 257),
    "sc_rgb": Spec(SecondaryCaptureImageStorage, ExplicitVRLittleEndian, "RGB", 8, 8, lambda v: v, 1),
}

# JPEG Baseline at quality 95 on a radiograph: about half a grey level on average, a few at edges
JPEG_MEAN_ERROR, JPEG_MAX_ERROR = 1.5, 16


def displayed(ds: Dataset, pixels: np.ndarray | None = None) -> np.ndarray:
    """What a viewer shows, in the file's own output units: modality LUT, then the VOI LUT table or the
    window (pydicom's implementations of PS3.3 C.11), then MONOCHROME1 inverted; RGB: the mean of R, G, B."""
    values = ds.pixel_array if pixels is None else pixels
    if int(ds.SamplesPerPixel) == 3:
        return values.astype(np.float64).mean(axis=-1)
    values = apply_modality_lut(values, ds)
    if np.array_equal(values, np.round(values)):
        values = values.astype(np.int64)  # integer again after an identity rescale: a VOI LUT table indexes it
    values = apply_voi_lut(values, ds, prefer_lut=True)
    if ds.PhotometricInterpretation == "MONOCHROME1":
        values = (2 ** int(ds.BitsStored) - 1) - values  # the lowest value is white
    return np.asarray(values, dtype=np.float64)


def _stretched(v: np.ndarray) -> np.ndarray:
    """``v`` with its grey levels stretched over 0..255, so that the extremes of every mapping are hit."""
    lo, hi = float(v.min()), float(v.max())
    return np.round((v.astype(np.float64) - lo) * 255 / (hi - lo)).astype(np.uint8)


def test_every_kind_has_a_spec():
    assert set(SPECS) == set(KINDS)


# ---- good kinds: tags ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_tags_are_as_specified(dicom_zoo, radiograph_u8, kind):
    path, spec = dicom_zoo[kind], SPECS[kind]
    assert path.read_bytes()[128:132] == b"DICM"  # preamble and prefix: readable without force
    ds = pydicom.dcmread(path)
    meta = ds.file_meta
    assert meta.TransferSyntaxUID == spec.syntax == KINDS[kind].transfer_syntax
    assert ds.SOPClassUID == meta.MediaStorageSOPClassUID == spec.sop_class
    assert ds.SOPInstanceUID == meta.MediaStorageSOPInstanceUID
    assert ds.Modality == {DX: "DX", CR: "CR", SecondaryCaptureImageStorage: "OT"}[spec.sop_class]
    assert ds.PhotometricInterpretation == spec.photometric
    assert (ds.BitsAllocated, ds.BitsStored, ds.HighBit) == (spec.bits_allocated, spec.bits_stored, spec.bits_stored - 1)
    assert ds.SamplesPerPixel == (3 if spec.photometric == "RGB" else 1) and ds.PixelRepresentation == 0
    assert (ds.Rows, ds.Columns) == radiograph_u8.shape
    assert ds.BodyPartExamined == "CHEST" and ds.ViewPosition == ("AP" if ds.Modality == "CR" else "PA")
    assert ds.PatientID and ds.PatientName and ds.StudyDate
    for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID):
        assert uid.is_valid
    assert ds.LossyImageCompression == ("00" if spec.lossless else "01")
    if ds.Modality == "DX":
        assert [float(x) for x in ds.ImagerPixelSpacing] == [0.139, 0.139]
        assert ds.PresentationIntentType == "FOR PRESENTATION"
        assert ds.PresentationLUTShape == ("INVERSE" if spec.photometric == "MONOCHROME1" else "IDENTITY")
        assert "VOILUTSequence" in ds or "WindowCenter" in ds  # DX For Presentation requires a VOI
    if ds.Modality == "CR":
        assert [float(x) for x in ds.PixelSpacing] == [0.2, 0.2]


def test_every_file_has_its_own_instance_series_and_study(dicom_zoo):
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in dicom_zoo.values()]
    for keyword in ("SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID"):
        assert len({ds.get(keyword) for ds in headers}) == len(headers), keyword


# ---- good kinds: pixels -------------------------------------------------------------------------
def _decoders(kind: str) -> list:
    """pydicom's pixel data handlers installed here that claim the kind's transfer syntax."""
    syntax = pydicom.uid.UID(SPECS[kind].syntax)
    return [h for h in pydicom.config.pixel_data_handlers if h.is_available() and h.supports_transfer_syntax(syntax)]


def _handler_name(handler) -> str:
    return handler.__name__.rsplit(".", 1)[-1]


DECODINGS = [(kind, _handler_name(h)) for kind in sorted(KINDS) for h in _decoders(kind)]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_some_installed_decoder_reads_every_kind(kind):
    assert _decoders(kind), f"no installed pydicom pixel data handler decodes {SPECS[kind].syntax.name}"


@pytest.mark.parametrize("kind, handler", DECODINGS, ids=[f"{k}-{h}" for k, h in DECODINGS])
def test_stored_values_follow_the_documented_mapping(monkeypatch, dicom_zoo, radiograph_u8, kind, handler):
    """Each installed decoder, alone, gives the documented stored values (within JPEG's error if lossy)."""
    spec = SPECS[kind]
    only = [h for h in pydicom.config.pixel_data_handlers if _handler_name(h) == handler]
    monkeypatch.setattr(pydicom.config, "pixel_data_handlers", only)
    stored = pydicom.dcmread(dicom_zoo[kind]).pixel_array
    expected = spec.stored(radiograph_u8.astype(np.int64))
    if spec.photometric == "RGB":
        expected = np.repeat(expected[..., None], 3, axis=2)
    assert stored.shape == expected.shape and stored.dtype == (np.uint8 if spec.bits_allocated == 8 else np.uint16)
    if spec.lossless:
        np.testing.assert_array_equal(stored, expected)
    else:
        error = np.abs(stored.astype(np.int64) - expected)
        assert error.mean() < JPEG_MEAN_ERROR and error.max() <= JPEG_MAX_ERROR


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_displayed_image_is_the_source(dicom_zoo, radiograph_u8, kind):
    """Through the file's own LUTs the display is ``display_scale * v``: exactly, up to the rounding of
    12-bit kinds, for lossless ones."""
    spec = SPECS[kind]
    shown = displayed(pydicom.dcmread(dicom_zoo[kind])) / spec.display_scale
    error = np.abs(shown - radiograph_u8)
    if spec.lossless:
        assert error.max() <= 0.5 * 255 / 4095 + 1e-9  # 12 bits: half a 4095th of the range; else 0
    else:
        assert error.mean() < JPEG_MEAN_ERROR and error.max() <= JPEG_MAX_ERROR


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if SPECS[k].lossless))
def test_full_range_radiograph_round_trips(tmp_path, radiograph_u8, kind):
    """With the radiograph stretched over 0..255, black and white hit the ends of every window and LUT."""
    v = _stretched(radiograph_u8)
    assert v.min() == 0 and v.max() == 255
    ds = pydicom.dcmread(write_dicom(tmp_path / f"{kind}.dcm", v, kind))
    np.testing.assert_array_equal(np.round(displayed(ds) / SPECS[kind].display_scale), v)


# ---- good kinds: the tags matter (a reader that ignores them gets the wrong picture) ---------------
def _naive(ds: Dataset) -> np.ndarray:
    """Stored values over the range BitsStored allows, on 0..255: a reader that ignores every LUT."""
    return ds.pixel_array.astype(np.float64) * 255 / (2 ** int(ds.BitsStored) - 1)


def _min_max(ds: Dataset) -> np.ndarray:
    stored = ds.pixel_array.astype(np.float64)
    return (stored - stored.min()) * 255 / (stored.max() - stored.min())


def test_window_is_needed_and_min_max_is_affine(dicom_zoo, radiograph_u8):
    ds = pydicom.dcmread(dicom_zoo["dx_mono2_16bit_window"])
    v = radiograph_u8.astype(np.float64)
    assert np.ptp(_naive(ds)) < np.ptp(v) / 10  # 20000..24080 of 65535: a flat grey
    assert np.corrcoef(_min_max(ds).ravel(), v.ravel())[0, 1] > 0.9999  # linear: a min-max stretch is only a contrast change


def test_12bit_voi_lut_turns_a_negative_into_the_radiograph(dicom_zoo, radiograph_u8):
    ds = pydicom.dcmread(dicom_zoo["dx_mono2_12bit_voilut"])
    assert np.corrcoef(ds.pixel_array.ravel(), radiograph_u8.ravel())[0, 1] < -0.9999
    assert ds.VOILUTSequence[0].LUTDescriptor == [4096, 0, 16]


def test_16bit_voi_lut_is_the_only_way_back(dicom_zoo, radiograph_u8):
    """Square-root stored values: neither the bit range nor a min-max stretch gives the radiograph."""
    ds = pydicom.dcmread(dicom_zoo["dx_mono2_16bit_voilut"])
    v = radiograph_u8.astype(np.float64)
    assert "WindowCenter" not in ds and ds.VOILUTSequence[0].LUTDescriptor == [4081, 20000, 16]
    assert np.ptp(_naive(ds)) < np.ptp(v) / 10  # a flat grey
    assert np.abs(_min_max(ds) - v).mean() > 10  # the curve, not only the range, is the LUT's work


def test_rescale_is_the_modality_lut(dicom_zoo, radiograph_u8):
    ds = pydicom.dcmread(dicom_zoo["dx_mono2_12bit_rescale"])
    assert (float(ds.RescaleSlope), float(ds.RescaleIntercept)) == (2.0, -2048.0)
    np.testing.assert_array_equal(apply_modality_lut(ds.pixel_array, ds), 16 * radiograph_u8.astype(np.int64))


@pytest.mark.parametrize("kind", sorted(k for k in KINDS if "mono1" in k))
def test_monochrome1_stores_a_negative(dicom_zoo, radiograph_u8, kind):
    stored = pydicom.dcmread(dicom_zoo[kind]).pixel_array
    assert np.corrcoef(stored.ravel(), radiograph_u8.ravel())[0, 1] < -0.9999


@pytest.mark.parametrize("kind", ["dx_mono2_8bit", "dx_mono1_16bit", "cr_mono2_12bit", "dx_mono2_12bit_rescale"])
def test_full_range_window_changes_nothing(dicom_zoo, kind):
    """The window every DX carries (DX requires one) and CR files' missing one leave the values as they are."""
    ds = pydicom.dcmread(dicom_zoo[kind])
    modality = apply_modality_lut(ds.pixel_array, ds)
    np.testing.assert_allclose(apply_voi_lut(modality, ds), modality, atol=1e-9)


# ---- good kinds: other radiographs and overrides ----------------------------------------------------
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_team_sample_radiograph_round_trips(shared_dicom_zoo, kind):
    source, paths = shared_dicom_zoo
    assert source.shape == (256, 256)
    spec, ds = SPECS[kind], pydicom.dcmread(paths[kind])
    error = np.abs(displayed(ds) / spec.display_scale - source)
    assert error.max() <= (0.5 * 255 / 4095 + 1e-9 if spec.lossless else JPEG_MAX_ERROR)


@pytest.mark.parametrize("kind", ["dx_mono1_16bit_rle", "cr_mono2_16bit_j2k", "dx_mono2_16bit_jpegls", "dx_mono2_16bit_voilut"])
def test_a_lung_segmentation_png_round_trips(tmp_path, shared_data, kind):
    """A 512 px PNG of another data set (the lung segmentation images), written at its own size."""
    source = load_source(sorted((shared_data / "lungseg" / "images").glob("*.png"))[0])
    ds = pydicom.dcmread(write_dicom(tmp_path / "lungseg.dcm", source, kind))
    assert (ds.Rows, ds.Columns) == source.shape == (512, 512)
    np.testing.assert_array_equal(np.round(displayed(ds) / SPECS[kind].display_scale), source)


def test_overrides_set_and_delete_tags_and_keep_the_file_meta_in_step(tmp_path, radiograph_u8):
    uid = pydicom.uid.generate_uid()
    path = write_dicom(
        tmp_path / "IM0001", radiograph_u8, "cr_mono2_12bit",
        PatientID="P7", StudyDate="20210102", ViewPosition="PA", SOPInstanceUID=uid, PatientSex=None,
    )  # fmt: skip
    ds = pydicom.dcmread(path)
    assert (ds.PatientID, ds.StudyDate, ds.ViewPosition) == ("P7", "20210102", "PA")
    assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID == uid
    assert "PatientSex" not in ds


def test_bad_arguments_are_refused(tmp_path, radiograph_u8):
    with pytest.raises(KeyError, match="PatientId"):
        write_dicom(tmp_path / "a.dcm", radiograph_u8, "dx_mono2_8bit", PatientId="P7")  # keyword typo
    with pytest.raises(ValueError, match="uint8"):
        write_dicom(tmp_path / "b.dcm", radiograph_u8.astype(np.float32), "dx_mono2_8bit")
    with pytest.raises(KeyError):
        write_dicom(tmp_path / "c.dcm", radiograph_u8, "dx_mono3_8bit")


def test_load_source_reads_grey_uint8_and_resizes(tmp_path, sample_images):
    full = load_source(sample_images[0])
    assert full.dtype == np.uint8 and full.ndim == 2
    assert load_source(sample_images[0], 64).shape == (64, 64)
    assert load_source(sample_images[0], (64, 80)).shape == (80, 64)  # (width, height), as Pillow
    Image.fromarray(full[:100, :100]).convert("RGB").save(tmp_path / "rgb.png")
    np.testing.assert_array_equal(load_source(tmp_path / "rgb.png"), full[:100, :100])  # grey RGB -> the grey


# ---- bad kinds ------------------------------------------------------------------------------------
def _empty(path: Path, v: np.ndarray) -> None:
    assert path.stat().st_size == 0


def _not_an_image(path: Path, v: np.ndarray) -> None:
    assert path.suffix == ".png" and path.read_text().startswith("Chest X-ray report")
    with pytest.raises(UnidentifiedImageError):
        Image.open(path)
    with pytest.raises(InvalidDicomError):
        pydicom.dcmread(path)


def _truncated_png(path: Path, v: np.ndarray) -> None:
    assert path.suffix == ".png"
    with Image.open(path) as im:  # the header is intact ...
        assert im.format == "PNG" and im.size == (v.shape[1], v.shape[0])
        with pytest.raises(OSError, match="truncated"):  # ... the pixels are not
            im.load()


def _no_pixel_data(path: Path, v: np.ndarray) -> None:
    ds = pydicom.dcmread(path)
    assert "PixelData" not in ds and ds.SOPClassUID == DX and (ds.Rows, ds.Columns) == v.shape


def _multiframe(path: Path, v: np.ndarray) -> None:
    ds = pydicom.dcmread(path)
    assert ds.NumberOfFrames == 3
    np.testing.assert_array_equal(ds.pixel_array, np.stack([v, v, v]))


def _lateral(path: Path, v: np.ndarray) -> None:
    ds = pydicom.dcmread(path)
    assert ds.ViewPosition == "LL"
    np.testing.assert_array_equal(ds.pixel_array, v)  # otherwise a good file


def _tiny(path: Path, v: np.ndarray) -> None:
    ds = pydicom.dcmread(path)
    assert (ds.Rows, ds.Columns) == (40, 40) and ds.pixel_array.shape == (40, 40)


def _palette(path: Path, v: np.ndarray) -> None:
    ds = pydicom.dcmread(path)
    assert ds.PhotometricInterpretation == "PALETTE COLOR"
    rgb = apply_color_lut(ds.pixel_array, ds)  # the palettes are grey: the radiograph in 16 bits
    np.testing.assert_array_equal(rgb, np.repeat((257 * v.astype(np.uint16))[..., None], 3, axis=2))


def _truncated(path: Path, v: np.ndarray) -> None:
    intact = write_dicom(path.with_name("intact.dcm"), v, "dx_mono1_16bit")
    assert path.stat().st_size == intact.stat().st_size // 2
    ds = pydicom.dcmread(path)  # the header reads; the pixel data is half there
    with pytest.raises(ValueError, match="length of the pixel data"):
        ds.pixel_array


BAD_CHECKS: dict[str, Callable[[Path, np.ndarray], None]] = {
    "empty": _empty,
    "not_an_image": _not_an_image,
    "truncated_png": _truncated_png,
    "no_pixel_data": _no_pixel_data,
    "multiframe": _multiframe,
    "lateral": _lateral,
    "tiny": _tiny,
    "palette_color": _palette,
    "truncated": _truncated,
}


def test_every_bad_kind_has_a_check():
    assert set(BAD_CHECKS) == set(BAD_KINDS)


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_files_are_what_they_claim(tmp_path, radiograph_u8, kind):
    path = write_bad_file(tmp_path / f"{kind}.dcm", radiograph_u8, kind)
    assert path.is_file() and path.parent == tmp_path
    assert path.suffix == (BAD_KINDS[kind].suffix or ".dcm")
    BAD_CHECKS[kind](path, radiograph_u8)


# ---- conformance, where dicom3tools is installed ----------------------------------------------------
# the one deliberate departure: DX requires an identity rescale, dx_mono2_12bit_rescale has slope 2
KNOWN_NONCONFORMANCE = {"dx_mono2_12bit_rescale": ("Rescale Intercept", "Rescale Slope")}


@pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools' dciodvfy is not installed")
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_good_files_pass_dciodvfy(dicom_zoo, kind):
    result = subprocess.run(["dciodvfy", str(dicom_zoo[kind])], capture_output=True, text=True, timeout=60)
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
    errors = [e for e in errors if not any(name in e for name in KNOWN_NONCONFORMANCE.get(kind, ()))]
    assert not errors, "\n".join(errors)
