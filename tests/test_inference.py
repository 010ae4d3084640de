"""End-to-end scoring of files: results table, records, masks and zone maps, bad files in a batch."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from PIL import Image

from monai_bsnet.inference import BrixiaPredictor, find_inputs, zone_index_map
from monai_bsnet.networks import BSNet
from monai_bsnet.writers import RESULT_COLUMNS
from monai_bsnet.zones import ZONE_NAMES, median_scores

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def predictor() -> BrixiaPredictor:
    torch.manual_seed(0)
    return BrixiaPredictor(BSNet(), batch_size=2)


@pytest.fixture(scope="module")
def mixed_folder(tmp_path_factory, sample_images):
    """Good files (JPEG, a smaller PNG in a sub-folder, NIfTI) and bad ones (text, truncated, tiny)."""
    root = tmp_path_factory.mktemp("inputs")
    source = Image.open(sample_images[0]).convert("L")
    source.resize((400, 480)).save(root / "small.jpg", quality=92)
    (root / "nested").mkdir()
    source.resize((320, 288)).save(root / "nested" / "small.png")
    pixels = np.asarray(source.resize((300, 256)), dtype=np.int16)
    nib.save(nib.Nifti1Image(pixels.T[..., None], np.diag([0.5, 0.5, 1.0, 1.0])), root / "series.nii.gz")
    (root / "report.png").write_text("not a picture")
    data = (root / "small.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 3])
    source.resize((40, 50)).save(root / "icon.png")
    (root / "readme.txt").write_text("ignored: not an image name")
    return root


@pytest.fixture(scope="module")
def scored(predictor, mixed_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    records = predictor.run([mixed_folder], out, progress=False)
    return records, out


def read_rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_one_csv_row_per_input_with_errors_named(scored, mixed_folder):
    records, out = scored
    rows = read_rows(out / "results.csv")
    assert list(rows[0].keys()) == list(RESULT_COLUMNS)
    by_name = {r["input"].replace(str(mixed_folder) + "/", ""): r for r in rows}
    assert set(by_name) == {"small.jpg", "nested/small.png", "series.nii.gz", "report.png", "cut.jpg", "icon.png"}
    for good in ("small.jpg", "nested/small.png", "series.nii.gz"):
        assert by_name[good]["status"] == "ok" and by_name[good]["error"] == ""
    assert "not an image" in by_name["report.png"]["error"]
    assert "truncated or corrupt" in by_name["cut.jpg"]["error"]
    assert "smaller than the 64 px minimum" in by_name["icon.png"]["error"]
    for bad in ("report.png", "cut.jpg", "icon.png"):
        assert by_name[bad]["status"] == "error" and by_name[bad]["A"] == ""


@pytest.mark.parametrize("document", ["README.md", "bundle/docs/README.md"])
def test_the_documents_name_the_csv_columns_the_writer_writes(document):
    """The README and the model card spell out ``results.csv``'s header: it must be the one written."""
    text = (REPO / document).read_text()
    assert f"`{', '.join(RESULT_COLUMNS)}`" in text


def test_nothing_is_written_for_bad_files(scored):
    _, out = scored
    names = {p.name for p in out.iterdir()}
    assert not any(n.startswith(("report", "cut", "icon")) for n in names)
    assert not any(n.endswith(".partial") for n in names)


def test_records_agree_with_the_table(scored):
    records, out = scored
    rows = {r["input"]: r for r in read_rows(out / "results.csv")}
    for record in (r for r in records if r["status"] == "ok"):
        on_disk = json.loads(open(out / (record["outputs"]["overlay"].rsplit("/", 1)[1].replace("_overlay.png", ".json"))).read())
        row = rows[record["input"]]
        scores = [on_disk["zones"][z]["score"] for z in ZONE_NAMES]
        assert [int(row[z]) for z in ZONE_NAMES] == scores
        assert int(row["global"]) == on_disk["global_score"] == sum(scores)
        for z in ZONE_NAMES:
            p = on_disk["zones"][z]["probabilities"]
            assert len(p) == 4 and abs(sum(p) - 1) < 1e-4 and median_scores(np.array(p)) == on_disk["zones"][z]["score"]
        assert on_disk["zones"]["A"]["lung"] == "right" and on_disk["zones"]["D"]["lung"] == "left"
        assert float(row["global_expected"]) == pytest.approx(on_disk["global_expected"], abs=1e-3)
        assert on_disk["model"]["version"] and "research use only" in on_disk["disclaimer"].lower()
        assert set(on_disk["timing_seconds"]) == {"load_and_preprocess", "network", "postprocess"}


