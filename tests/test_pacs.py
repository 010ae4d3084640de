"""Results into a real PACS: `bsnet store` sends the DICOM SEG and SR to Orthanc over DICOMweb."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request

import pydicom
import torch

from monai_bsnet.inference import BrixiaPredictor
from monai_bsnet.networks import BSNet


def get(url: str):
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.loads(response.read())


def test_seg_and_sr_are_stored_into_orthanc(orthanc, dicom_zoo, tmp_path):
    torch.manual_seed(0)
    sources = [dicom_zoo["dx_mono1_16bit"], dicom_zoo["cr_mono2_12bit"]]
    BrixiaPredictor(BSNet(), dicom_outputs=True).run(sources, tmp_path, progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "store", str(tmp_path), "--url", f"{orthanc}/dicom-web"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "stored 4 DICOM objects" in result.stdout
    stored = {}
    for instance in get(f"{orthanc}/instances"):
        tags = get(f"{orthanc}/instances/{instance}/simplified-tags")
        stored[tags["SOPInstanceUID"]] = tags
    for path in sorted(tmp_path.glob("*_seg.dcm")) + sorted(tmp_path.glob("*_sr.dcm")):
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        assert ds.SOPInstanceUID in stored, path.name
        assert stored[ds.SOPInstanceUID]["Modality"] == ds.Modality
    # stored into the studies of the scored images, as a viewer will find them
    studies = {pydicom.dcmread(s, stop_before_pixels=True).StudyInstanceUID for s in sources}
    assert {tags["StudyInstanceUID"] for tags in stored.values()} == studies


def test_store_names_the_pacs_that_refused(tmp_path, dicom_zoo):
    torch.manual_seed(0)
    BrixiaPredictor(BSNet(), dicom_outputs=True).run([dicom_zoo["dx_mono2_8bit"]], tmp_path, progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "store", str(tmp_path), "--url", "http://127.0.0.1:9/dicom-web"],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 1
    assert "_seg.dcm: the PACS at http://127.0.0.1:9/dicom-web did not store it" in result.stderr
