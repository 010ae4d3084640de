"""The GPU experiment ``bundle/scripts/end_to_end_scoring.py``: its augmentation keeps images and zone
scores consistent, and pack -> run -> collect works on a few small images on the CPU."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bundle" / "scripts"))

import end_to_end_scoring  # noqa: E402

from monai_bsnet.networks import BSNet, load_weights  # noqa: E402

SCRIPT = REPO / "bundle" / "scripts" / "end_to_end_scoring.py"


def test_the_augmentation_swaps_the_zone_scores_of_exactly_the_mirrored_images():
    images = torch.zeros(32, 1, 64, 64)
    images[..., :24] = 1.0  # bright in the left half of the picture: the patient's right lung
    scores = torch.tensor([[3, 3, 3, 0, 0, 0]]).repeat(32, 1)
    out, out_scores = end_to_end_scoring.augment(images, scores, torch.Generator().manual_seed(0))
    mirrored = out[..., 32:].sum((1, 2, 3)) > out[..., :32].sum((1, 2, 3))
    assert 4 < int(mirrored.sum()) < 28, "about half the draws are mirrored"
    assert torch.equal(out_scores[mirrored], torch.tensor([[0, 0, 0, 3, 3, 3]]).repeat(int(mirrored.sum()), 1))
    assert torch.equal(out_scores[~mirrored], scores[~mirrored])
    assert not torch.equal(out[~mirrored], images[~mirrored]), "the other transforms change the pictures"


def test_pack_run_and_collect_on_a_few_images(tmp_path, shared_data):
    packed, out = tmp_path / "packed", tmp_path / "out"
    subprocess.run([sys.executable, str(SCRIPT), "pack", "--data", str(shared_data), "--out", str(packed), "--limit", "12", "--image-size", "64"],
                   check=True, capture_output=True, timeout=600)
    meta = json.loads((packed / "meta.json").read_text())
    assert len(meta["filenames"]) == 12 and set(meta["fold"]) <= set(range(5)) and meta["n_lungseg"] == 12
    subprocess.run([sys.executable, str(SCRIPT), "run", "--packed", str(packed), "--out", str(out), "--epochs", "2", "--variants", "1",
                    "--copies", "2", "--batch", "4", "--cpu"], check=True, capture_output=True, timeout=900)
    log = json.loads((out / "e2e_log.json").read_text())
    assert log["complete"] and set(log["summary"]) == {"epoch0", "e2e_lr1e-4@2", "e2e_lr1e-4+refit"}
    assert all(row["n"] == 12 for row in log["summary"].values()), "every image is scored once, out of its fold"
    assert [len(r["train_loss"]) for r in log["results"]["e2e_lr1e-4"]] == [2] * len({*meta["fold"]})

    # the all-image model: encoder and scoring stage only, in parts, which load onto the shipped network
    final = torch.load(io.BytesIO(b"".join((out / name).read_bytes() for name in log["final"]["final_parts"])), weights_only=True)
    assert {name.split(".")[0] for name in final} == {"encoder", "scoring"}
    shipped = load_weights(BSNet(), REPO / "bundle" / "models" / "model.pt").state_dict()
    assert not torch.equal(final["encoder.layer4.1.conv2.weight"].float(), shipped["encoder.layer4.1.conv2.weight"].half().float()), "the encoder learned"
    statistics = [name for name in final if name.endswith("running_mean")]
    assert statistics and all(torch.equal(final[name].float(), shipped[name].half().float()) for name in statistics), "batch-norm statistics stay fixed"
    network = BSNet()
    network.load_state_dict({**shipped, **{k: v.float() if v.is_floating_point() else v for k, v in final.items()}}, strict=False)

    # collect writes the out-of-fold predictions in the cross-validations' format
    logs = tmp_path / "logs"
    subprocess.run([sys.executable, str(SCRIPT), "collect", str(out / "e2e_log.json"), "--packed", str(packed), "--out", str(logs)],
                   check=True, capture_output=True, timeout=600)
    rows = json.loads((logs / "cv_e2e_epoch0_predictions.json").read_text())
    assert [row["filename"] for row in rows] == meta["filenames"] and [row["fold"] for row in rows] == meta["fold"]
    assert np.allclose(np.array([row["probabilities"] for row in rows]).sum(-1), 1, atol=1e-3)
    summary = json.loads((logs / "e2e_summary.json").read_text())
    assert summary["cross_validation"]["epoch0"]["n"] == 12 and summary["final"]["variant"] == "e2e_lr1e-4"


def test_the_learning_rate_warms_up_linearly_then_decays_by_a_cosine():
    factor = end_to_end_scoring.learning_rate_factor
    assert [factor(s, 100, 4) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert factor(4, 100, 4) == 1.0 and factor(52, 100, 4) == pytest.approx(0.5) and factor(100, 100, 4) == pytest.approx(0.0)
    # without warm-up: the plain cosine of stop 21's runs
    assert [factor(s, 10) for s in (0, 5, 10)] == pytest.approx([1.0, 0.5, 0.0])
