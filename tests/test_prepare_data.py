"""`bsnet prepare-data`: the training folders built from small synthetic copies of the public sources.

The source trees mimic the real layouts (BrixIA repository, COVID-19 image data collection with its
metadata.csv and severity annotations, the V7 mask archive) with a handful of the team's real
radiographs and lung masks from ``../shared/data``; the annotations are synthetic.
"""

from __future__ import annotations

import csv
import filecmp
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from scipy import ndimage

from monai_bsnet.cli import main
from monai_bsnet.data import brixia_public_datalist, cohen_severity_datalist, lungseg_datalist
from monai_bsnet.data.prepare import brixia_heldout_rows, lungseg_id, prepare_lungseg, prepare_training_data
from monai_bsnet.errors import CXRInputError

# the real header of ieee8023/covid-chestxray-dataset metadata.csv (note the trailing empty column)
METADATA_HEADER = (
    "patientid,offset,sex,age,finding,RT_PCR_positive,survival,intubated,intubation_present,went_icu,in_icu,"
    "needed_supplemental_O2,extubated,temperature,pO2_saturation,leukocyte_count,neutrophil_count,lymphocyte_count,"
    "view,modality,date,location,folder,filename,doi,url,license,clinical_notes,other_notes,"
).split(",")
N_ROWS = 12  # annotation rows of the synthetic BrixIA CSV
TRAIN, HELDOUT = brixia_heldout_rows(N_ROWS)
ABSENT_TRAIN = TRAIN[2]  # a training row whose image the BrixIA copy lacks
NO_METADATA_TRAIN = TRAIN[3]  # a training row whose image the collection's metadata does not list
SIZE = (600, 480)  # (width, height) of the synthetic lungseg sources


def _scores(row: int) -> tuple[list[int], list[int]]:
    rng = np.random.default_rng(row)
    senior = rng.integers(0, 4, 6).tolist()
    junior = [min(3, max(0, s + int(d))) for s, d in zip(senior, rng.integers(-1, 2, 6))]
    return senior, junior


def _metadata_row(filename: str, patientid: str, view: str = "PA", modality: str = "X-ray", license: str = "CC BY 4.0") -> dict:
    return {"patientid": patientid, "finding": "Pneumonia/Viral/COVID-19", "view": view, "modality": modality,
            "folder": "images", "filename": filename, "url": f"https://example.org/{filename}", "license": license,
            "clinical_notes": "notes, with a comma"}


