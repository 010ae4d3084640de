"""`bsnet report`: one timeline per patient from the scored images, dates from DICOM or a CSV."""

from __future__ import annotations

import csv
import re
import shutil
import subprocess
import sys
from datetime import date

import pytest
import torch
from dicom_fixtures import write_dicom

from monai_bsnet.inference import BrixiaPredictor
from monai_bsnet.networks import BSNet
from monai_bsnet.serial_report import load_exams, write_patient_report


@pytest.fixture(scope="module")
def predictor():
    torch.manual_seed(0)
    return BrixiaPredictor(BSNet())


def test_report_on_the_public_serial_exams(predictor, shared_data, tmp_path):
    root = shared_data / "brixia-public"
    with open(root / "images.csv", newline="") as f:
        info = list(csv.DictReader(f))
    chosen = [r for r in info if r["patientid"] in ("13", "179")]  # patients with 4 and 3 exams
    for row in chosen:
        shutil.copy(root / "images" / row["filename"], tmp_path / row["filename"])
    out = tmp_path / "scored"
    predictor.run([tmp_path], out, progress=False)
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "report", str(out), "--by-patient",
         "--metadata", str(root / "images.csv"), "--patient-column", "patientid"],
        capture_output=True, text=True,
    )
    assert result.returncode == 0, result.stderr
    page = (out / "report.html").read_text()
    assert page.count('<section class="patient">') == 2  # one timeline per patient
    assert page.count("data:image/png;base64,") == 2
    for patient, n in (("13", 4), ("179", 3)):
        section = page.split(f"<h2>Patient {patient}</h2>")[1].split("</section>")[0]
        assert len(re.findall("<tr><td>", section)) == n


def test_dicom_dates_order_the_timeline(predictor, radiograph_u8, tmp_path):
    for day, name in (("20200320", "late"), ("20200301", "early"), ("20200310", "middle")):
        write_dicom(tmp_path / f"{name}.dcm", radiograph_u8, "dx_mono2_8bit", PatientID="P42", StudyDate=day)
    write_dicom(tmp_path / "other.dcm", radiograph_u8, "cr_mono2_12bit", PatientID="P7", StudyDate="20200305")
    out = tmp_path / "scored"
    predictor.run([tmp_path], out, progress=False)
    exams = load_exams(out)
    assert {e["patient_id"] for e in exams} == {"P42", "P7"}
    page = write_patient_report(exams, tmp_path / "report.html", min_exams=2).read_text()
    assert page.count('<section class="patient">') == 1  # P7 has a single exam
    dates = re.findall(r"<tr><td>(\d{4}-\d\d-\d\d)</td>", page)
    assert dates == ["2020-03-01", "2020-03-10", "2020-03-20"]
    assert all(e["date"] == date(2020, 3, 5) for e in exams if e["patient_id"] == "P7")
