"""DICOM outputs for the PACS: Segmentation (lungs, zones) and Structured Report (scores) of DICOM inputs."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pydicom
import pytest
import torch
from PIL import Image

from monai_bsnet.dicom_writers import brixia_report
from monai_bsnet.inference import BrixiaPredictor
from monai_bsnet.networks import BSNet
from monai_bsnet.severity import CohenSeverityMapping
from monai_bsnet.zones import ZONE_NAMES


@pytest.fixture(scope="module")
def scored(dicom_zoo, sample_images, tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("dicom_outputs")
    inputs = [dicom_zoo["dx_mono1_16bit"], dicom_zoo["cr_mono2_12bit_rle"], sample_images[0]]
    cohen = CohenSeverityMapping({"geographic_extent": [0.5, 0.6, 0.1], "opacity": [0.2, 0.3, 0.1]})  # Cohen's scores in every record
    records = BrixiaPredictor(BSNet(), dicom_outputs=True, cohen_mapping=cohen).run(inputs, out, progress=False)
    return {r["input"]: r for r in records}


def numeric_items(dataset: pydicom.Dataset) -> dict[str, float]:
    """Code value -> number of every NUM item in an SR content tree."""
    found = {}
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "NUM":
            found[item.ConceptNameCodeSequence[0].CodeValue] = float(item.MeasuredValueSequence[0].NumericValue)
        found.update(numeric_items(item))
    return found


@pytest.mark.parametrize("kind", ["dx_mono1_16bit", "cr_mono2_12bit_rle"])
def test_segmentation_holds_lungs_and_zones_of_the_source(scored, dicom_zoo, kind):
    record = scored[str(dicom_zoo[kind])]
    source = pydicom.dcmread(dicom_zoo[kind])
    seg = pydicom.dcmread(record["outputs"]["dicom_seg"])
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert [d.SegmentLabel for d in seg.SegmentSequence][:2] == ["Lungs", "Brixia zone A (right lung, upper)"]
    assert len(seg.SegmentSequence) == 7
    assert seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    lung = np.asarray(Image.open(record["outputs"]["lung_mask"])) > 0
    # the detector's pixel spacing is in the shared functional groups, where viewers (OHIF) look for it
    spacing = source.get("PixelSpacing") or source.get("ImagerPixelSpacing")
    if spacing:
        measures = seg.SharedFunctionalGroupsSequence[0].PixelMeasuresSequence[0]
        assert [float(v) for v in measures.PixelSpacing] == [float(v) for v in spacing]
    # one frame per segment
    frames = seg.pixel_array
    numbers = [f.SegmentIdentificationSequence[0].ReferencedSegmentNumber for f in seg.PerFrameFunctionalGroupsSequence]
    masks = np.stack([frames[numbers.index(n)] for n in range(1, 8)], axis=-1)
    assert masks.shape == (source.Rows, source.Columns, 7)
    assert np.array_equal(masks[..., 0] > 0, lung)
    zones = masks[..., 1:] > 0
    assert not (zones & ~lung[..., None]).any()  # zones lie within the lungs
    assert (zones.sum(-1) <= 1).all()  # and do not overlap


@pytest.mark.parametrize("kind", ["dx_mono1_16bit", "cr_mono2_12bit_rle"])
def test_report_holds_the_scores_and_references_the_image(scored, dicom_zoo, kind):
    record = scored[str(dicom_zoo[kind])]
    source = pydicom.dcmread(dicom_zoo[kind])
    sr = pydicom.dcmread(record["outputs"]["dicom_sr"])
    values = numeric_items(sr)
    assert {z: values[f"BRIXIA-{z}"] for z in ZONE_NAMES} == {z: record["zones"][z]["score"] for z in ZONE_NAMES}
    assert values["BRIXIA-GLOBAL"] == record["global_score"]
    assert (values["COHEN-EXTENT"], values["COHEN-OPACITY"]) == (record["geographic_extent"], record["opacity"])
    # without a mapping (null in the record) the report leaves them out rather than writing a number
    without = brixia_report(source, {**record, "geographic_extent": None, "opacity": None}, "test")
    assert not {"COHEN-EXTENT", "COHEN-OPACITY"} & set(numeric_items(without))
    evidence = sr.CurrentRequestedProcedureEvidenceSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert evidence.ReferencedSOPInstanceUID == source.SOPInstanceUID
    assert sr.PatientID == source.PatientID and sr.StudyInstanceUID == source.StudyInstanceUID


def test_outputs_pass_dciodvfy(scored, dicom_zoo):
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools' dciodvfy is not installed")
    record = scored[str(dicom_zoo["dx_mono1_16bit"])]
    for key in ("dicom_seg", "dicom_sr"):
        result = subprocess.run(["dciodvfy", record["outputs"][key]], capture_output=True, text=True)
        errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("Error")]
        assert not errors, (key, errors)


def test_non_dicom_inputs_get_no_dicom_outputs(scored, sample_images):
    outputs = scored[str(sample_images[0])]["outputs"]
    assert "dicom_seg" not in outputs and "dicom_sr" not in outputs
