"""Dataset readers: the public BrixIA annotations, the full BrixIA layout and its splits, lung-mask
folders and Cohen's severity scores; on the team's real data where it exists, on synthetic copies of
the CSV formats otherwise, and on broken copies for the error messages."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
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

ZONES = "ABCDEF"


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def write_csv(path: Path, header: list[str], rows: list[list], delimiter: str = ",") -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter)
        writer.writerow(header)
        writer.writerows(rows)
    return path


# ---------------------------------------------------------------------------------------------------
# public BrixIA annotations, real data


def test_public_annotations_read_both_raters(shared_data):
    root = shared_data / "brixia-public"
    senior = brixia_public_datalist(root)
    junior = brixia_public_datalist(root, rater="junior")
    rows = read_rows(root / "annotations.csv")
    assert len(senior) == len(junior) == len(rows) == 138
    assert [d["filename"] for d in senior] == [r["filename"] for r in rows]  # CSV order
    for d, r in zip(senior, rows):
        assert d["label_senior"] == [int(r[f"S-{z}"]) for z in ZONES] == d["label"]
        assert d["label_junior"] == [int(r[f"J-{z}"]) for z in ZONES]
        assert d["global"] == int(r["S-Global"]) and isinstance(d["global"], int)
        assert os.path.isabs(d["image"]) and Path(d["image"]).is_file()
    for d, r in zip(junior, rows):
        assert d["label"] == d["label_junior"] and d["global"] == int(r["J-Global"])


def test_public_annotations_known_row_keeps_zone_a_zero(shared_data):
    # covid-19-pneumonia-2.jpg: senior 0,0,2,0,1,2 (global 5), junior 0,2,3,1,1,3 (global 10)
    root = shared_data / "brixia-public"
    senior = {d["filename"]: d for d in brixia_public_datalist(root)}["covid-19-pneumonia-2.jpg"]
    junior = {d["filename"]: d for d in brixia_public_datalist(root, rater="junior")}["covid-19-pneumonia-2.jpg"]
    assert senior["label"] == [0, 0, 2, 0, 1, 2] and senior["global"] == 5
    assert junior["label"] == [0, 2, 3, 1, 1, 3] and junior["global"] == 10
    assert senior["label_junior"] == junior["label"] and junior["label_senior"] == senior["label"]
    assert (senior["patient_id"], senior["view"]) == ("21", "PA")


def test_public_annotations_patients_views_and_rater_agreement(shared_data):
    items = brixia_public_datalist(shared_data / "brixia-public")
    # 10 images have no patient/view in the collection's metadata: blank, never invented
    assert sum(d["patient_id"] == "" for d in items) == 10
    assert {d["view"] for d in items} == {"PA", "AP", "AP Supine", ""}
    known = [d["patient_id"] for d in items if d["patient_id"]]
    assert len(set(known)) < len(known)  # serial exams: several images share a patient
    # DESIGN.md: the junior disagrees with the senior by ~0.41 per zone and ~1.94 on the global score
    s, j = np.array([d["label_senior"] for d in items]), np.array([d["label_junior"] for d in items])
    assert np.abs(s - j).mean() == pytest.approx(0.41, abs=0.02)
    assert np.abs(s.sum(1) - j.sum(1)).mean() == pytest.approx(1.94, abs=0.1)


def test_public_annotations_relative_root_gives_absolute_paths(shared_data, monkeypatch):
    monkeypatch.chdir(shared_data)
    items = brixia_public_datalist("brixia-public")
    assert all(os.path.isabs(d["image"]) and Path(d["image"]).is_file() for d in items)


def test_public_annotations_refuse_unknown_choices(shared_data):
    with pytest.raises(ValueError, match="rater"):
        brixia_public_datalist(shared_data / "brixia-public", rater="resident")
    with pytest.raises(ValueError, match="missing"):
        brixia_public_datalist(shared_data / "brixia-public", missing="warn")


# ---------------------------------------------------------------------------------------------------
# public BrixIA annotations, broken synthetic copies

PUBLIC_HEADER = ["filename"] + [f"{r}-{z}" for r in "SJ" for z in [*ZONES, "Global"]]


def public_folder(root: Path, rows: list[list], images: list[str] | None = None) -> Path:
    (root / "images").mkdir(parents=True)
    write_csv(root / "annotations.csv", PUBLIC_HEADER, rows)
    for name in [r[0] for r in rows] if images is None else images:
        (root / "images" / name).write_bytes(b"")
    return root


def test_public_global_must_be_the_sum_of_the_zones(tmp_path):
    good = ["a.png", 0, 0, 1, 2, 3, 0, 6, 0, 0, 1, 2, 3, 0, 6]
    bad = ["b.png", 0, 0, 1, 2, 3, 0, 6, 0, 0, 1, 2, 3, 0, 7]
    root = public_folder(tmp_path, [good, bad])
    with pytest.raises(CXRInputError, match=r"line 3 \(b\.png\): J-Global 7 is not the sum") as info:
        brixia_public_datalist(root)
    assert info.value.path == str(root / "annotations.csv")


def test_public_zone_scores_must_be_0_to_3(tmp_path):
    root = public_folder(tmp_path, [["a.png", 0, 0, 4, 0, 0, 0, 4, *[0] * 7]])
    with pytest.raises(CXRInputError, match=r"annotations.csv: line 2 \(a\.png\): S-A..S-F must each be 0, 1, 2 or 3"):
        brixia_public_datalist(root)


def test_public_missing_image_is_named_or_skipped(tmp_path):
    rows = [["here.png", *[0] * 14], ["gone.png", *[0] * 14]]
    root = public_folder(tmp_path, rows, images=["here.png"])
    with pytest.raises(CXRInputError, match="listed in .*annotations.csv but missing") as info:
        brixia_public_datalist(root)
    assert info.value.path == str(root / "images" / "gone.png")
    assert [d["filename"] for d in brixia_public_datalist(root, missing="skip")] == ["here.png"]


def test_public_several_missing_images_are_counted(tmp_path):
    root = public_folder(tmp_path, [[f"{i}.png", *[0] * 14] for i in range(8)], images=[])
    with pytest.raises(CXRInputError, match=r"8 listed files are missing: .*0\.png.*\(3 more\)"):
        brixia_public_datalist(root)


def test_public_table_shape_is_checked(tmp_path):
    root = public_folder(tmp_path / "dup", [["a.png", *[0] * 14], ["a.png", *[0] * 14]])
    with pytest.raises(CXRInputError, match="listed more than once: a.png"):
        brixia_public_datalist(root)
    (tmp_path / "cols" / "images").mkdir(parents=True)
    write_csv(tmp_path / "cols" / "annotations.csv", ["filename", "S-A"], [["a.png", 0]])
    with pytest.raises(CXRInputError, match=r"missing column\(s\) \['S-B'"):
        brixia_public_datalist(tmp_path / "cols")
    with pytest.raises(CXRInputError, match="no such file"):
        brixia_public_datalist(tmp_path / "nowhere")


# ---------------------------------------------------------------------------------------------------
# full BrixIA layout, synthetic copy of its CSV formats

GLOBAL_HEADER = [
    "Filename", "StudyDate", "Modality", "StudyId", "BrixiaScore", "BrixiaScoreGlobal",
    "ConsensusTestset", "Subject", "Sex", "AgeAtStudyDateFiveYear", "Manufacturer",
]  # fmt: skip


def full_rows() -> list[list]:
    """Four hand-written rows, two consensus images (one of a subject with a blank id), and 40
    ordinary subjects with two exams each."""
    rows = [
        # Filename, StudyDate, Modality, StudyId, BrixiaScore, Global, Consensus, Subject, Sex, Age band
        ["1.dcm", "20200301", "CR", "101", "001230", "6", "0", "S1", "M", "12", "ACME"],
        ["2.dcm", "20200303", "CR", "102", "012330", "9", "0", "S1", "M", "12", "ACME"],
        ["3.dcm", "20200302", "DX", "103", "000011", "2", "1", "S2", "F", "14", "ACME"],
        ["4.dcm", "20200305", "DX", "104", "000000", "0", "0", "S2", "F", "", "ACME"],
        ["5.dcm", "20200306", "DX", "105", "030000", "3", "1", "", "F", "9", "ACME"],
        ["6.dcm", "20200307", "DX", "106", "000300", "3", "0", "", "M", "9", "ACME"],
    ]
    for s in range(40):
        for exam in range(2):
            rows.append([f"p{s}_{exam}.dcm", "20200310", "DX", f"{s}{exam}", "100000", "1", "0", f"P{s}", "F", "10", "ACME"])
    return rows


PANEL_HEADER = ["Filename", *[f"Mean{z}" for z in ZONES], "S-Global", *[f"Mode{z}" for z in ZONES], "J-Global"]
PANEL_ROWS = [
    ["3.dcm", 0.2, 0, 0.4, 0, 1.2, 0.8, 2.6, 0, 0, 0, 0, 1, 1, 2],
    ["5.dcm", 0, 2.8, 0.2, 0, 0, 0, 3.0, 0, 3, 0, 0, 0, 0, 3],
]


def full_folder(root: Path, rows: list[list] | None = None, delimiter: str = ",", panel: bool = True) -> Path:
    rows = full_rows() if rows is None else rows
    (root / "dicom_clean").mkdir(parents=True)
    write_csv(root / "metadata_global_v1.csv", GLOBAL_HEADER, rows, delimiter)
    if panel:
        write_csv(root / "metadata_consensus_v1.csv", PANEL_HEADER, PANEL_ROWS, delimiter)
    for row in rows:
        (root / "dicom_clean" / row[0]).write_bytes(b"")  # never opened: only its existence is checked
    return root


@pytest.fixture
def brixia_full(tmp_path) -> Path:
    return full_folder(tmp_path / "brixia")


def test_full_layout_keeps_leading_zeros(brixia_full):
    items = {d["filename"]: d for d in brixia_full_datalist(brixia_full)}
    assert len(items) == 86
    assert items["1.dcm"]["label"] == [0, 0, 1, 2, 3, 0] and items["1.dcm"]["global"] == 6
    assert items["3.dcm"]["label"] == [0, 0, 0, 0, 1, 1]
    assert items["4.dcm"]["label"] == [0] * 6 and items["4.dcm"]["global"] == 0
    assert items["1.dcm"]["image"] == str(brixia_full / "dicom_clean" / "1.dcm")


def test_full_layout_metadata_fields(brixia_full):
    items = {d["filename"]: d for d in brixia_full_datalist(brixia_full)}
    one = items["1.dcm"]
    assert (one["patient_id"], one["study_date"], one["sex"], one["modality"]) == ("S1", "20200301", "M", "CR")
    # AgeAtStudyDateFiveYear is a five-year band: 12 is 60-64 years, not 12 years
    assert one["age_group"] == 12 and one["age_range"] == [60, 64] and "age" not in one
    assert items["4.dcm"]["age_group"] is None and items["4.dcm"]["age_range"] is None


def test_full_layout_consensus_scores(brixia_full):
    items = {d["filename"]: d for d in brixia_full_datalist(brixia_full)}
    assert [name for name, d in items.items() if d["consensus"]] == ["3.dcm", "5.dcm"]
    assert items["3.dcm"]["consensus_mode"] == [0, 0, 0, 0, 1, 1]
    assert items["3.dcm"]["consensus_mean"] == pytest.approx([0.2, 0, 0.4, 0, 1.2, 0.8])
    assert all(isinstance(v, int) for v in items["5.dcm"]["consensus_mode"])
    assert not items["1.dcm"]["consensus"] and "consensus_mode" not in items["1.dcm"] and "consensus_mean" not in items["1.dcm"]


def test_full_layout_without_consensus_file_still_flags_the_test_set(tmp_path):
    items = brixia_full_datalist(full_folder(tmp_path, panel=False))
    flagged = [d for d in items if d["consensus"]]
    assert [d["filename"] for d in flagged] == ["3.dcm", "5.dcm"] and all("consensus_mean" not in d for d in flagged)


def test_full_layout_reads_semicolon_separated_files(tmp_path):
    comma = brixia_full_datalist(full_folder(tmp_path / "comma"))
    semicolon = brixia_full_datalist(full_folder(tmp_path / "semicolon", delimiter=";"))
    strip = lambda items: [{k: v for k, v in d.items() if k != "image"} for d in items]  # noqa: E731
    assert strip(semicolon) == strip(comma)


def test_full_layout_bad_score_string_is_named(tmp_path):
    rows = full_rows()
    rows[0][4] = "1230"  # what a numeric read (or a spreadsheet) makes of "001230"
    root = full_folder(tmp_path, rows)
    with pytest.raises(CXRInputError, match=r"metadata_global_v1.csv: line 2 \(1\.dcm\): BrixiaScore.*six digits.*leading zeros lost"):
        brixia_full_datalist(root)


def test_full_layout_global_consensus_flag_and_age_are_checked(tmp_path):
    rows = full_rows()
    rows[1][5] = "8"  # 012330 sums to 9
    with pytest.raises(CXRInputError, match=r"line 3 \(2\.dcm\): BrixiaScoreGlobal 8 is not the sum"):
        brixia_full_datalist(full_folder(tmp_path / "global", rows))
    rows = full_rows()
    rows[3][6] = "yes please"
    with pytest.raises(CXRInputError, match=r"line 5 \(4\.dcm\): ConsensusTestset must be 0 or 1"):
        brixia_full_datalist(full_folder(tmp_path / "flag", rows))
    rows = full_rows()
    rows[0][9] = "062Y"
    with pytest.raises(CXRInputError, match=r"line 2 \(1\.dcm\): AgeAtStudyDateFiveYear is a five-year band"):
        brixia_full_datalist(full_folder(tmp_path / "age", rows))


def test_full_layout_consensus_image_without_panel_scores_is_refused(tmp_path):
    rows = full_rows()
    rows[0][6] = "1"  # 1.dcm flagged, but metadata_consensus_v1.csv has no row for it
    with pytest.raises(CXRInputError, match=r"metadata_consensus_v1.csv: consensus test image 1.dcm"):
        brixia_full_datalist(full_folder(tmp_path, rows))


def test_full_layout_missing_dicom_policies(brixia_full):
    (brixia_full / "dicom_clean" / "2.dcm").unlink()
    with pytest.raises(CXRInputError, match="listed in .*metadata_global_v1.csv but missing") as info:
        brixia_full_datalist(brixia_full)
    assert info.value.path == str(brixia_full / "dicom_clean" / "2.dcm")
    skipped = brixia_full_datalist(brixia_full, missing="skip")
    assert len(skipped) == 85 and "2.dcm" not in {d["filename"] for d in skipped}
    assert len(brixia_full_datalist(brixia_full, missing="ignore")) == 86


# ---------------------------------------------------------------------------------------------------
# full BrixIA splits


def subjects(items) -> set[str]:
    return {d["patient_id"] for d in items}


def test_splits_hold_out_the_consensus_set_and_its_subjects(brixia_full):
    items = brixia_full_datalist(brixia_full)
    splits = brixia_full_splits(items, val_fraction=0.25, seed=1)
    assert [d["filename"] for d in splits["test"]] == ["3.dcm", "5.dcm"]
    learn = splits["train"] + splits["val"]
    assert not any(d["consensus"] for d in learn)
    assert "S2" not in subjects(learn)  # 4.dcm, the consensus subject's other exam, stays out
    # the blank subject of consensus image 5.dcm is unknown, not shared: 6.dcm stays in
    assert "6.dcm" in {d["filename"] for d in learn}
    assert len(learn) == len(items) - 3


def test_splits_are_grouped_by_subject(brixia_full):
    splits = brixia_full_splits(brixia_full_datalist(brixia_full), val_fraction=0.25, seed=1)
    assert not subjects(splits["train"]) & subjects(splits["val"])
    # val_fraction counts subjects: 43 groups (S1, 40 P*, blank-subject 6.dcm alone) -> ceil(0.25 * 43) = 11
    groups = {d["patient_id"] or d["filename"] for d in splits["val"]}
    assert len(groups) == math.ceil(0.25 * 43)
    # both exams of every subject land on the same side
    for side in ("train", "val"):
        names = {d["filename"] for d in splits[side]}
        assert all((f"p{s}_0.dcm" in names) == (f"p{s}_1.dcm" in names) for s in range(40))


def test_splits_are_reproducible_and_seeded(brixia_full):
    items = brixia_full_datalist(brixia_full)
    a, b = brixia_full_splits(items, seed=7), brixia_full_splits(items, seed=7)
    assert a == b
    others = [brixia_full_splits(items, seed=s)["val"] for s in range(8, 12)]
    assert any(v != a["val"] for v in others)


def test_splits_options(brixia_full):
    items = brixia_full_datalist(brixia_full)
    everything = brixia_full_splits(items, val_fraction=0)
    assert everything["val"] == [] and len(everything["train"]) == len(items) - 3
    kept = brixia_full_splits(items, exclude_test_subjects=False)
    assert "4.dcm" in {d["filename"] for d in kept["train"] + kept["val"]}
    assert not any(d["consensus"] for d in kept["train"] + kept["val"])
    with pytest.raises(ValueError, match="val_fraction"):
        brixia_full_splits(items, val_fraction=1.0)


# ---------------------------------------------------------------------------------------------------
# lung masks


def test_lungseg_splits_match_the_manifest(shared_data):
    root = shared_data / "lungseg"
    manifest = read_rows(root / "manifest.csv")
    assert {r["split"] for r in manifest} == {"train", "test"}
    train, test, every = lungseg_datalist(root, "train"), lungseg_datalist(root, "test"), lungseg_datalist(root)
    assert (len(train), len(test), len(every)) == (323, 45, 368)
    assert [d["id"] for d in test] == [r["id"] for r in manifest if r["split"] == "test"]
    assert [d["id"] for d in train] == [r["id"] for r in manifest if r["split"] != "test"]
    assert {d["split"] for d in train} == {"train"} and {d["split"] for d in test} == {"test"}
    by_id = {r["id"]: r for r in manifest}
    assert all((d["patient_id"], d["view"]) == (by_id[d["id"]]["patientid"], by_id[d["id"]]["view"]) for d in every)


def test_lungseg_every_mask_exists_and_holes_are_flagged(shared_data):
    root = shared_data / "lungseg"
    items = lungseg_datalist(root)
    for d in items:
        assert Path(d["image"]).is_file() and Path(d["mask"]).is_file() and d["label"] == d["mask"]
        assert Path(d["mask"]) == root / "masks" / f"{d['id']}.png" and Path(d["image"]) == root / "images" / f"{d['id']}.png"
    holes = set((root / "masks_with_holes.txt").read_text().split())
    assert len(holes) == 48
    assert {d["id"] for d in items if d["mask_has_holes"]} == holes
    assert sum(d["mask_has_holes"] for d in lungseg_datalist(root, "test")) == 5


def test_lungseg_missing_mask_is_named_or_skipped(tmp_path):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    write_csv(tmp_path / "manifest.csv", ["id", "patientid", "view", "split"], [["a", "1", "PA", "train"], ["b", "2", "AP", "test"]])
    for name in ("images/a.png", "images/b.png", "masks/a.png"):
        (tmp_path / name).write_bytes(b"")
    with pytest.raises(CXRInputError, match="listed in .*manifest.csv but missing") as info:
        lungseg_datalist(tmp_path)
    assert info.value.path == str(tmp_path / "masks" / "b.png")
    assert [d["id"] for d in lungseg_datalist(tmp_path, missing="skip")] == ["a"]
    assert lungseg_datalist(tmp_path, "test", missing="skip") == []
    with pytest.raises(ValueError, match="split"):
        lungseg_datalist(tmp_path, "validation")


def test_image_mask_pairs_on_the_lungseg_folders(shared_data):
    root = shared_data / "lungseg"
    pairs = image_mask_pairs(root / "images", root / "masks")
    assert sorted(d["id"] for d in pairs) == sorted(r["id"] for r in read_rows(root / "manifest.csv"))
    assert all(Path(d["mask"]).name == Path(d["image"]).name for d in pairs)


def touch(folder: Path, *names: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"")


def test_image_mask_pairs_match_stems_across_endings(tmp_path):
    touch(tmp_path / "img", "a.dcm", "b.nii.gz", "c.PNG", "notes.txt")
    touch(tmp_path / "msk", "a_mask.png", "b_mask.nii.gz", "c_mask.jpg", "b.png")
    pairs = image_mask_pairs(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask")
    assert [(d["id"], Path(d["image"]).name, Path(d["mask"]).name) for d in pairs] == [
        ("a", "a.dcm", "a_mask.png"),
        ("b", "b.nii.gz", "b_mask.nii.gz"),
        ("c", "c.PNG", "c_mask.jpg"),
    ]
    assert all(os.path.isabs(d["image"]) and d["label"] == d["mask"] for d in pairs)


def test_image_mask_pairs_report_images_without_masks(tmp_path):
    touch(tmp_path / "img", "a.png", "b.png", "c.jpg")
    touch(tmp_path / "msk", "a_mask.png")
    with pytest.raises(CXRInputError, match=r"2 image\(s\) without a mask <stem>_mask\.\* in .*msk: b\.png, c\.jpg"):
        image_mask_pairs(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask")
    pairs = image_mask_pairs(tmp_path / "img", tmp_path / "msk", mask_suffix="_mask", missing="skip")
    assert [d["id"] for d in pairs] == ["a"]


def test_image_mask_pairs_in_one_folder_and_ambiguities(tmp_path):
    touch(tmp_path / "both", "a.png", "a_seg.png", "b.jpg", "b_seg.png")
    pairs = image_mask_pairs(tmp_path / "both", tmp_path / "both", mask_suffix="_seg")
    assert [(d["id"], Path(d["mask"]).name) for d in pairs] == [("a", "a_seg.png"), ("b", "b_seg.png")]
    with pytest.raises(CXRInputError, match="mask_suffix"):
        image_mask_pairs(tmp_path / "both", tmp_path / "both")
    touch(tmp_path / "dup", "x.png", "x.jpg")
    touch(tmp_path / "m", "x.png")
    with pytest.raises(CXRInputError, match="share a stem.*x.jpg / x.png"):
        image_mask_pairs(tmp_path / "dup", tmp_path / "m")
    with pytest.raises(CXRInputError, match="no such folder"):
        image_mask_pairs(tmp_path / "absent", tmp_path / "m")


# ---------------------------------------------------------------------------------------------------
# Cohen severity


def test_cohen_scores_real(shared_data):
    root = shared_data / "brixia-public"
    items = cohen_severity_datalist(root / "cohen-severity.csv", root / "images")
    rows = read_rows(root / "cohen-severity.csv")
    assert len(items) == len(rows) == 55
    assert [(d["filename"], d["geographic_extent"], d["opacity"]) for d in items] == [
        (r["filename"], float(r["geographic_mean"]), float(r["opacity_mean"])) for r in rows
    ]
    assert all(0 <= d["geographic_extent"] <= 8 and 0 <= d["opacity"] <= 6 and Path(d["image"]).is_file() for d in items)
    first = items[0]  # 01E392EE-...jpeg: extent 6.0, opacity 4.0, patient 46 in images.csv
    assert (first["geographic_extent"], first["opacity"], first["patient_id"]) == (6.0, 4.0, "46")
    # every scored image is also Brixia-scored: the two scales can be compared on these 55
    assert {d["filename"] for d in items} <= {d["filename"] for d in brixia_public_datalist(root)}


@pytest.mark.parametrize(
    "extent, opacity, column",
    [("9.5", "1", "geographic_mean"), ("2", "6.5", "opacity_mean"), ("-0.3", "1", "geographic_mean"), ("", "1", "geographic_mean")],
)
def test_cohen_scores_out_of_range_are_named(tmp_path, extent, opacity, column):
    touch(tmp_path / "images", "ok.png", "x.png")
    rows = [["ok.png", 1, 1], ["x.png", extent, opacity]]
    csv_path = write_csv(tmp_path / "bad.csv", ["filename", "geographic_mean", "opacity_mean"], rows)
    with pytest.raises(CXRInputError, match=rf"line 3 \(x\.png\): {column}.* is out of range") as info:
        cohen_severity_datalist(csv_path, tmp_path / "images")
    assert info.value.path == str(csv_path)


def test_cohen_missing_image_and_patient_lookup(tmp_path):
    touch(tmp_path / "images", "a.png")
    csv_path = write_csv(tmp_path / "scores.csv", ["filename", "geographic_mean", "opacity_mean"], [["a.png", 1, 1], ["b.png", 2, 2]])
    with pytest.raises(CXRInputError, match="listed in .*scores.csv but missing") as info:
        cohen_severity_datalist(csv_path, tmp_path / "images")
    assert info.value.path == str(tmp_path / "images" / "b.png")
    items = cohen_severity_datalist(csv_path, tmp_path / "images", missing="skip")
    assert [(d["filename"], d["patient_id"]) for d in items] == [("a.png", "")]  # no images.csv beside it
    meta = write_csv(tmp_path / "meta.csv", ["filename", "patientid"], [["a.png", "p7"]])
    assert cohen_severity_datalist(csv_path, tmp_path / "images", missing="skip", images_csv=meta)[0]["patient_id"] == "p7"


def test_the_packed_copy_for_a_gpu_machine_reads_as_the_original(shared_data, tmp_path):
    """``pack_training_data.py``: the readers take the packed folders unchanged, masks and tables are
    copied as they are, and each image is the original's 512 x 512 area-resized picture up to 8-bit
    rounding and JPEG noise. (What the histogram equalisation then makes of that noise, and so the scores,
    is measured by ``benchmarks/reencoding.py``.)"""
    import shutil
    import subprocess
    import sys

    import torch
    from monai.transforms import Resize
    from PIL import Image

    from monai_bsnet.transforms import LoadCXR

    source = tmp_path / "source"
    for folder, table, key in (("lungseg", "manifest.csv", "id"), ("brixia-public", "annotations.csv", "filename")):
        shutil.copytree(shared_data / folder, source / folder, ignore=shutil.ignore_patterns("images", "masks"))
        rows = read_rows(source / folder / table)[:3]  # three images of each folder
        write_csv(source / folder / table, list(rows[0]), [list(r.values()) for r in rows])
        for row in rows:
            for sub in ("images", "masks") if folder == "lungseg" else ("images",):
                name = f"{row[key]}.png" if folder == "lungseg" else row[key]
                (source / folder / sub).mkdir(parents=True, exist_ok=True)
                shutil.copy(shared_data / folder / sub / name, source / folder / sub / name)
    packed = tmp_path / "packed"
    script = Path(__file__).resolve().parents[1] / "bundle" / "scripts" / "pack_training_data.py"
    subprocess.run([sys.executable, str(script), str(source), str(packed)], check=True, capture_output=True, timeout=300)

    originals, copies = lungseg_datalist(source / "lungseg"), lungseg_datalist(packed / "lungseg")
    assert [d["id"] for d in copies] == [d["id"] for d in originals] and len(copies) == 3
    public, public_copies = brixia_public_datalist(source / "brixia-public"), brixia_public_datalist(packed / "brixia-public")
    assert [d["label"] for d in public_copies] == [d["label"] for d in public] and len(public_copies) == 3
    assert all(Path(c["mask"]).read_bytes() == Path(o["mask"]).read_bytes() for o, c in zip(originals, copies))
    resize, load = Resize((512, 512), mode="area"), LoadCXR()
    for original, copy in [(o["image"], c["image"]) for o, c in zip(originals, copies)] + [(o["image"], c["image"]) for o, c in zip(public, public_copies)]:
        with Image.open(copy) as picture:
            assert picture.format == "JPEG" and picture.size == (512, 512)
        difference = (load(copy).as_tensor() - resize(load(original)).as_tensor()).abs()
        assert float(difference.mean()) < 0.005, (original, float(difference.mean()))  # a little over one 8-bit level
        assert float(torch.quantile(difference.flatten(), 0.99)) < 0.02
