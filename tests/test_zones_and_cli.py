"""The zone convention helpers and the ``bsnet`` command."""

from __future__ import annotations

import subprocess
import sys

import pytest

from monai_bsnet.networks import BSNet
from monai_bsnet.zones import ZONE_LUNG, ZONE_NAMES, scores_from_string, scores_to_string


def test_score_strings_keep_leading_zeros():
    assert scores_from_string("013220") == [0, 1, 3, 2, 2, 0]
    assert scores_to_string([0, 0, 1, 0, 0, 3]) == "001003"
    for bad in ("13220", "0132201", "01322x", "014220"):
        with pytest.raises(ValueError, match="six digits"):
            scores_from_string(bad)
    with pytest.raises(ValueError, match="0..3"):
        scores_to_string([0, 1, 2, 3, 4, 0])


def test_laterality_is_the_patients():
    assert ZONE_NAMES == ("A", "B", "C", "D", "E", "F")
    assert [ZONE_LUNG[z] for z in ZONE_NAMES] == ["right"] * 3 + ["left"] * 3


@pytest.mark.parametrize("zone_classifier", ["bsnet", "pooled_linear"])
def test_bsnet_architecture_prints_the_stage_parameter_counts(zone_classifier):
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "architecture", "--image-size", "256", "--zone-classifier", zone_classifier],
        capture_output=True, text=True, check=True,
    )
    counts = BSNet(zone_classifier=zone_classifier).parameter_counts()
    for stage, count in counts.items():
        line = next(l for l in result.stdout.splitlines() if l.startswith(stage))
        assert f"{count:,}" in line
    assert "zone_logits (1, 6, 4)" in result.stdout and "lung_logits (1, 1, 256, 256)" in result.stdout
    assert f"({zone_classifier} zone classifier)" in result.stdout


def test_bsnet_architecture_names_the_known_zone_classifiers_for_an_unknown_one():
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "architecture", "--zone-classifier", "pyramid"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "'pyramid'" in result.stderr and "pooled_linear" in result.stderr


def test_bsnet_rejects_a_bad_image_size():
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "architecture", "--image-size", "500"], capture_output=True, text=True
    )
    assert result.returncode == 2 and "multiple of 32" in result.stderr


def test_bsnet_train_runs_a_stage_through_the_bundle(shared_data, tmp_path):
    masks = f"monai_bsnet.data.lungseg_datalist('{shared_data / 'lungseg'}', split='train')[:6]"
    result = subprocess.run(
        [sys.executable, "-m", "monai_bsnet.cli", "train", "--stage", "alignment",
         "--datalist", f"$[{{'image': d['mask'], 'label': d['mask'], 'patient_id': d['patient_id']}} for d in {masks}]",
         "--max_epochs", "1", "--batch_size", "2", "--num_workers", "0",
         "--ckpt_dir", str(tmp_path), "--output_dir", str(tmp_path / "logs")],
        capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "alignment.pt").is_file()
    assert "val_aligned_dice" in result.stdout + result.stderr