def test_masks_and_zone_maps_have_the_original_geometry(scored):
    records, _ = scored
    record = next(r for r in records if r["input"].endswith("small.jpg"))
    lung = np.asarray(Image.open(record["outputs"]["lung_mask"]))
    zones = np.asarray(Image.open(record["outputs"]["zone_map"]))
    assert lung.shape == zones.shape == (480, 400)
    assert set(np.unique(lung)) <= {0, 255} and set(np.unique(zones)) <= {0, 1, 2, 3, 4}
    assert Image.open(record["outputs"]["overlay"]).size == (400, 480)


def test_zone_map_labels_are_the_scores(scored):
    records, _ = scored
    record = next(r for r in records if r["input"].endswith("small.jpg"))
    zones = np.asarray(Image.open(record["outputs"]["zone_map"]))
    lung = np.asarray(Image.open(record["outputs"]["lung_mask"])) > 0
    theta = torch.eye(2, 3)  # an untrained network aligns with the identity
    index = zone_index_map(theta, zones.shape).numpy()
    for z, name in enumerate(ZONE_NAMES):
        inside = (index == z) & lung & (zones > 0)
        if inside.sum() == 0:
            continue
        majority = np.bincount(zones[inside]).argmax()
        assert majority == record["zones"][name]["score"] + 1, name


def test_nifti_input_gets_nifti_masks_in_its_own_grid(scored, mixed_folder):
    records, _ = scored
    record = next(r for r in records if r["input"].endswith("series.nii.gz"))
    assert record["outputs"]["lung_mask"].endswith("_lung.nii.gz")
    reference = nib.load(str(mixed_folder / "series.nii.gz"))
    mask = nib.load(record["outputs"]["lung_mask"])
    assert mask.shape == reference.shape and np.allclose(mask.affine, reference.affine)


def test_output_folder_inside_the_input_folder_is_not_rescored(predictor, tmp_path, sample_images):
    shutil.copy(sample_images[0], tmp_path / "a.jpg")
    predictor.run([tmp_path], tmp_path / "out", progress=False)
    inputs = find_inputs([tmp_path], exclude=tmp_path / "out")
    assert [i.name for i in inputs] == ["a"]
    records = predictor.run([tmp_path], tmp_path / "out", progress=False)
    assert len(records) == 1


def test_mirror_tta_averages_the_zone_probabilities_with_the_mirrors_swapped_back(sample_images):
    from monai_bsnet.transforms import swap_zone_sides

    torch.manual_seed(0)
    network = BSNet().eval()
    plain, tta = BrixiaPredictor(network, mirror_tta=False), BrixiaPredictor(network)  # mirror TTA is the default
    image = plain.preprocess(plain.load(sample_images[0]))[None].as_tensor()
    ours, mirror, averaged = plain.forward(image), plain.forward(image.flip(-1)), tta.forward(image)
    expected = (ours["zone_probabilities"] + swap_zone_sides(mirror["zone_probabilities"])) / 2
    assert torch.allclose(averaged["zone_probabilities"], expected, atol=1e-6)
    assert not torch.allclose(averaged["zone_probabilities"], ours["zone_probabilities"], atol=1e-3), "the mirror counts"
    # lungs and zones are the image's own
    assert torch.equal(averaged["lung"], ours["lung"]) and torch.equal(averaged["theta"], ours["theta"])
    # an image and its mirror now get the same scores, side for side
    flipped = tta.forward(image.flip(-1))["zone_probabilities"]
    assert torch.allclose(flipped, swap_zone_sides(averaged["zone_probabilities"]), atol=1e-5)
