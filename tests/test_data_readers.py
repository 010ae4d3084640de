"""Dataset readers: the public BrixIA annotations, the full BrixIA layout, lung-mask folders, Cohen's scores."""

from __future__ import annotations

import csv

import pytest

from monai_bsnet.data import (
    brixia_full_datalist,
    brixia_full_splits,
    brixia_public_datalist,
    cohen_severity_datalist,
    image_mask_pairs,
    lungseg_datalist,
)
from monai_bsnet.errors import CXRInputError


def test_public_brixia_annotations(shared_data):
    root = shared_data / "brixia-public"
    senior = brixia_public_datalist(root)
    junior = brixia_public_datalist(root, rater="junior")
    assert len(senior) == len(junior) == 138
    with open(root / "annotations.csv", newline="") as f:
        first = next(csv.DictReader(f))
    item = next(d for d in senior if d["filename"] == first["filename"])
    assert item["label"] == [int(first[f"S-{z}"]) for z in "ABCDEF"] and item["global"] == int(first["S-Global"])
    other = next(d for d in junior if d["filename"] == first["filename"])
    assert other["label"] == [int(first[f"J-{z}"]) for z in "ABCDEF"] == item["label_junior"]
    assert item["patient_id"] and item["view"] in ("PA", "AP", "AP Supine")
    # serial exams: several images share a patient
    assert len({d["patient_id"] for d in senior}) < len(senior)
    with pytest.raises(ValueError, match="rater"):
        brixia_public_datalist(root, rater="resident")


def write_public(tmp_path, rows):
    (tmp_path / "images").mkdir()
    header = ["filename"] + [f"{r}-{z}" for r in "SJ" for z in [*"ABCDEF", "Global"]]
    with open(tmp_path / "annotations.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for row in rows:
            writer.writerow(row)
    return tmp_path


def test_public_annotations_are_checked(tmp_path):
    root = write_public(tmp_path, [["a.png", 0, 0, 1, 2, 3, 0, 6, 0, 0, 1, 2, 3, 0, 7]])
    (root / "images" / "a.png").write_bytes(b"x")
    with pytest.raises(CXRInputError, match="row 'a.png': J-Global 7 is not the sum"):
        brixia_public_datalist(root)
    (tmp_path / "second").mkdir()
    root2 = write_public(tmp_path / "second", [["missing.png", *[0] * 14]])
    with pytest.raises(CXRInputError, match="missing"):
        brixia_public_datalist(root2)
    assert brixia_public_datalist(root2, missing="skip") == []


@pytest.fixture
def brixia_full(tmp_path):
    """A small copy of the full BrixIA layout's CSV formats (scores as strings with leading zeros)."""
    (tmp_path / "dicom_clean").mkdir()
    rows = [
        # Filename, Subject, StudyDate, Sex, Age, Modality, ConsensusTestset, BrixiaScore
        ("1.dcm", "S1", "20200301", "M", "060Y", "CR", "0", "001230"),
        ("2.dcm", "S1", "20200303", "M", "060Y", "CR", "0", "012330"),
        ("3.dcm", "S2", "20200302", "F", "070Y", "DX", "1", "000011"),
        ("4.dcm", "S2", "20200305", "F", "070Y", "DX", "0", "000111"),
        *[(f"{i}.dcm", f"S{i}", "20200310", "F", "050Y", "DX", "0", "100000") for i in range(5, 25)],
    ]
    with open(tmp_path / "metadata_global_v1.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Filename", "Subject", "StudyDate", "Sex", "AgeAtStudyDateFiveYear", "Modality", "ConsensusTestset", "BrixiaScore", "Manufacturer"])
        for row in rows:
            writer.writerow([*row, "ACME"])
            (tmp_path / "dicom_clean" / row[0]).write_bytes(b"")
    with open(tmp_path / "metadata_consensus_v1.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Filename", *[f"Mean{z}" for z in "ABCDEF"], *[f"Mode{z}" for z in "ABCDEF"]])
        writer.writerow(["3.dcm", 0.2, 0, 0.4, 0, 1.2, 0.8, 0, 0, 0, 0, 1, 1])
    return tmp_path


