"""Inference scores every image with its mirror by default (mirror TTA), which does not help a scoring
head that never saw a mirrored image (model card, Performance: ``head`` +0.018 zone MAE). So every
training a user runs with its defaults must see mirrored images with their zone scores swapped: the
bundle's ``train.json`` and the MONAI Label app's fine-tuning. (The pooled head's fit mirrors each
cached copy itself: ``monai_bsnet.frozen_head``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from monai.bundle import ConfigParser
from monai.transforms import Compose

from monai_bsnet.transforms import swap_zone_sides

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "bundle" / "sample" / "19abe1f3.jpg"
LABEL = [3, 2, 1, 0, 1, 0]  # not symmetric: a mirror shows in the label


def swapped_share(transform, item: dict, draws: int = 40) -> float:
    """The share of ``draws`` random draws of ``transform`` that gave the item's zone scores side-swapped."""
    transform.set_random_state(seed=0)
    swapped = 0
    for _ in range(draws):
        label = transform(dict(item))["label"].tolist()
        assert label in (LABEL, swap_zone_sides(torch.tensor(LABEL)).tolist()), label  # only a mirror moves scores
        swapped += label != LABEL
    return swapped / draws


def test_the_bundles_scoring_training_mirrors_by_default():
    assert json.loads((REPO / "bundle" / "configs" / "inference.json").read_text())["tta"] is True  # the reason
    parser = ConfigParser()
    parser.read_config(str(REPO / "bundle" / "configs" / "train.json"))
    parser.update({"image_size": 64})
    assert parser["lateral_flip_prob"] == 0.5
    deterministic = Compose(parser.get_parsed_content("train#deterministic_transforms"))
    item = deterministic({"image": str(SAMPLE), "label": torch.tensor(LABEL)})
    share = swapped_share(Compose(parser.get_parsed_content("train#random_transforms")), item)
    assert 0.2 < share < 0.8, share


def test_the_apps_fine_tuning_mirrors(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(REPO / "apps" / "bsnet"))
    pytest.importorskip("monailabel")
    from monailabel.tasks.train.basic_train import Context

    from lib.model import BrixiaModel
    from lib.trainers.bsnet import BrixiaScoringTrain

    task = BrixiaScoringTrain(BrixiaModel([str(tmp_path / "none.pt")]), str(tmp_path))
    context = Context()
    context.request = {"image_size": 64}
    share = swapped_share(Compose(task.train_pre_transforms(context)), {"image": str(SAMPLE), "label": LABEL})
    assert 0.2 < share < 0.8, share