@pytest.fixture(scope="module")
def sources(tmp_path_factory, shared_data) -> dict:
    """Synthetic source trees; returns their paths and what the tests expect of them."""
    root = tmp_path_factory.mktemp("sources")
    brixia, covid = root / "Brixia-score-COVID-19", root / "covid-chestxray-dataset"
    (brixia / "data" / "public-cohen-subset").mkdir(parents=True)
    (covid / "images").mkdir(parents=True)
    (covid / "annotations").mkdir()

    # --- BrixIA annotations: 12 rows, real images (the smallest of the team's copy)
    real = sorted((shared_data / "brixia-public" / "images").iterdir(), key=lambda p: p.stat().st_size)[:N_ROWS]
    names = [p.name for p in real]
    names[ABSENT_TRAIN] = "absent-from-the-brixia-copy.jpg"
    with open(brixia / "data" / "public-annotations.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["filename", *[f"S-{z}" for z in "ABCDEF"], "S-Global", *[f"J-{z}" for z in "ABCDEF"], "J-Global"])
        for row, name in enumerate(names):
            senior, junior = _scores(row)
            w.writerow([name, *senior, sum(senior), *junior, sum(junior)])
    metadata = []
    for row, (name, path) in enumerate(zip(names, real)):
        if row != ABSENT_TRAIN:
            shutil.copyfile(path, brixia / "data" / "public-cohen-subset" / name)
            shutil.copyfile(path, covid / "images" / name)
        if row != NO_METADATA_TRAIN:
            metadata.append(_metadata_row(name, f"b{row}", view="AP Supine" if row % 2 else "PA"))

    # --- V7 masks: real lungseg masks, stretched to 600x480 with their images
    masks: dict[str, np.ndarray] = {}
    holes = set((shared_data / "lungseg" / "masks_with_holes.txt").read_text().split())
    clean = [i for i in sorted(p.stem for p in (shared_data / "lungseg" / "masks").glob("*.png")) if i not in holes][:8]

    def add_pair(name: str, source_id: str, write_image: bool = True) -> np.ndarray:
        image = Image.open(shared_data / "lungseg" / "images" / f"{source_id}.png").convert("L").resize(SIZE, Image.BILINEAR)
        mask = np.asarray(Image.open(shared_data / "lungseg" / "masks" / f"{source_id}.png").resize(SIZE, Image.NEAREST))
        mask = np.where(mask > 0, 255, 0).astype(np.uint8)
        if write_image:
            image.save(covid / "images" / name)
        masks[name] = mask
        return mask

    frontal = {"a.case-1.png": ("1", "PA"), "b-case-2.jpg": ("2", "AP"), "c-case-3.png": ("3", "AP Supine"),
               "d-cut-out.png": ("4", "PA"), "e-enclosed-hole.png": ("5", "AP"),
               "0-same-patient-as-heldout.png": (f"b{HELDOUT[0]}", "PA")}
    for k, (name, (patient, view)) in enumerate(frontal.items()):
        mask = add_pair(name, clean[k])
        metadata.append(_metadata_row(name, patient, view))
    cut = masks["d-cut-out.png"]
    ys, xs = np.nonzero(cut == 255)
    cut[ys[len(ys) // 2] - 5 : ys[len(ys) // 2] + 5, xs.min() : xs.min() + 40] = 127  # V7's cut-out value
    enclosed = masks["e-enclosed-hole.png"]
    depth = ndimage.distance_transform_edt(enclosed == 255)
    cy, cx = np.unravel_index(int(np.argmax(depth)), depth.shape)
    enclosed[cy - 4 : cy + 4, cx - 4 : cx + 4] = 0  # a hole deep inside a lung
    # not in the full set: lateral, CT, no metadata row (their images need not exist)
    add_pair("f-lateral.png", clean[6], write_image=False)
    metadata.append(_metadata_row("f-lateral.png", "6", view="L"))
    add_pair("g-ct-slice.png", clean[7], write_image=False)
    metadata.append(_metadata_row("g-ct-slice.png", "7", view="Axial", modality="CT"))
    add_pair("h-not-in-metadata.png", clean[7], write_image=False)
    # a held-out BrixIA image with a frontal mask: left out of lungseg too
    heldout_name = names[HELDOUT[1]]
    with Image.open(covid / "images" / heldout_name) as im:
        masks[heldout_name] = np.asarray(Image.fromarray(masks["a.case-1.png"]).resize(im.size, Image.NEAREST))

    v7_zip = root / "semantic_masks_v7labs_lungs.zip"
    with zipfile.ZipFile(v7_zip, "w") as archive:
        archive.writestr("semantic_masks_v7labs_lungs/", "")
        for name, mask in masks.items():
            buffer = Path(root / "mask.png")
            Image.fromarray(mask).save(buffer, format="PNG")  # PNG bytes under the image's own name (.jpg too)
            archive.write(buffer, f"semantic_masks_v7labs_lungs/{name}")
    pd.DataFrame([{c: r.get(c, "") for c in METADATA_HEADER} for r in metadata], columns=METADATA_HEADER).to_csv(
        covid / "metadata.csv", index=False
    )

    # --- Cohen severity scores, with the real file's comment lines
    severity = [(names[TRAIN[0]], "6.0", "4.0"), (names[HELDOUT[0]], "2.0", "2.0"), ("not-annotated.jpg", "1.0", "1.0"),
                (names[TRAIN[4]], "0.3", "0.7")]
    with open(covid / "annotations" / "covid-severity-scores.csv", "w") as f:
        f.write("## COVID-19 Pneumonia Severity Scores (Mean of 3 expert raters)\n## License: CC BY-SA\n")
        f.write("filename,geographic_mean,opacity_mean\n")
        f.writelines(f"{a},{b},{c}\n" for a, b, c in severity)

    full_set = sorted(lungseg_id(n) for n in [*frontal, heldout_name])
    left_out = {lungseg_id("0-same-patient-as-heldout.png"), lungseg_id(heldout_name)}
    return {"root": root, "brixia": brixia, "covid": covid, "v7_zip": v7_zip, "names": names, "frontal": frontal,
            "severity": severity, "full_set": full_set, "left_out": left_out}


def _argv(sources: dict, output: Path, **replace) -> list[str]:
    paths = {"brixia": sources["brixia"], "covid": sources["covid"], "v7_zip": sources["v7_zip"]} | replace
    return ["prepare-data", "--brixia-repo", str(paths["brixia"]), "--covid-repo", str(paths["covid"]),
            "--v7-zip", str(paths["v7_zip"]), "--output", str(output)]


@pytest.fixture(scope="module")
def prepared(sources, tmp_path_factory) -> Path:
    output = tmp_path_factory.mktemp("prepared") / "data"
    assert main(_argv(sources, output)) == 0
    return output


def test_split_rule_is_the_bsnet_authors():
    from sklearn.model_selection import train_test_split

    train, test = train_test_split(list(range(192)), test_size=0.25, random_state=23)
    assert brixia_heldout_rows(192) == (sorted(train), sorted(test))
    assert len(brixia_heldout_rows(192)[0]) == 144


def test_brixia_public_is_the_training_part(sources, prepared, shared_data):
    names = sources["names"]
    folder = prepared / "brixia-public"
    items = brixia_public_datalist(folder)
    expected_rows = [r for r in TRAIN if r != ABSENT_TRAIN]
    assert [d["filename"] for d in items] == [names[r] for r in expected_rows]  # source order
    for item, row in zip(items, expected_rows):
        senior, junior = _scores(row)
        assert item["label"] == senior and item["global"] == sum(senior) and item["label_junior"] == junior
        assert item["patient_id"] == ("" if row == NO_METADATA_TRAIN else f"b{row}")
        assert item["view"] in ("", "PA", "AP Supine")
        assert filecmp.cmp(item["image"], sources["brixia"] / "data" / "public-cohen-subset" / names[row], shallow=False)
    # the held-out rows are nowhere in the output
    heldout = {names[r] for r in HELDOUT}
    written = {p.name for p in folder.rglob("*")}
    assert not heldout & written
    for text_file in folder.glob("*.*"):
        if text_file.is_file():
            assert not any(h in text_file.read_text() for h in heldout), text_file
    assert sorted(p.name for p in (folder / "images").iterdir()) == sorted(d["filename"] for d in items)
    info = pd.read_csv(folder / "images.csv", dtype=str, keep_default_na=False)
    assert list(info.columns) == ["filename", "patientid", "view", "license", "url"]
    team = shared_data / "brixia-public"
    for name in ("annotations.csv", "images.csv", "cohen-severity.csv"):
        assert list(pd.read_csv(folder / name).columns) == list(pd.read_csv(team / name).columns), name

    cohen = cohen_severity_datalist(folder / "cohen-severity.csv", folder / "images")
    assert [(d["filename"], d["geographic_extent"], d["opacity"]) for d in cohen] == [
        (names[TRAIN[0]], 6.0, 4.0), (names[TRAIN[4]], 0.3, 0.7)
    ]
    assert cohen[0]["patient_id"] == f"b{TRAIN[0]}"


def test_lungseg_pairs_manifest_and_holes(sources, prepared, shared_data):
    folder = prepared / "lungseg"
    items = lungseg_datalist(folder)
    expected = [i for i in sources["full_set"] if i not in sources["left_out"]]
    assert [d["id"] for d in items] == expected
    assert all(d["split"] == "test" for d in items)  # fewer than 50: all in the first 50
    assert {d["id"] for d in items if d["mask_has_holes"]} == {lungseg_id("d-cut-out.png"), lungseg_id("e-enclosed-hole.png")}
    manifest = pd.read_csv(folder / "manifest.csv", dtype=str, keep_default_na=False)
    team = pd.read_csv(shared_data / "lungseg" / "manifest.csv", dtype=str, keep_default_na=False)
    assert list(manifest.columns) == list(team.columns)
    row = manifest.set_index("id").loc["cohen_a_case-1"]
    assert (row.original_path, row.original_width, row.original_height, row.patientid, row.view, row.license) == (
        "images/a.case-1.png", "600", "480", "1", "PA", "CC BY 4.0")
    for item in items:
        name = Path(manifest.set_index("id").loc[item["id"], "original_path"]).name
        image, mask = np.asarray(Image.open(item["image"])), np.asarray(Image.open(item["mask"]))
        assert image.shape == mask.shape == (512, 512) and image.dtype == mask.dtype == np.uint8
        assert set(np.unique(mask)) <= {0, 255} and (mask == 255).mean() > 0.1
        with Image.open(sources["covid"] / "images" / name) as source:
            assert np.array_equal(image, np.asarray(source.convert("L").resize((512, 512), Image.BILINEAR)))
    cut = np.asarray(Image.open(folder / "masks" / "cohen_d-cut-out.png"))
    assert set(np.unique(cut)) == {0, 255}  # the cut-out (127) is not lung


def test_lungseg_test_split_counts_the_full_set(sources, tmp_path):
    # the first 3 ids of the full set are the test split, counted before the held-out patients leave
    done = prepare_lungseg(sources["covid"], sources["v7_zip"], sources["brixia"], tmp_path / "lungseg", test_count=3)
    first = sources["full_set"][:3]
    assert sources["left_out"] & set(first), "the fixture should put a left-out id among the first three"
    test = [d["id"] for d in lungseg_datalist(tmp_path / "lungseg", split="test")]
    assert test == [i for i in first if i not in sources["left_out"]]
    assert done.counts["full_set"] == len(sources["full_set"]) and done.counts["test"] == len(test)
    assert len(lungseg_datalist(tmp_path / "lungseg", split="train")) == done.count - len(test)


@pytest.mark.parametrize(
    "remove, named",
    [
        ("covid-chestxray-dataset/metadata.csv", "metadata.csv"),
        ("Brixia-score-COVID-19/data/public-annotations.csv", "public-annotations.csv"),
        ("covid-chestxray-dataset/annotations/covid-severity-scores.csv", "covid-severity-scores.csv"),
        ("semantic_masks_v7labs_lungs.zip", "semantic_masks_v7labs_lungs.zip"),
        ("covid-chestxray-dataset/images/a.case-1.png", "a.case-1.png"),
    ],
)
def test_missing_source_is_named_and_nothing_is_written(sources, tmp_path, capsys, remove, named):
    copy = tmp_path / "sources"
    shutil.copytree(sources["root"], copy)
    target = copy / remove
    target.unlink()
    output = tmp_path / "out"
    paths = {"brixia": copy / "Brixia-score-COVID-19", "covid": copy / "covid-chestxray-dataset",
             "v7_zip": copy / "semantic_masks_v7labs_lungs.zip"}
    with pytest.raises(SystemExit) as stop:
        main(_argv(sources, output, **paths))
    assert stop.value.code == 2
    message = capsys.readouterr().err
    assert named in message and str(target) in message, message
    assert not output.exists() or not any(output.iterdir())  # neither folder, nor a partial one


def test_failure_while_building_leaves_no_partial_folder(sources, tmp_path):
    copy = tmp_path / "sources"
    shutil.copytree(sources["root"], copy)
    Path(copy / "covid-chestxray-dataset" / "images" / "b-case-2.jpg").write_bytes(b"not an image")
    output = tmp_path / "out"
    with pytest.raises(CXRInputError, match="b-case-2.jpg"):
        prepare_training_data(copy / "Brixia-score-COVID-19", copy / "covid-chestxray-dataset",
                              copy / "semantic_masks_v7labs_lungs.zip", output)
    assert list(output.iterdir()) == []  # brixia-public was complete, but is renamed only with lungseg


def test_existing_output_needs_overwrite(sources, tmp_path, capsys):
    output = tmp_path / "out"
    (output / "lungseg").mkdir(parents=True)
    (output / "lungseg" / "keep.txt").write_text("mine")
    with pytest.raises(SystemExit):
        main(_argv(sources, output))
    assert "already exists" in capsys.readouterr().err
    assert (output / "lungseg" / "keep.txt").read_text() == "mine" and not (output / "brixia-public").exists()
    assert main([*_argv(sources, output), "--overwrite"]) == 0
    assert not (output / "lungseg" / "keep.txt").exists() and len(lungseg_datalist(output / "lungseg")) == len(
        set(sources["full_set"]) - sources["left_out"])
    assert sorted(p.name for p in output.iterdir()) == ["brixia-public", "lungseg"]


def test_bad_annotation_row_names_the_source(sources, tmp_path, capsys):
    copy = tmp_path / "sources"
    shutil.copytree(sources["root"], copy)
    csv_path = copy / "Brixia-score-COVID-19" / "data" / "public-annotations.csv"
    lines = csv_path.read_text().splitlines()
    lines[1 + TRAIN[0]] = lines[1 + TRAIN[0]].replace(",", ",7,", 1).rsplit(",", 1)[0]  # zone S-A = 7
    csv_path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CXRInputError, match="public-annotations.csv"):
        prepare_training_data(copy / "Brixia-score-COVID-19", copy / "covid-chestxray-dataset",
                              copy / "semantic_masks_v7labs_lungs.zip", tmp_path / "out")
    assert not (tmp_path / "out" / "brixia-public").exists()


def test_default_v7_zip_is_torchxrayvisions():
    import importlib.util

    from monai_bsnet.data.prepare import default_v7_zip

    if importlib.util.find_spec("torchxrayvision") is None:
        assert default_v7_zip() is None
        return
    found = default_v7_zip()
    assert found is not None and found.name == "semantic_masks_v7labs_lungs.zip" and found.parent.name == "data"
    with zipfile.ZipFile(found) as archive:
        assert any(n.startswith("semantic_masks_v7labs_lungs/") and n.endswith(".png") for n in archive.namelist())