def test_full_layout_keeps_leading_zeros_and_consensus(brixia_full):
    items = {d["filename"]: d for d in brixia_full_datalist(brixia_full)}
    assert items["1.dcm"]["label"] == [0, 0, 1, 2, 3, 0] and items["1.dcm"]["global"] == 6
    assert items["3.dcm"]["consensus"] and items["3.dcm"]["consensus_mode"] == [0, 0, 0, 0, 1, 1]
    assert items["3.dcm"]["consensus_mean"] == pytest.approx([0.2, 0, 0.4, 0, 1.2, 0.8])
    assert not items["1.dcm"]["consensus"] and "consensus_mode" not in items["1.dcm"]
    assert items["2.dcm"]["patient_id"] == "S1" and items["2.dcm"]["modality"] == "CR"


def test_full_layout_splits_never_train_on_the_consensus_set(brixia_full):
    splits = brixia_full_splits(brixia_full_datalist(brixia_full), val_fraction=0.25, seed=1)
    assert [d["filename"] for d in splits["test"]] == ["3.dcm"]
    learn = splits["train"] + splits["val"]
    assert all(not d["consensus"] for d in learn)
    assert "S2" not in {d["patient_id"] for d in learn}  # the consensus patient's other exam stays out
    assert not {d["patient_id"] for d in splits["train"]} & {d["patient_id"] for d in splits["val"]}
    assert splits["val"] and len(learn) == 22


def test_full_layout_bad_score_string_is_named(brixia_full):
    text = (brixia_full / "metadata_global_v1.csv").read_text().replace("001230", "00123")
    (brixia_full / "metadata_global_v1.csv").write_text(text)
    with pytest.raises(CXRInputError, match=r"metadata_global_v1.csv: row '1.dcm'.*six digits"):
        brixia_full_datalist(brixia_full)


def test_lungseg_layout(shared_data):
    root = shared_data / "lungseg"
    train, test = lungseg_datalist(root, "train"), lungseg_datalist(root, "test")
    with open(root / "manifest.csv", newline="") as f:
        manifest = list(csv.DictReader(f))
    assert len(test) == sum(r["split"] == "test" for r in manifest) and len(train) + len(test) == len(manifest)
    holes = set((root / "masks_with_holes.txt").read_text().split())
    assert {d["id"] for d in train + test if d["mask_has_holes"]} == holes
    assert all(d["mask"].endswith(f"{d['id']}.png") for d in train)


def test_image_mask_pairs(tmp_path):
    (tmp_path / "img").mkdir()
    (tmp_path / "msk").mkdir()
    for name in ("a", "b"):
        (tmp_path / "img" / f"{name}.png").write_bytes(b"")
    (tmp_path / "msk" / "a_mask.png").write_bytes(b"")
    with pytest.raises(CXRInputError, match="1 image\\(s\\) without a mask.*b.png"):
        image_mask_pairs(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask")
    pairs = image_mask_pairs(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask", missing="skip")
    assert [(p["id"], p["mask"].endswith("a_mask.png")) for p in pairs] == [("a", True)]


def test_cohen_scores(shared_data, tmp_path):
    items = cohen_severity_datalist(shared_data / "brixia-public" / "cohen-severity.csv", shared_data / "brixia-public" / "images")
    assert len(items) == 55
    assert all(0 <= d["geographic_extent"] <= 8 and 0 <= d["opacity"] <= 6 for d in items)
    (tmp_path / "bad.csv").write_text("filename,geographic_mean,opacity_mean\nx.png,9.5,1\n")
    with pytest.raises(CXRInputError, match="out of range"):
        cohen_severity_datalist(tmp_path / "bad.csv", tmp_path)
