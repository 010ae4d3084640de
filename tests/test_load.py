"""Loading PNG/JPEG/NIfTI chest X-rays, preprocessing and the way back to the original geometry."""

from __future__ import annotations

import math

import nibabel as nib
import numpy as np
import pytest
import torch
from monai.data import MetaTensor
from monai.transforms import HistogramNormalize
from PIL import Image

from monai_bsnet.errors import CXRInputError
from monai_bsnet.transforms import (
    EqualiseHistogram,
    EqualiseHistogramd,
    LoadCXR,
    LoadCXRd,
    cxr_preprocessing,
    cxr_preprocessingd,
    read_cxr,
    to_original_geometry,
)


@pytest.fixture(scope="module")
def radiograph(sample_images) -> np.ndarray:
    """A real radiograph, downsized to 384 x 320 (not square, to catch axis mix-ups), uint8."""
    return np.asarray(Image.open(sample_images[0]).convert("L").resize((320, 384), Image.BILINEAR))


def test_sample_jpeg_loads_with_metadata(sample_images):
    image = LoadCXR()(sample_images[0])
    assert image.shape == (1, 2000, 2000) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0 and float(image.std()) > 0.02  # not blank
    meta = image.meta
    assert meta["format"] == "jpeg" and meta["spatial_shape"] == [2000, 2000]
    assert meta["filename_or_obj"] == str(sample_images[0])
    assert meta["photometric_interpretation"] == "MONOCHROME2" and meta["bits_stored"] == 8
    assert all(math.isnan(v) for v in meta["pixel_spacing"])


def test_grey_png_keeps_values_and_orientation(tmp_path, radiograph):
    path = tmp_path / "grey.png"
    Image.fromarray(radiograph).save(path)
    image = LoadCXR()(path)
    assert image.shape == (1, 384, 320)  # rows, columns
    assert np.allclose(image[0].numpy(), radiograph / 255.0, atol=1e-6)
    assert image.meta["spatial_shape"] == [384, 320]


def test_16_bit_png_is_read_at_16_bits(tmp_path, radiograph):
    path = tmp_path / "grey16.png"
    Image.fromarray(radiograph.astype(np.uint16) * 257).save(path)  # 8-bit values spread over 16 bits
    image, meta = read_cxr(path)
    assert meta["bits_stored"] == 16
    assert np.allclose(image, radiograph / 255.0, atol=1e-6)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_colour_encodings_of_a_grey_image_load_as_that_grey_image(tmp_path, radiograph, mode):
    path = tmp_path / f"colour_{mode}.png"
    Image.fromarray(radiograph).convert(mode).save(path)
    image, meta = read_cxr(path)
    assert np.abs(image - radiograph / 255.0).max() < 1.5 / 255  # luma of equal channels, rounded
    assert meta["photometric_interpretation"] == ("MONOCHROME2" if mode == "LA" else "RGB")


def test_rgb_jpeg_agrees_with_the_grey_png(tmp_path, radiograph):
    Image.fromarray(radiograph).convert("RGB").save(tmp_path / "rgb.jpg", quality=95)
    image, meta = read_cxr(tmp_path / "rgb.jpg")
    assert meta["format"] == "jpeg"
    assert np.abs(image - radiograph / 255.0).mean() < 2 / 255


def test_exif_orientation_is_applied(tmp_path, radiograph):
    # a photo stored sideways with EXIF "rotate 90 CW to display" (orientation 6)
    stored = Image.fromarray(radiograph).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(tmp_path / "photo.jpg", exif=exif, quality=95)
    image, _ = read_cxr(tmp_path / "photo.jpg")
    assert image.shape == radiograph.shape
    assert np.abs(image - radiograph / 255.0).mean() < 3 / 255


@pytest.mark.parametrize("shape", [(320, 384), (320, 384, 1), (320, 384, 1, 1)])
def test_nifti_2d_and_single_slice(tmp_path, radiograph, shape):
    # NIfTI voxel axes are (x = column, y = row): the array MONAI Label writes is the image transposed
    data = (radiograph.T.astype(np.int16) * 4 + 100).reshape(shape)
    nib.save(nib.Nifti1Image(data, np.diag([0.2, 0.3, 1.0, 1.0])), tmp_path / "cxr.nii.gz")
    image, meta = read_cxr(tmp_path / "cxr.nii.gz")
    assert image.shape == (384, 320)
    expected = (radiograph - radiograph.min()) / float(radiograph.max() - radiograph.min())
    assert np.allclose(image, expected, atol=1e-6)
    assert meta["format"] == "nifti" and meta["pixel_spacing"] == pytest.approx([0.3, 0.2])


def test_dictionary_loader(sample_images):
    data = LoadCXRd(keys="image")({"image": str(sample_images[1]), "id": 7})
    assert data["image"].shape[0] == 1 and data["id"] == 7


# ---- bad input --------------------------------------------------------------------------------------
def bad(path, match):
    with pytest.raises(CXRInputError, match=match) as info:
        read_cxr(path)
    assert str(path) in str(info.value) and info.value.path == str(path)


def test_missing_empty_and_non_image_files_are_named(tmp_path):
    bad(tmp_path / "nowhere.png", "no such file")
    (tmp_path / "empty.png").write_bytes(b"")
    bad(tmp_path / "empty.png", "empty file")
    (tmp_path / "notes.png").write_text("radiology report, not a picture\n" * 10)
    bad(tmp_path / "notes.png", "not an image")


