"""DICOM input: every storage kind of a real radiograph loads to the same image; bad files are named."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
from dicom_fixtures import BAD_KINDS, KINDS, write_bad_file, write_dicom
from PIL import Image

from monai_bsnet.errors import CXRInputError
from monai_bsnet.inference import find_inputs
from monai_bsnet.transforms import LoadCXR, read_cxr


@pytest.fixture(autouse=True)
def _decode_with_the_package_decoders(monkeypatch):
    """Decode with pydicom's own handlers and the pylibjpeg plugins that the package installs, even on
    a machine that also has GDCM (pydicom would try GDCM first)."""
    import pydicom.config

    handlers = [h for h in pydicom.config.pixel_data_handlers if "gdcm" not in h.__name__]
    monkeypatch.setattr(pydicom.config, "pixel_data_handlers", handlers)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_generated_files_are_what_they_claim(dicom_zoo, kind):
    ds = pydicom.dcmread(dicom_zoo[kind])
    sop_class, modality, syntax, _ = KINDS[kind]
    assert ds.SOPClassUID == sop_class and ds.Modality == modality
    assert ds.file_meta.TransferSyntaxUID == syntax
    assert ("mono1" in kind) == (ds.PhotometricInterpretation == "MONOCHROME1")


# lossless kinds give the radiograph back to within rounding of their bit depth
EXACT = {
    "dx_mono2_8bit": 1e-6,
    "dx_mono1_16bit": 1e-6,
    "cr_mono2_12bit": 1 / 4095,
    "dx_mono2_16bit_window": 1e-4,
    "dx_mono2_12bit_voilut": 1 / 255,
    "dx_mono1_16bit_rle": 1e-6,
    "cr_mono2_12bit_rle": 1 / 4095,
    "cr_mono2_16bit_j2k": 1e-6,
    "dx_mono1_16bit_jpegls": 1e-6,
    "sc_rgb": 1e-6,
}


@pytest.mark.parametrize("kind", sorted(EXACT))
def test_lossless_kinds_load_to_the_radiograph(dicom_zoo, radiograph_u8, kind):
    image, meta = read_cxr(dicom_zoo[kind])
    assert image.shape == radiograph_u8.shape
    assert np.abs(image - radiograph_u8 / 255.0).max() <= EXACT[kind] + 1e-6
    assert meta["format"] == "dicom"


def test_jpeg_baseline_is_close(dicom_zoo, radiograph_u8):
    image, _ = read_cxr(dicom_zoo["dx_mono2_8bit_jpeg"])
    assert np.abs(image - radiograph_u8 / 255.0).mean() < 2 / 255


def test_modality_lut_is_applied(dicom_zoo, radiograph_u8):
    # stored 1024 + 8 v, slope 2, intercept -2048: modality values 16 v on the nominal range -2048..6142
    image, _ = read_cxr(dicom_zoo["dx_mono2_12bit_rescale"])
    expected = (16.0 * radiograph_u8 + 2048) / 8190
    assert np.abs(image - expected).max() < 1e-6


def test_voi_lut_table_is_applied(dicom_zoo, radiograph_u8):
    # the stored values are a negative; only the VOI LUT turns them back into the radiograph
    image, _ = read_cxr(dicom_zoo["dx_mono2_12bit_voilut"])
    assert np.corrcoef(image.ravel(), radiograph_u8.ravel())[0, 1] > 0.999


def test_same_radiograph_in_four_encodings_agrees(tmp_path, dicom_zoo, radiograph_u8):
    """MONOCHROME2 8-bit PNG, MONOCHROME1 16-bit DICOM, RLE DICOM and RGB JPEG give one image."""
    Image.fromarray(radiograph_u8).save(tmp_path / "grey.png")
    Image.fromarray(radiograph_u8).convert("RGB").save(tmp_path / "rgb.jpg", quality=95)
    loader = LoadCXR()
    images = {
        "png": loader(tmp_path / "grey.png"),
        "mono1_16bit": loader(dicom_zoo["dx_mono1_16bit"]),
        "rle": loader(dicom_zoo["dx_mono1_16bit_rle"]),
        "rgb_jpeg": loader(tmp_path / "rgb.jpg"),
    }
    reference = images["png"]
    for name, image in images.items():
        assert image.shape == reference.shape, name
        assert float((image - reference).abs().mean()) < 2 / 255, name
        assert float((image - reference).abs().max()) < (0.15 if name == "rgb_jpeg" else 1e-5), name


def test_dicom_metadata(dicom_zoo):
    image = LoadCXR()(dicom_zoo["cr_mono2_12bit"])
    meta = image.meta
    assert meta["modality"] == "CR" and meta["view_position"] == "AP"
    assert meta["photometric_interpretation"] == "MONOCHROME2" and meta["bits_stored"] == 12
    assert meta["patient_id"] == "CXR-TEST-001" and meta["study_date"] == "20200315"
    assert meta["pixel_spacing"] == pytest.approx([0.2, 0.2])
    ds = pydicom.dcmread(dicom_zoo["cr_mono2_12bit"], stop_before_pixels=True)
    assert meta["study_instance_uid"] == ds.StudyInstanceUID and meta["series_instance_uid"] == ds.SeriesInstanceUID
    assert meta["sop_instance_uid"] == ds.SOPInstanceUID
    assert meta["spatial_shape"] == [288, 256]


@pytest.mark.parametrize("kind", sorted(BAD_KINDS))
def test_bad_inputs_are_refused_with_file_and_reason(tmp_path, radiograph_u8, kind):
    path = write_bad_file(tmp_path / f"{kind}.dcm", radiograph_u8, kind)
    with pytest.raises(CXRInputError) as info:
        read_cxr(path)
    assert info.value.path == str(path) and str(path) in str(info.value)
    assert BAD_KINDS[kind][1] in info.value.reason


def test_dicom_series_are_grouped_and_files_without_suffix_found(tmp_path, radiograph_u8):
    series = tmp_path / "PACS" / "study1"
    series.mkdir(parents=True)
    uid = pydicom.uid.generate_uid()
    # a series of two images, files named without a suffix as PACS exports often are
    write_dicom(series / "IM0002", radiograph_u8, "dx_mono2_8bit", SeriesInstanceUID=uid, InstanceNumber=2)
    write_dicom(series / "IM0001", radiograph_u8, "dx_mono2_8bit", SeriesInstanceUID=uid, InstanceNumber=1)
    write_dicom(series / "other", radiograph_u8, "cr_mono2_12bit")  # its own series
    (series / "notes").write_text("not DICOM, no suffix: ignored")
    inputs = find_inputs([tmp_path])
    assert len(inputs) == 2
    grouped = next(i for i in inputs if i.series_instance_uid == uid)
    assert grouped.path.name == "IM0001"
    assert [p.name for p in grouped.series_files] == ["IM0001", "IM0002"]
    assert grouped.name == "PACS__study1__IM0001"
