"""The MONAI bundle: metadata, network shape, inference.json, TorchScript export, and `bsnet predict`."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest
import torch
from monai.bundle import ConfigParser, ckpt_export, run, verify_metadata, verify_net_in_out
from PIL import Image

from monai_bsnet.networks import BSNet, BSNetZoneProbabilities, load_weights

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
META = str(CONFIGS / "metadata.json")
INFERENCE = str(CONFIGS / "inference.json")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """Untrained weights with a fixed seed, of the shipped model's architecture (``inference.json``'s
    ``network_def``): the tests check the plumbing, not the accuracy."""
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("ckpt") / "model.pt"
    torch.save(BSNet(zone_classifier="pooled_linear").state_dict(), path)
    return path


def rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_metadata_is_valid_without_download():
    verify_metadata(meta_file=META, filepath=str(CONFIGS / "schema" / "meta_schema.json"))


def test_network_input_and_output_shapes_match_the_metadata():
    verify_net_in_out(net_id="network_def", meta_file=META, config_file=INFERENCE, n=1, device="cpu")


def test_inference_config_scores_the_samples_by_default(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the README runs the bundle from the repository root
    run(config_file=INFERENCE, ckpt_path=str(checkpoint), output_dir=str(tmp_path))
    table = rows(tmp_path / "results.csv")
    samples = sorted(p.name for p in (REPO / "bundle" / "sample").iterdir() if p.suffix in (".jpg", ".dcm"))
    assert sorted(Path(r["input"]).name for r in table) == samples
    assert all(r["status"] == "ok" for r in table)
    for r in table:
        stem = Path(r["input"]).stem
        for suffix in (".json", "_lung.png", "_zones.png", "_overlay.png"):
            assert (tmp_path / f"{stem}{suffix}").is_file()


def test_export_to_torchscript_gives_the_same_probabilities(checkpoint, tmp_path):
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(checkpoint), meta_file=META, config_file=INFERENCE)
    scripted = torch.jit.load(str(exported))
    eager = load_weights(BSNetZoneProbabilities(), checkpoint)
    image = torch.rand(2, 1, 512, 512)
    with torch.no_grad():
        assert torch.allclose(scripted(image), eager.eval()(image), atol=1e-5)


def test_bsnet_predict_writes_the_same_results_as_the_bundle(checkpoint, tmp_path):
    sample = REPO / "bundle" / "sample"
    cli = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "predict", str(sample), "--output", str(tmp_path / "cli"),
         "--weights", str(checkpoint), "--quiet"],
        capture_output=True, text=True,
    )
    assert cli.returncode == 0, cli.stderr
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({"bundle_root": str(REPO / "bundle"), "ckpt_path": str(checkpoint), "output_dir": str(tmp_path / "bundle")})
    parser.get_parsed_content("predictor").run([sample], tmp_path / "bundle", progress=False)
    assert rows(tmp_path / "cli" / "results.csv") == rows(tmp_path / "bundle" / "results.csv")


def test_bsnet_predict_without_weights_says_so(tmp_path):
    cli = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "predict", str(tmp_path), "--output", str(tmp_path / "o"),
         "--weights", str(tmp_path / "none.pt")],
        capture_output=True, text=True,
    )
    assert cli.returncode == 2 and "no BS-Net weights" in cli.stderr


def test_inference_config_on_generated_dicom_png_and_jpeg(checkpoint, dicom_zoo, radiograph_u8, tmp_path):
    folder = next(iter(dicom_zoo.values())).parent
    Image.fromarray(radiograph_u8).save(tmp_path / "grey.png")
    Image.fromarray(radiograph_u8).convert("RGB").save(tmp_path / "colour.jpg")
    parser = ConfigParser()
    parser.read_config(INFERENCE)
    parser.update({"bundle_root": str(REPO / "bundle"), "ckpt_path": str(checkpoint)})
    records = parser.get_parsed_content("predictor").run([folder, tmp_path / "grey.png", tmp_path / "colour.jpg"], tmp_path / "out", progress=False)
    table = rows(tmp_path / "out" / "results.csv")
    assert len(table) == len(dicom_zoo) + 2 and all(r["status"] == "ok" for r in table), [r for r in table if r["status"] != "ok"]
    for record in records:
        assert Image.open(record["outputs"]["lung_mask"]).size == (256, 288)  # (width, height) of the source
    dicom = next(r for r in records if r["input"].endswith("cr_mono2_12bit.dcm"))
    assert dicom["image"]["modality"] == "CR" and dicom["image"]["patient_id"] == "CXR-TEST-001"


def test_two_process_evaluation_gathers_every_image(checkpoint, shared_data, tmp_path):
    files = "['bundle/configs/train.json','bundle/configs/evaluate.json','bundle/configs/multi_gpu_evaluate.json']"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29518",
        "-m", "monai.bundle", "run", "--config_file", files,
        "--eval_datalist", f"$monai_bsnet.data.brixia_public_datalist('{shared_data / 'brixia-public'}')[:5]",
        "--ckpt_path", str(checkpoint), "--image_size", "128", "--batch_size", "2", "--num_workers", "0",
        "--output_dir", str(tmp_path),
    ]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    assert report["n_images"] == 5  # 3 + 2 images from the two processes, none padded


def test_sample_dicom_is_a_conformant_secondary_capture():
    sample = REPO / "bundle" / "sample" / "4d98e1de.dcm"
    ds = pydicom.dcmread(sample)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.7" and ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
    if shutil.which("dciodvfy") is None:
        pytest.skip("dicom3tools' dciodvfy is not installed")
    result = subprocess.run(["dciodvfy", str(sample)], capture_output=True, text=True)
    assert "Error" not in result.stdout + result.stderr, result.stdout + result.stderr


def test_mirror_tta_is_the_default_of_bsnet_predict_and_the_bundle_and_can_be_turned_off(checkpoint, tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    shutil.copy(sorted((REPO / "bundle" / "sample").glob("*.jpg"))[0], inputs)
    for name, options, tta in (("default", [], {}), ("plain", ["--no-tta"], {"tta": False})):
        cli = subprocess.run(
            [sys.executable, "-m", "monai_bsnet.cli", "predict", str(inputs), "--output", str(tmp_path / f"cli_{name}"), "--weights", str(checkpoint),
             "--quiet", *options], capture_output=True, text=True,
        )
        assert cli.returncode == 0, cli.stderr
        parser = ConfigParser()
        parser.read_config(INFERENCE)
        parser.update({"ckpt_path": str(checkpoint), **tta})
        parser.get_parsed_content("predictor").run([inputs], tmp_path / f"bundle_{name}", progress=False)
        assert rows(tmp_path / f"cli_{name}" / "results.csv") == rows(tmp_path / f"bundle_{name}" / "results.csv")
        for out in ("cli", "bundle"):
            record = json.loads(next((tmp_path / f"{out}_{name}").glob("*.json")).read_text())
            assert record["model"]["test_time_augmentation"] == ("mirror" if name == "default" else None)
    default, plain = (json.loads(next((tmp_path / f"cli_{name}").glob("*.json")).read_text()) for name in ("default", "plain"))
    assert default["zones"] != plain["zones"]  # the mirror counts (the zones hold their probabilities)
