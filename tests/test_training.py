"""Staged training, resuming, determinism, evaluation and 2-process DDP, each on a handful of real images."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from ignite.engine import Events
from monai.bundle import ConfigParser

from monai_bsnet.data import brixia_public_datalist, lungseg_datalist
from monai_bsnet.networks.bsnet import BSNetOutput
from monai_bsnet.training import AutocastInferer, latest_checkpoint

REPO = Path(__file__).resolve().parents[1]
CONFIGS = REPO / "bundle" / "configs"
STAGE_FILES = {
    "segmentation": ["train.json", "train_segmentation.json"],
    "alignment": ["train.json", "train_alignment.json"],
    "scoring": ["train.json"],
}
SMALL = {"image_size": 128, "max_epochs": 1, "batch_size": 2, "num_workers": 0}


def stage_data(stage: str, shared: Path, n: int = 6) -> list[dict]:
    if stage == "scoring":
        return brixia_public_datalist(shared / "brixia-public")[:n]
    masks = lungseg_datalist(shared / "lungseg", split="train")[:n]
    if stage == "alignment":
        return [{"image": d["mask"], "label": d["mask"], "patient_id": d["patient_id"]} for d in masks]
    return masks


def workflow(files: list[str], **overrides) -> ConfigParser:
    parser = ConfigParser()
    parser.read_config([str(CONFIGS / f) for f in files])
    parser.update(overrides)
    return parser


def train(stage: str, shared: Path, ckpt_dir: Path, **overrides) -> list[int]:
    """Run one stage; returns the epoch of every training iteration that ran."""
    data = stage_data(stage, shared)
    parser = workflow(STAGE_FILES[stage], train_datalist=data[:4], val_datalist=data[4:], ckpt_dir=str(ckpt_dir),
                      output_dir=str(ckpt_dir / "logs"), **{**SMALL, **overrides})
    parser.get_parsed_content("initialize")
    epochs: list[int] = []
    parser.get_parsed_content("train#trainer").add_event_handler(Events.ITERATION_COMPLETED, lambda e: epochs.append(e.state.epoch))
    parser.get_parsed_content("run")
    return epochs


def state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)


def differs(a: dict, b: dict, prefix: str) -> bool:
    return any(not torch.equal(a[k], b[k]) for k in a if k.startswith(prefix) and a[k].is_floating_point())


@pytest.fixture(scope="module")
def chain(shared_data, tmp_path_factory) -> Path:
    """segmentation -> alignment -> scoring, each starting from the previous stage's checkpoint."""
    ckpt = tmp_path_factory.mktemp("models")
    for stage in ("segmentation", "alignment", "scoring"):
        epochs = train(stage, shared_data, ckpt)
        assert epochs == [1, 1], stage  # 4 training images, batches of 2, one epoch
    return ckpt


def test_each_stage_writes_its_checkpoint(chain):
    for name in ("segmentation.pt", "alignment.pt", "model.pt"):
        assert (chain / name).is_file(), name
    for stage in ("segmentation", "alignment", "scoring"):
        assert latest_checkpoint(chain / "checkpoints", stage).name == f"{stage}_checkpoint_epoch=1.pt"


def test_stages_train_their_part_and_keep_the_frozen_ones(chain):
    seg, align, model = state(chain / "segmentation.pt"), state(chain / "alignment.pt"), state(chain / "model.pt")
    # alignment started from the segmentation checkpoint and changed only the alignment network
    assert not differs(seg, align, "encoder.") and not differs(seg, align, "segmentation.")
    assert differs(seg, align, "alignment.")
    # scoring started from the alignment checkpoint; encoder, segmentation and alignment stay frozen
    for part in ("encoder.", "segmentation.", "alignment."):
        assert not differs(align, model, part), part
    assert differs(align, model, "scoring.")


def test_the_bundle_trains_one_shared_zone_classifier_when_asked(chain, shared_data, tmp_path):
    shutil.copy(chain / "alignment.pt", tmp_path / "alignment.pt")
    train("scoring", shared_data, tmp_path, shared_zone_classifier=True)
    align, model = state(tmp_path / "alignment.pt"), state(tmp_path / "model.pt")
    for zone in range(6):
        key = f"scoring.classifiers.{zone}.blocks.0.conv.weight"
        assert torch.equal(model[key], model["scoring.classifiers.0.blocks.0.conv.weight"])
        assert not torch.equal(model[key], align[key])


