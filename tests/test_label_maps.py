"""Zone label maps (what viewers show and radiologists repaint) and their DICOM SEG form."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import torch

from dicom_fixtures import write_dicom
from monai_bsnet.dicom_labels import brixia_label_segmentation, label_map_from_segmentation, referenced_series
from monai_bsnet.inference.zone_map import zone_index_map, zone_label_map
from monai_bsnet.label_maps import (
    BRIXIA_LABEL_COLORS,
    BRIXIA_LABELS,
    image_geometry,
    read_label_map,
    scores_from_label_map,
    write_label_map,
)


def test_labels_are_score_plus_one_coloured_green_to_red():
    assert BRIXIA_LABELS == {"brixia 0": 1, "brixia 1": 2, "brixia 2": 3, "brixia 3": 4}
    green, red = BRIXIA_LABEL_COLORS["brixia 0"], BRIXIA_LABEL_COLORS["brixia 3"]
    assert green[1] > green[0] and red[0] > red[1]


def test_scores_read_back_from_a_zone_map_and_from_a_repainted_one():
    theta = torch.tensor([[0.8, 0.05, 0.02], [-0.03, 0.9, 0.05]])  # tilted, smaller lungs: a real geometry
    size = (300, 260)
    zone_index = zone_index_map(theta, size)
    lung = torch.ones(size, dtype=torch.bool)
    scores = [0, 1, 2, 3, 2, 1]
    labels = zone_label_map(zone_index, scores, lung).numpy()
    assert scores_from_label_map(labels, zone_index.numpy()) == scores
    # repaint most of zone C with "brixia 0": the majority wins
    c = zone_index.numpy() == 2
    rows, cols = np.nonzero(c)
    labels[rows[: int(0.7 * len(rows))], cols[: int(0.7 * len(rows))]] = 1
    assert scores_from_label_map(labels, zone_index.numpy()) == [0, 1, 0, 3, 2, 1]
    # an unpainted zone is unscored, not scored 0
    labels[zone_index.numpy() == 5] = 0
    assert scores_from_label_map(labels, zone_index.numpy())[5] is None
    # a map of another size (same field of view) still reads: the zone index is resampled
    assert scores_from_label_map(labels[::2, ::2], zone_index.numpy())[:5] == [0, 1, 0, 3, 2]


def test_a_tie_goes_to_the_higher_score():
    zone_index = np.zeros((2, 2), dtype=np.int64)
    labels = np.array([[1, 1], [3, 3]])
    assert scores_from_label_map(labels, zone_index)[0] == 2


@pytest.mark.parametrize("suffix", [".png", ".nii.gz", ".nrrd"])
def test_label_maps_keep_the_geometry_of_their_image(tmp_path, radiograph_u8, suffix):
    source = write_dicom(tmp_path / "cr.dcm", radiograph_u8, "cr_mono2_12bit")  # pixel spacing 0.2 mm
    labels = np.zeros(radiograph_u8.shape, dtype=np.uint8)
    labels[20:90, 30:120] = 3
    path = write_label_map(labels, tmp_path / f"label{suffix}", reference=source if suffix != ".png" else None)
    assert np.array_equal(read_label_map(path), labels)
    if suffix != ".png":
        assert image_geometry(path).spacing[:2] == pytest.approx(image_geometry(source).spacing[:2])
        assert image_geometry(path).size == image_geometry(source).size
    with pytest.raises(ValueError, match="does not match"):
        write_label_map(labels[:-1], tmp_path / f"bad{suffix}", reference=source)


def test_unreadable_or_colour_label_maps_are_refused(tmp_path, radiograph_u8):
    from PIL import Image

    (tmp_path / "junk.png").write_bytes(b"not a picture")
    with pytest.raises(ValueError, match="not a label map"):
        read_label_map(tmp_path / "junk.png")
    Image.fromarray(np.stack([radiograph_u8] * 3, axis=-1)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="one value per pixel"):
        read_label_map(tmp_path / "rgb.png")


def test_corrected_zone_map_as_dicom_seg_round_trip(tmp_path, radiograph_u8):
    source_path = write_dicom(tmp_path / "dx.dcm", radiograph_u8, "dx_mono1_16bit")
    source = pydicom.dcmread(source_path)
    labels = np.zeros(radiograph_u8.shape, dtype=np.uint8)
    labels[10:100, 10:130] = 1
    labels[10:100, 150:280] = 4
    labels[120:250, 10:130] = 3
    seg = brixia_label_segmentation(source, labels, "0.1.0", "013220", creator="Doe^Jane")
    seg.save_as(tmp_path / "seg.dcm")
    back = pydicom.dcmread(tmp_path / "seg.dcm")
    assert np.array_equal(label_map_from_segmentation(back), labels)
    assert referenced_series(back) == source.SeriesInstanceUID
    assert [s.SegmentLabel for s in back.SegmentSequence] == list(BRIXIA_LABELS)
    assert "013220" in back.SeriesDescription
    # OHIF reads the pixel spacing from the shared functional groups and fails on an empty sequence
    assert back.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0].PixelSpacing == source.ImagerPixelSpacing
    if shutil.which("dciodvfy"):  # dicom3tools checks the object against the standard
        result = subprocess.run(["dciodvfy", str(tmp_path / "seg.dcm")], capture_output=True, text=True)
        assert "Error" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_a_seg_without_brixia_segments_is_refused(tmp_path, radiograph_u8):
    from monai_bsnet.dicom_writers import brixia_segmentation

    source = pydicom.dcmread(write_dicom(tmp_path / "dx.dcm", radiograph_u8, "dx_mono2_8bit"))
    lung = np.ones(radiograph_u8.shape, dtype=bool)
    zones = zone_index_map(torch.tensor([[1.0, 0, 0], [0, 1.0, 0]]), radiograph_u8.shape).numpy()
    with pytest.raises(ValueError, match="no segment named"):
        label_map_from_segmentation(brixia_segmentation(source, lung, zones, "0.1.0"))
