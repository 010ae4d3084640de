"""Shared test fixtures: the bundle's sample radiographs, DICOMs made from them, the team's data folder."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # tests/dicom_fixtures.py
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``; tests that need it skip where it is absent (outside the team)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"team data folder {SHARED_DATA} is absent: this test needs the real radiographs")
    return SHARED_DATA


SAMPLES = REPO / "bundle" / "sample"


@pytest.fixture(scope="session")
def sample_images() -> list[Path]:
    """The redistributable sample radiographs shipped with the bundle (always present)."""
    return sorted(SAMPLES.glob("*.jpg"))


@pytest.fixture
def scored_samples(sample_images) -> list[dict]:
    """The three sample radiographs, twice each under other patient ids (six images, six patients),
    with made-up zone scores from both raters: a stage-c datalist for the cached-head tests."""
    scores = ([0, 1, 2, 3, 2, 1], [3, 3, 2, 0, 0, 1], [1, 0, 0, 2, 3, 3])
    return [
        {"image": str(path), "filename": f"{k}_{path.name}", "label": label, "label_senior": label,
         "label_junior": label, "patient_id": f"p{k}{i}"}
        for k in range(2) for i, (path, label) in enumerate(zip(sample_images, scores))
    ]


@pytest.fixture
def untrained_bsnet():
    """A BS-Net with seeded random weights, in evaluation mode."""
    from monai_bsnet.networks import BSNet

    torch.manual_seed(0)
    return BSNet().eval()


@pytest.fixture(scope="session")
def radiograph_u8(sample_images):
    """A real radiograph (a bundle sample), downsized to 288 x 256 (rows x columns), uint8."""
    from dicom_fixtures import load_source

    return load_source(sample_images[0], (256, 288))


@pytest.fixture(scope="session")
def dicom_zoo(tmp_path_factory, radiograph_u8):
    """Every kind of :data:`dicom_fixtures.KINDS`, written from one real radiograph; kind -> path."""
    from dicom_fixtures import KINDS, write_dicom

    folder = tmp_path_factory.mktemp("dicom_zoo")
    return {kind: write_dicom(folder / f"{kind}.dcm", radiograph_u8, kind) for kind in KINDS}


@pytest.fixture(scope="session")
def shared_dicom_zoo(tmp_path_factory, shared_data):
    """``(source, {kind: path})``: every kind of :data:`dicom_fixtures.KINDS` written from the last of
    the team's 2000 x 2000 sample radiographs (not one the bundle ships), downsized to 256 x 256;
    skips where ``../shared/data`` is absent."""
    from dicom_fixtures import KINDS, load_source, write_dicom

    source = load_source(sorted((shared_data / "samples").glob("*.jpg"))[-1], 256)
    folder = tmp_path_factory.mktemp("shared_dicom_zoo")
    return source, {kind: write_dicom(folder / f"{kind}.dcm", source, kind) for kind in KINDS}


@contextlib.contextmanager
def running_orthanc(folder: Path):
    """A real Orthanc with its DICOMweb plugin on a free loopback port, storing into ``folder``;
    yields its base URL. Skips where Debian's orthanc/orthanc-dicomweb are not installed."""
    import json
    import shutil
    import socket
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("Orthanc")
    plugin = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
    if binary is None or not plugin.is_file():
        pytest.skip("Debian's orthanc and orthanc-dicomweb are not installed (.ci/run installs them)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = {
        "Name": "bsnet-tests",
        "StorageDirectory": str(folder / "db"),
        "IndexDirectory": str(folder / "db"),
        "HttpPort": port,
        "DicomServerEnabled": False,
        "RemoteAccessAllowed": False,
        "AuthenticationEnabled": False,
        "Plugins": [str(plugin)],
        "DicomWeb": {"Enable": True, "Root": "/dicom-web/"},
    }
    (folder / "orthanc.json").write_text(json.dumps(config))
    log = open(folder / "orthanc.log", "w")
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):  # up to 20 s
            try:
                urllib.request.urlopen(f"{url}/system", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    pytest.fail(f"Orthanc exited: {(folder / 'orthanc.log').read_text()[-2000:]}")
                time.sleep(0.2)
        else:
            pytest.fail("Orthanc did not answer within 20 s")
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory):
    """A real Orthanc with its DICOMweb plugin on a free loopback port; yields its base URL."""
    with running_orthanc(tmp_path_factory.mktemp("orthanc")) as url:
        yield url
