"""Brixia metrics agree with scikit-learn, rate each zone's median score, work on decollated batches, and run in Ignite."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ignite.engine import Engine
from sklearn.metrics import accuracy_score, cohen_kappa_score, confusion_matrix, f1_score, mean_absolute_error

from monai_bsnet import metrics as M
from monai_bsnet.zones import median_scores


@pytest.fixture
def ratings():
    rng = np.random.default_rng(7)
    target = rng.integers(0, 4, size=(40, 6))
    # predictions that agree more than by chance: the target shifted by -1, 0 or +1
    pred = np.clip(target + rng.integers(-1, 2, size=target.shape), 0, 3)
    return pred, target


def test_zone_metrics_equal_scikit_learn(ratings):
    pred, target = ratings
    p, t = pred.ravel(), target.ravel()
    assert M.zone_mae(pred, target) == pytest.approx(mean_absolute_error(t, p))
    assert M.zone_accuracy(pred, target) == pytest.approx(accuracy_score(t, p))
    for w in ("linear", "quadratic"):
        assert M.weighted_kappa(pred, target, w) == pytest.approx(cohen_kappa_score(t, p, weights=w))
    assert np.array_equal(M.zone_confusion_matrix(pred, target), confusion_matrix(t, p, labels=[0, 1, 2, 3]))


def test_global_metrics_equal_scikit_learn(ratings):
    pred, target = ratings
    gp, gt = pred.sum(1), target.sum(1)
    assert M.global_mae(pred, target) == pytest.approx(mean_absolute_error(gt, gp))
    cm = M.global_confusion_matrix(pred, target)
    assert cm.shape == (19, 19)
    assert np.array_equal(cm, confusion_matrix(gt, gp, labels=list(range(19))))
    assert cm.sum() == len(gt)


def test_known_values():
    target = np.array([[0, 1, 2, 3, 0, 0]])
    pred = np.array([[0, 1, 2, 0, 0, 1]])  # one zone off by 3, one by 1
    assert M.zone_mae(pred, target) == pytest.approx(4 / 6)
    assert M.global_mae(pred, target) == pytest.approx(2.0)  # 6 vs 4
    assert M.zone_accuracy(pred, target) == pytest.approx(4 / 6)
    assert M.weighted_kappa(target, target, "quadratic") == pytest.approx(1.0)
    assert M.zone_confusion_matrix(pred, target)[3, 0] == 1  # a true 3 rated 0: row = truth


def test_class_probabilities_are_reduced_to_each_zones_median_score(ratings):
    pred, target = ratings
    sharp = torch.softmax(torch.nn.functional.one_hot(torch.as_tensor(pred), 4).float() * 10, -1)
    assert M.zone_mae(sharp, target) == M.zone_mae(pred, target)
    assert M.brixia_metrics(sharp.numpy(), torch.as_tensor(target)) == M.brixia_metrics(pred, target)
    # a spread-out zone: the arg-max would say 0 (first of two peaks), the median says 1
    split = np.full((1, 6, 4), 0.25)
    split[0, 0] = [0.4, 0.1, 0.1, 0.4]
    assert M.as_zone_scores(split)[0, 0] == 1


def test_the_median_score_has_the_least_expected_absolute_error():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.full(4, 0.5), size=(500, 6))
    chosen = median_scores(probabilities)
    # expected |s - Y| of every candidate score s under each zone's distribution
    risk = np.abs(np.arange(4)[:, None] - np.arange(4)[None]) @ probabilities[..., None]  # (500, 6, 4, 1)
    risk = risk[..., 0]
    assert np.allclose(np.take_along_axis(risk, chosen[..., None], -1)[..., 0], risk.min(-1))
    assert (chosen != probabilities.argmax(-1)).any()  # it is not the arg-max in disguise
    as_tensor = median_scores(torch.as_tensor(probabilities))
    assert isinstance(as_tensor, torch.Tensor) and np.array_equal(as_tensor.numpy(), chosen)


def test_logits_are_refused_with_a_clear_message(ratings):
    pred, target = ratings
    logits = torch.nn.functional.one_hot(torch.as_tensor(pred), 4).float() * 10 - 5
    with pytest.raises(ValueError, match="softmax"):
        M.zone_mae(logits, target)
    with pytest.raises(ValueError, match="softmax"):
        M.BrixiaScoreMetric("zone_mae")(logits, torch.as_tensor(target))


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="shape"):
        M.zone_mae(np.zeros((2, 5)), np.zeros((2, 5)))
    with pytest.raises(ValueError, match="0..3"):
        M.zone_mae(np.full((2, 6), 4), np.zeros((2, 6)))
    with pytest.raises(ValueError, match="unknown Brixia metric"):
        M.BrixiaScoreMetric("auc")


def test_lung_dice_equals_f1_of_the_pixels():
    rng = np.random.default_rng(1)
    target = torch.as_tensor(rng.random((3, 1, 32, 32)) > 0.5).float()
    prob = torch.as_tensor(rng.random((3, 1, 32, 32))).float()
    dice = M.lung_dice(prob, target)
    for i in range(3):
        expected = f1_score(target[i].ravel().numpy(), (prob[i] >= 0.5).ravel().numpy())
        assert dice[i].item() == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("name", sorted(M.METRICS))
def test_ignite_handler_accumulates_batches_like_the_function(ratings, name):
    pred, target = ratings
    probabilities = torch.softmax(torch.nn.functional.one_hot(torch.as_tensor(pred), 4).float() * 10, -1)
    batches = [(probabilities[i : i + 8], torch.as_tensor(target[i : i + 8])) for i in range(0, 40, 8)]

    def step(engine, batch):
        y_pred, y = batch
        # half the batches decollated into lists of items, as MONAI post-processing hands them over
        if engine.state.iteration % 2:
            return list(y_pred), list(y)
        return y_pred, y

    engine = Engine(step)
    M.BrixiaScoreHandler(name).attach(engine, name)
    state = engine.run(batches)
    expected = M.METRICS[name](pred, target)
    assert np.allclose(np.asarray(state.metrics[name]), np.asarray(expected))


def test_per_zone_mae(ratings):
    pred, target = ratings
    per_zone = M.per_zone_mae(pred, target)
    assert list(per_zone) == list("ABCDEF")
    for z, zone in enumerate("ABCDEF"):
        assert per_zone[zone] == pytest.approx(mean_absolute_error(target[:, z], pred[:, z]))
    assert np.mean(list(per_zone.values())) == pytest.approx(M.zone_mae(pred, target))
    assert M.brixia_metrics(pred, target)["per_zone_mae"] == per_zone


def test_evaluation_plots_against_the_reference_and_against_the_consensus_panel(tmp_path):
    from monai_bsnet.evaluation import write_evaluation

    rng = np.random.default_rng(3)
    pred = rng.integers(0, 4, (12, 6))
    senior = rng.integers(0, 4, (12, 6))
    panel_mean = rng.uniform(0, 3, (12, 6))
    panel_mode = np.rint(panel_mean).astype(int)
    report = write_evaluation(pred, senior, tmp_path, consensus_mean=panel_mean, consensus_mode=panel_mode, title="vs senior")
    for folder in (tmp_path, tmp_path / "consensus_mode"):
        for name in ("confusion_zone.png", "confusion_global.png", "bland_altman_global.png", "zone_mae.png"):
            assert (folder / name).stat().st_size > 1000, folder / name
    assert report["zone_mae"] == pytest.approx(np.abs(pred - senior).mean())
    assert report["consensus"]["vs_mode"]["zone_mae"] == pytest.approx(np.abs(pred - panel_mode).mean())
    assert report["consensus"]["vs_mean"]["zone_mae"] == pytest.approx(np.abs(pred - panel_mean).mean())
    # without panel scores there is no consensus folder
    write_evaluation(pred, senior, tmp_path / "plain")
    assert not (tmp_path / "plain" / "consensus_mode").exists()