def test_truncated_png_and_jpeg_are_refused(tmp_path, radiograph):
    for name in ("cut.png", "cut.jpg"):
        Image.fromarray(radiograph).save(tmp_path / name)
        data = (tmp_path / name).read_bytes()
        (tmp_path / name).write_bytes(data[: len(data) // 2])
        bad(tmp_path / name, "truncated or corrupt")


def test_tiny_figure_is_refused(tmp_path, radiograph):
    Image.fromarray(radiograph).resize((60, 80)).save(tmp_path / "tiny.png")
    bad(tmp_path / "tiny.png", "60 x 80 pixels is smaller than the 64 px minimum")


def test_3d_nifti_volume_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(np.zeros((128, 128, 5), np.int16), np.eye(4)), tmp_path / "ct.nii.gz")
    bad(tmp_path / "ct.nii.gz", "3D volume")


# ---- preprocessing and the way back -------------------------------------------------------------------
def test_preprocessing_equalises_and_resizes(sample_images):
    image = LoadCXR()(sample_images[0])
    net_input = cxr_preprocessing()(image)
    assert net_input.shape == (1, 512, 512) and net_input.dtype == torch.float32
    assert float(net_input.min()) >= 0 and float(net_input.max()) <= 1
    # equalised: the grey levels spread evenly, whatever the source's contrast
    quartiles = torch.quantile(net_input.flatten(), torch.tensor([0.25, 0.5, 0.75]))
    assert torch.allclose(quartiles, torch.tensor([0.25, 0.5, 0.75]), atol=0.05)
    # the original geometry travels with the image, to map outputs back
    assert net_input.meta["spatial_shape"] == [2000, 2000]


def test_equalisation_removes_a_monotonic_grey_level_mapping(radiograph):
    image = torch.as_tensor(radiograph / 255.0, dtype=torch.float32)[None]
    gamma = image**0.5  # e.g. a different window or display gamma in the source
    a, b = cxr_preprocessing(256)(image), cxr_preprocessing(256)(gamma)
    assert (a - b).abs().mean() < 0.01


def test_equalisation_is_monais_with_its_bins_over_zero_to_the_maximum(radiograph):
    image = torch.as_tensor(radiograph / 255.0, dtype=torch.float32)[None]
    # where the image's minimum is 0 the bins are MONAI's HistogramNormalize's (over the image's [min, max])
    black = image.clone()
    black[0, 0, 0] = 0.0
    assert torch.allclose(EqualiseHistogram()(black), torch.as_tensor(HistogramNormalize(min=0, max=1)(black)), atol=1e-5)
    # a dark background just above 0 (as in the resized original under a JPEG copy whose noise reaches 0):
    # MONAI's bins follow the minimum, so the background jumps between bins and every grey level moves
    background = image.clone()
    background[:, :, :100] = 0.004
    lifted = background.clone()
    lifted[0, 0, 0] = 0.0
    ours = (EqualiseHistogram()(lifted) - EqualiseHistogram()(background)).abs()
    monai = (torch.as_tensor(HistogramNormalize(min=0, max=1)(lifted)) - torch.as_tensor(HistogramNormalize(min=0, max=1)(background))).abs()
    assert float(ours[:, 1:].max()) < 1e-4 and float(monai[:, 1:].mean()) > 0.01  # one pixel of 120,000 moved a bin


def test_equalisation_keeps_its_bins_for_a_picture_in_part_of_the_range(radiograph):
    """A 16-bit file of 12-bit values fills only [0, 1/16] once loaded: the bins follow its maximum."""
    image = torch.as_tensor(radiograph / 255.0, dtype=torch.float32)[None]
    twelve_bit = torch.round(image * 4095) / 65535
    # (up to the rounding to 12 bits, which moves a few grey levels across a bin edge)
    assert float((EqualiseHistogram()(twelve_bit) - EqualiseHistogram()(image)).abs().max()) < 0.005
    # bins fixed over [0, 1] would leave it 16 of them
    assert float((EqualiseHistogram(hi=1.0)(twelve_bit) - EqualiseHistogram()(image)).abs().mean()) > 0.01


def test_equalisation_of_a_black_image_is_black_and_keeps_the_metadata():
    black = MetaTensor(torch.zeros(1, 8, 8), meta={"filename_or_obj": "black.png"})
    out = EqualiseHistogram()(black)
    assert isinstance(out, MetaTensor) and out.meta["filename_or_obj"] == "black.png" and out.dtype == torch.float32
    assert float(out.abs().max()) == 0.0
    array = EqualiseHistogramd("image")({"image": np.linspace(0, 0.5, 64).reshape(1, 8, 8)})["image"]
    assert isinstance(array, np.ndarray) and array.dtype == np.float32 and array.max() == 1.0 and array.min() == 0.0


def test_dictionary_preprocessing_matches(radiograph):
    image = torch.as_tensor(radiograph / 255.0, dtype=torch.float32)[None]
    d = cxr_preprocessingd("image")({"image": image})
    assert torch.allclose(d["image"], cxr_preprocessing()(image))


def test_outputs_map_back_onto_the_original_geometry():
    # a box at known fractions of a 384 x 320 image, through the 512 x 512 frame and back
    original = torch.zeros(1, 384, 320)
    original[:, 96:192, 40:120] = 1.0  # rows 1/4..1/2, columns 1/8..3/8
    in_frame = cxr_preprocessing()(original.clone()) > 0.5  # equalisation keeps the two levels apart
    rows, cols = torch.nonzero(in_frame[0], as_tuple=True)
    assert rows.min() == 128 and rows.max() == 255 and cols.min() == 64 and cols.max() == 191
    back = to_original_geometry(in_frame.float(), (384, 320), mode="nearest")
    assert back.shape == (1, 384, 320) and torch.equal(back, original)
    probabilities = to_original_geometry(in_frame.float(), (384, 320))
    assert ((probabilities > 0.5) == (original > 0.5)).float().mean() > 0.999