def test_scoring_refuses_to_start_without_the_previous_stages(shared_data, tmp_path):
    with pytest.raises(RuntimeError) as info:  # MONAI wraps the error of a config expression
        train("scoring", shared_data, tmp_path)
    causes, error = [], info.value
    while error is not None:
        causes.append(str(error))
        error = error.__cause__
    assert any("alignment.pt is missing: train that stage first" in c for c in causes), causes


def test_interrupted_training_resumes_where_it_stopped(shared_data, tmp_path):
    assert train("segmentation", shared_data, tmp_path, max_epochs=1) == [1, 1]
    # the next run with more epochs picks up the epoch checkpoint and trains epoch 2 only
    assert train("segmentation", shared_data, tmp_path, max_epochs=2) == [2, 2]
    assert latest_checkpoint(tmp_path / "checkpoints", "segmentation").name == "segmentation_checkpoint_epoch=2.pt"


def test_a_resumed_run_keeps_a_better_best_checkpoint_from_before_the_restart(shared_data, tmp_path):
    train("segmentation", shared_data, tmp_path, max_epochs=1)
    # make epoch 1 unbeatable (a Dice of 1): epoch 2 must then leave segmentation.pt as it is,
    # which a run that forgot its best metric at the restart would not
    epoch_1 = tmp_path / "checkpoints" / "segmentation_checkpoint_epoch=1.pt"
    checkpoint = torch.load(epoch_1, map_location="cpu", weights_only=False)
    assert checkpoint["best_validation"]["best_metric_epoch"] == 1
    checkpoint["best_validation"]["best_metric"] = 1.0
    torch.save(checkpoint, epoch_1)
    best = (tmp_path / "segmentation.pt").read_bytes()
    assert train("segmentation", shared_data, tmp_path, max_epochs=2) == [2, 2]
    assert (tmp_path / "segmentation.pt").read_bytes() == best
    epoch_2 = torch.load(tmp_path / "checkpoints" / "segmentation_checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    assert epoch_2["best_validation"] == {"best_metric": 1.0, "best_metric_epoch": 1}


def test_a_checkpoint_from_before_the_best_validation_record_still_resumes(shared_data, tmp_path, caplog):
    train("segmentation", shared_data, tmp_path, max_epochs=1)
    epoch_1 = tmp_path / "checkpoints" / "segmentation_checkpoint_epoch=1.pt"
    checkpoint = torch.load(epoch_1, map_location="cpu", weights_only=False)
    del checkpoint["best_validation"]  # as written by the versions before the record
    torch.save(checkpoint, epoch_1)
    with caplog.at_level(logging.WARNING, logger="monai_bsnet.training"):
        assert train("segmentation", shared_data, tmp_path, max_epochs=2) == [2, 2]
    assert "has no best-validation record" in caplog.text and epoch_1.name in caplog.text
    epoch_2 = torch.load(tmp_path / "checkpoints" / "segmentation_checkpoint_epoch=2.pt", map_location="cpu", weights_only=False)
    assert epoch_2["best_validation"]["best_metric_epoch"] == 2  # the record starts again from this run


def test_training_is_deterministic_with_a_seed(shared_data, tmp_path):
    train("segmentation", shared_data, tmp_path / "a", seed=3)
    train("segmentation", shared_data, tmp_path / "b", seed=3)
    a, b = state(tmp_path / "a" / "segmentation.pt"), state(tmp_path / "b" / "segmentation.pt")
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_the_bfloat16_switch_runs_the_network_in_bfloat16_and_the_loss_in_float32(shared_data, tmp_path):
    data = stage_data("segmentation", shared_data)
    parser = workflow(STAGE_FILES["segmentation"], train_datalist=data[:4], val_datalist=data[4:], ckpt_dir=str(tmp_path),
                      output_dir=str(tmp_path / "logs"), bfloat16=True, **SMALL)
    parser.get_parsed_content("initialize")
    network, loss = parser.get_parsed_content("network"), parser.get_parsed_content("loss")
    inside, loss_inputs = [], []
    network.bsnet.encoder.register_forward_hook(lambda module, args, out: inside.append((out[-1] if isinstance(out, (list, tuple)) else out).dtype))
    loss.register_forward_pre_hook(lambda module, args: loss_inputs.append(args[0].dtype))
    parser.get_parsed_content("run")
    assert len(inside) == 3 and set(inside) == {torch.bfloat16}  # 2 training batches and 1 validation batch
    assert len(loss_inputs) == 2 and set(loss_inputs) == {torch.float32}
    trained = state(tmp_path / "segmentation.pt")
    assert all(v.dtype == torch.float32 for v in trained.values() if v.is_floating_point())


def test_the_autocast_inferer_casts_every_output_back_and_without_a_type_changes_nothing():
    class TwoOutputs(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(1, 2, 3)

        def forward(self, x):
            y = self.conv(x)
            return {"map": y, "sizes": torch.tensor([1, 2]), "nested": (y, BSNetOutput(*[y] * len(BSNetOutput._fields)))}

    torch.manual_seed(0)
    network, image = TwoOutputs(), torch.rand(1, 1, 16, 16)
    plain, autocast = AutocastInferer(None)(image, network), AutocastInferer(torch.bfloat16)(image, network)
    assert torch.equal(plain["map"], network(image)["map"])
    assert autocast["map"].dtype == torch.float32 and autocast["sizes"].dtype == torch.int64
    assert isinstance(autocast["nested"][1], BSNetOutput) and autocast["nested"][1].lung_logits.dtype == torch.float32
    # computed in bfloat16 (8 bits of mantissa): close to, but not the same as, float32
    difference = (autocast["map"] - plain["map"]).abs().max()
    assert 0 < difference < 0.05


def test_evaluation_writes_metrics_plots_and_scores(chain, shared_data, tmp_path):
    data = brixia_public_datalist(shared_data / "brixia-public")[:5]
    parser = workflow(["train.json", "evaluate.json"], eval_datalist=data, ckpt_path=str(chain / "model.pt"),
                      output_dir=str(tmp_path), **SMALL)
    parser.get_parsed_content("initialize")
    parser.get_parsed_content("run")
    out = tmp_path / "evaluation"
    report = json.loads((out / "metrics.json").read_text())
    assert report["n_images"] == 5
    assert {"zone_mae", "global_mae", "zone_accuracy", "kappa_linear", "kappa_quadratic"} <= set(report)
    assert np.asarray(report["zone_confusion_matrix"]).sum() == 30
    assert np.asarray(report["global_confusion_matrix"]).shape == (19, 19)
    rows = [line.split(",") for line in (out / "scores.csv").read_text().splitlines()[1:]]
    assert [r[0] for r in rows] == [d["filename"] for d in data]
    pred = np.array([[int(v) for v in r[1:7]] for r in rows])
    true = np.array([d["label"] for d in data])
    assert report["zone_mae"] == pytest.approx(np.abs(pred - true).mean())
    for name in ("confusion_zone.png", "confusion_global.png", "bland_altman_global.png", "zone_mae.png"):
        assert (out / name).stat().st_size > 1000
    assert report["per_zone_mae"]["A"] == pytest.approx(np.abs(pred[:, 0] - true[:, 0]).mean())


def test_two_process_ddp_training_with_gloo(shared_data, tmp_path):
    files = "['bundle/configs/train.json','bundle/configs/train_segmentation.json','bundle/configs/multi_gpu_train.json']"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port=29517",
        "-m", "monai.bundle", "run", "--config_file", files,
        "--datalist", f"$monai_bsnet.data.lungseg_datalist('{shared_data / 'lungseg'}', split='train')[:8]",
        "--val_fraction", "0.25", "--image_size", "128", "--max_epochs", "1", "--batch_size", "2",
        "--num_workers", "0", "--ckpt_dir", str(tmp_path), "--output_dir", str(tmp_path / "logs"),
    ]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert log.count("SupervisedTrainer - INFO - Epoch[1] Complete") == 2  # one per process
    assert (tmp_path / "segmentation.pt").is_file()
