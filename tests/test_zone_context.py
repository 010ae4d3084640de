"""The zone context stage: the second rating stage that reads an image's six zones together."""

from __future__ import annotations

import csv
import itertools
import json
import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_bsnet.cross_validation import compare_predictions, prediction_rows
from monai_bsnet.networks.weights import stage_fingerprint
from monai_bsnet.pooled_head import cross_validate_features, inner_out_of_fold_probabilities, inner_splits
from monai_bsnet.zone_context import (CONTEXT_C_GRID, CONTEXT_FILE, ZoneContextRating, choose_context_strength, context_inputs, rating_beside,
                                      ratings_with_sum)
from monai_bsnet.zones import median_scores

REPO = Path(__file__).resolve().parents[1]


def expected_error(probabilities: np.ndarray, ratings: np.ndarray) -> float:
    """Sum over zones of the expected absolute error of ``ratings`` (6,) under ``probabilities`` (6, 4)."""
    return float((np.abs(np.arange(4)[None, :] - ratings[:, None]) * probabilities).sum())


def test_the_ratings_with_a_given_sum_are_the_best_of_all_ratings_with_that_sum():
    rng = np.random.default_rng(0)
    probabilities = rng.dirichlet(np.ones(4) * 0.7, size=(8, 6))
    totals = np.array([0, 18, 3, 7, 9, 11, 14, 5])
    rated = ratings_with_sum(probabilities, totals)
    assert rated.shape == (8, 6) and (rated.sum(1) == totals).all()
    every = np.array(list(itertools.product(range(4), repeat=6)))
    for p, total, ratings in zip(probabilities, totals, rated):
        best = min(expected_error(p, r) for r in every[every.sum(1) == total])
        assert expected_error(p, ratings) == pytest.approx(best)
    # held to their own medians' sum, the medians are the answer: nothing moves
    np.testing.assert_array_equal(ratings_with_sum(probabilities, median_scores(probabilities).sum(1)).sum(1), median_scores(probabilities).sum(1))
    assert expected_error(probabilities[0], ratings_with_sum(probabilities[:1], median_scores(probabilities[:1]).sum(1))[0]) == pytest.approx(
        expected_error(probabilities[0], median_scores(probabilities[0])))
    with pytest.raises(ValueError, match="0..18"):
        ratings_with_sum(probabilities[:1], np.array([19]))


def test_the_context_inputs_are_each_zones_log_probabilities_and_the_image_mean():
    probabilities = np.zeros((1, 6, 4))
    probabilities[0, :, 0] = 1.0
    probabilities[0, 0] = [0.0, 0.0, 0.0, 1.0]  # one zone certainly 3, five certainly 0: image mean 0.5
    inputs = context_inputs(probabilities)
    assert inputs.shape == (6, 5)
    np.testing.assert_allclose(inputs[:, 4], 0.5, atol=1e-4)  # of the floored probabilities
    assert inputs[0, 3] == 0.0 and inputs[0, 0] == pytest.approx(np.log(1e-6))  # a zero probability is floored, not -inf


def correlated_images(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Zone scores that share an image-level severity, and first-stage probabilities that see each zone
    through noise: the setting in which the image's other zones say something about each one."""
    rng = np.random.default_rng(seed)
    severity = rng.uniform(0, 3, size=(n, 1))
    scores = np.clip(np.rint(severity + rng.normal(0, 0.5, size=(n, 6))), 0, 3).astype(int)
    seen = scores + rng.normal(0, 1.0, size=(n, 6))
    logits = -np.abs(seen[..., None] - np.arange(4)) * 1.5
    return np.exp(logits) / np.exp(logits).sum(-1, keepdims=True), scores


@pytest.mark.parametrize("scores", [(0, 4), (1, 3), (0, 3)], ids=["four scores", "two scores", "three scores"])
def test_the_context_probabilities_are_scikit_learns_with_absent_scores_at_zero(scores):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    probabilities, y = rng.dirichlet(np.ones(4), size=(60, 6)), rng.integers(*scores, size=(60, 6))
    regression = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000)).fit(context_inputs(probabilities), y.reshape(-1))
    expected = np.zeros((360, 4))
    expected[:, regression.classes_] = regression.predict_proba(context_inputs(probabilities))
    np.testing.assert_allclose(ZoneContextRating().fit(probabilities, y).probabilities(probabilities).reshape(-1, 4), expected, atol=1e-12)


def test_the_context_stage_learns_from_the_other_zones_and_keeps_the_first_stages_sum(tmp_path):
    train_p, train_y = correlated_images(400, 0)
    test_p, test_y = correlated_images(400, 1)
    stage = ZoneContextRating().fit(train_p, train_y)
    ratings = stage.ratings(test_p)
    first = median_scores(test_p)
    assert (ratings.sum(1) == first.sum(1)).all()
    assert np.abs(ratings - test_y).mean() < np.abs(first - test_y).mean() - 0.02
    context = stage.probabilities(test_p)
    assert context.shape == test_p.shape and np.allclose(context.sum(-1), 1.0)
    # stored as JSON beside the weights and read back to the same probabilities
    (tmp_path / "model.pt").write_bytes(b"")
    assert rating_beside(tmp_path / "model.pt") is None
    stage.save(tmp_path / CONTEXT_FILE)
    loaded = rating_beside(tmp_path / "model.pt")
    np.testing.assert_allclose(loaded.probabilities(test_p), context, atol=1e-12)
    np.testing.assert_array_equal(loaded.ratings(test_p[0]), ratings[:1])  # one image's (6, 4) too
    (tmp_path / CONTEXT_FILE).write_text(json.dumps({"C": 1.0}))
    with pytest.raises(ValueError, match=f"{CONTEXT_FILE}: not a zone context stage"):
        rating_beside(tmp_path / "model.pt")
    with pytest.raises(RuntimeError, match="not fitted"):
        ZoneContextRating().ratings(test_p)
    with pytest.raises(ValueError, match="at least two scores"):
        ZoneContextRating().fit(train_p, np.zeros_like(train_y))


def test_the_chosen_strength_is_the_grids_best_cross_validated_served_rating_and_is_stored(tmp_path):
    """``ZoneContextRating(None)`` chooses its C by a patient-grouped cross-validation of its served ratings,
    refits at it on all rows, and keeps both in the stored stage."""
    from sklearn.model_selection import GroupKFold

    probabilities, scores = correlated_images(120, 0)
    groups = np.repeat(np.arange(60), 2)  # two images per patient
    c, errors = choose_context_strength(probabilities, scores, groups)
    assert set(errors) == set(CONTEXT_C_GRID) and errors[c] == min(errors.values())
    splits = list(GroupKFold(4).split(probabilities, groups=groups))
    assert all(not set(groups[a]) & set(groups[b]) for a, b in splits)
    by_hand = sum(np.abs(ZoneContextRating(0.01).fit(probabilities[a], scores[a]).ratings(probabilities[b]) - scores[b]).sum() for a, b in splits)
    assert errors[0.01] == pytest.approx(by_hand / scores.size, abs=1e-4)
    # on these rows C = 0.001 and C = 1 tie for the best: a tie keeps the shipped strength, whatever the grid's order
    assert errors[0.001] == errors[1.0] == min(errors.values()) and c == 1.0
    assert choose_context_strength(probabilities, scores, groups, c_grid=(0.001, 1.0))[0] == 1.0
    stage = ZoneContextRating(None).fit(probabilities, scores, groups)
    assert stage.c == c and stage.strength_errors == errors
    np.testing.assert_allclose(stage.probabilities(probabilities), ZoneContextRating(c).fit(probabilities, scores).probabilities(probabilities))
    stored = stage.to_dict()
    assert stored["C"] == c and stored["C_cross_validated_zone_mae"] == {str(k): v for k, v in errors.items()}
    loaded = ZoneContextRating.load(stage.save(tmp_path / CONTEXT_FILE))
    assert loaded.c == c and loaded.strength_errors == errors and loaded.to_dict() == stored  # the search is read back too
    (tmp_path / CONTEXT_FILE).write_text(json.dumps({**stored, "C_cross_validated_zone_mae": [0.6, 0.5]}))
    with pytest.raises(ValueError, match=f"{CONTEXT_FILE}: not a zone context stage"):
        ZoneContextRating.load(tmp_path / CONTEXT_FILE)
    # too few rows to choose on (one patient; a split whose training rows have one score): the shipped strength
    assert choose_context_strength(probabilities, scores, np.zeros(120)) == (1.0, {})
    one_score = np.ones_like(scores)
    one_score[:2] = 3  # the images of the first patient alone have another score
    assert choose_context_strength(probabilities, one_score, groups) == (1.0, {})


def test_the_nested_cross_validation_rates_with_other_strengths_from_the_same_first_stage():
    items, scores, features = severity_items(2)
    rows, folds = cross_validate_features(items, features, n_folds=3, c_grid=(0.01, 0.1), with_context=True, other_context_c=(1.0, None))
    for row in rows:
        # the served stage's strength is chosen, so "chosen" by name is the served one; every variant keeps the first stage's global score
        assert row["scores_context_chosen_C_tta"] == row["scores_context_tta"] and row["scores_context_chosen_C"] == row["scores_context"]
        assert sum(row["scores_context_C1_tta"]) == sum(row["scores_context_tta"])
    assert all(fold["context_C_C1"] == 1.0 and fold["context_C"] == fold["context_C_chosen_C"] in CONTEXT_C_GRID for fold in folds)


def test_a_stage_marked_for_another_scoring_stage_is_refused_beside_the_weights(tmp_path, untrained_bsnet, caplog):
    """A stage fitted for one zone classifier (``fitted_for``, as the app's refit writes it) is served
    only with that classifier: a fine-tuned model published over a refit is rated by its medians."""
    train_p, train_y = correlated_images(100, 0)
    stage = ZoneContextRating().fit(train_p, train_y)
    (tmp_path / "bsnet.pt").write_bytes(b"")
    stage.save(tmp_path / CONTEXT_FILE)
    assert rating_beside(tmp_path / "bsnet.pt", untrained_bsnet) is not None  # unmarked (the shipped stage): any network
    stage.fitted_for = stage_fingerprint(untrained_bsnet, scoring=True)
    stage.save(tmp_path / CONTEXT_FILE)
    assert rating_beside(tmp_path / "bsnet.pt", untrained_bsnet).fitted_for == stage.fitted_for
    assert rating_beside(tmp_path / "bsnet.pt") is not None  # without the network nothing to check against
    with torch.no_grad():
        untrained_bsnet.scoring.classifiers[0].blocks[0].conv.weight.add_(0.01)  # another scoring stage
    with caplog.at_level(logging.WARNING):
        assert rating_beside(tmp_path / "bsnet.pt", untrained_bsnet) is None
    assert "fitted for another scoring stage" in caplog.text


def pooled_features(scores: np.ndarray, seed: int) -> np.ndarray:
    """Pooled zone vectors (N, 2 copies, 6, 5) that carry each zone's score through noise; copy 1 is the mirror."""
    rng = np.random.default_rng(seed)
    features = np.repeat(scores[:, None, :, None], 2, axis=1) + rng.normal(0, 1.0, size=(len(scores), 2, 6, 5))
    features[:, 1] = features[:, 1][:, [3, 4, 5, 0, 1, 2]]
    return features


def severity_items(seed: int, n: int = 30) -> tuple[list[dict], np.ndarray, np.ndarray]:
    """``n`` one-image patients whose zone scores share an image-level severity: their items, scores (n, 6)
    and pooled vectors (:func:`pooled_features`)."""
    rng = np.random.default_rng(seed)
    severity = rng.uniform(0, 3, size=(n, 1))
    scores = np.clip(np.rint(severity + rng.normal(0, 0.5, size=(n, 6))), 0, 3).astype(int)
    items = [{"filename": f"{i}.png", "image": f"{i}.png", "patient_id": f"p{i}", "label": s.tolist(), "label_senior": s.tolist(),
              "label_junior": s.tolist()} for i, s in enumerate(scores)]
    return items, scores, pooled_features(scores, 1)


def test_the_inner_out_of_fold_probabilities_come_from_fits_without_the_image():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(16, 6))
    features = pooled_features(scores, 0)
    groups = np.array([f"p{i // 2}" for i in range(16)])
    images = np.arange(2, 16)
    plain, tta = inner_out_of_fold_probabilities(features, scores, groups, images, c=0.1)
    assert plain.shape == tta.shape == (14, 6, 4) and np.allclose(plain.sum(-1), 1) and np.allclose(tta.sum(-1), 1)
    splits = inner_splits(groups, images)
    assert len(splits) == 4 and sorted(np.concatenate([test for _, test in splits])) == list(images)
    for train, test in splits:
        assert not set(groups[train]) & set(groups[test]), "a patient on both sides"
    # other labels for one split's images leave those images' probabilities as they were (no fit of
    # theirs saw their labels) and change the others' (whose fits did)
    changed = scores.copy()
    changed[splits[0][1]] = 3 - changed[splits[0][1]]
    held_out = np.isin(images, splits[0][1])
    refitted = inner_out_of_fold_probabilities(features, changed, groups, images, c=0.1)[1]
    np.testing.assert_allclose(refitted[held_out], tta[held_out])
    assert not np.allclose(refitted[~held_out], tta[~held_out])


def test_the_nested_cross_validation_rates_every_image_once_and_keeps_the_pooled_heads_global_score():
    items, scores, features = severity_items(1)
    rows, folds = cross_validate_features(items, features, n_folds=3, c_grid=(0.01, 0.1), with_context=True)
    assert sorted(row["filename"] for row in rows) == sorted(item["filename"] for item in items) and len(folds) == 3
    plain_rows, _ = cross_validate_features(items, features, n_folds=3, c_grid=(0.01, 0.1))
    # the first stage is cv:pooled's own fit, and the served ratings add up to its global score
    np.testing.assert_allclose([row["probabilities_tta"] for row in rows], [row["probabilities_tta"] for row in plain_rows])
    for row in rows:
        for probabilities, ratings in (("probabilities", "scores_context"), ("probabilities_tta", "scores_context_tta")):
            assert sum(row[ratings]) == median_scores(np.array(row[probabilities])).sum()
    comparison = compare_predictions(rows, rows, "probabilities_tta", n_resamples=200, candidate_key="scores_context_tta")
    served = np.array([row["scores_context_tta"] for row in rows])
    assert comparison["candidate_key"] == "scores_context_tta" and comparison["global_mae"]["difference"] == 0
    assert comparison["zone_mae"]["candidate"] == pytest.approx(np.abs(served - scores[[int(r["filename"][:-4]) for r in rows]]).mean(), abs=1e-4)


def test_compare_predictions_reads_zone_scores_as_well_as_probabilities():
    items = [{"filename": f"{i}.png", "image": f"{i}.png", "patient_id": f"p{i}", "label_senior": [1] * 6, "label_junior": [1] * 6} for i in range(4)]
    probabilities = np.tile(np.eye(4)[1], (4, 6, 1))  # every zone certainly 1: exact
    rows = prediction_rows(items, 0, probabilities, probabilities)
    for row in rows:
        row["scores"] = [2] * 6  # every zone one too high
    result = compare_predictions(rows, rows, "probabilities", n_resamples=100, candidate_key="scores")
    assert result["zone_mae"]["baseline"] == 0 and result["zone_mae"]["candidate"] == 1 and result["global_mae"]["candidate"] == 6


def test_the_predictor_serves_the_context_stages_ratings_with_the_medians_global_score(tmp_path, sample_images):
    import torch

    from monai_bsnet.inference import BrixiaPredictor
    from monai_bsnet.networks import BSNet

    torch.manual_seed(0)
    network = BSNet().eval()
    stage = ZoneContextRating().fit(*correlated_images(300, 0))
    with_stage, without = BrixiaPredictor(network, zone_context=stage), BrixiaPredictor(network)
    records = with_stage.run(sample_images[:2], tmp_path / "context", progress=False)
    plain = without.run(sample_images[:2], tmp_path / "median", progress=False)
    for record, reference in zip(records, plain):
        probabilities = np.array([record["zones"][z]["probabilities"] for z in "ABCDEF"])
        scores = [record["zones"][z]["score"] for z in "ABCDEF"]
        assert record["model"]["zone_rating"] == "zone context" and reference["model"]["zone_rating"] == "median"
        assert scores == stage.ratings(probabilities)[0].tolist()
        assert record["global_score"] == sum(scores) == reference["global_score"] == median_scores(probabilities).sum()
        assert [reference["zones"][z]["score"] for z in "ABCDEF"] == median_scores(probabilities).tolist()
    rows = {row["input"]: row for row in csv.DictReader(open(tmp_path / "context" / "results.csv"))}
    assert all([int(rows[r["input"]][z]) for z in "ABCDEF"] == [r["zones"][z]["score"] for z in "ABCDEF"] for r in records)


def test_the_nested_experiment_script_compares_the_served_ratings_with_the_pooled_heads(tmp_path, shared_data):
    """``zone_context_experiment.py`` on a few real images: one row per image, the comparison's
    baseline being the pooled head's medians and its candidate the served ratings, at the same global MAE."""
    out = tmp_path / "out"
    command = [sys.executable, str(REPO / "bundle" / "scripts" / "zone_context_experiment.py"), "--data", str(shared_data),
               "--cache", str(tmp_path / "cache"), "--out", str(out), "--limit", "16", "--image-size", "64", "--folds", "2",
               "--resamples", "200"]
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    result = json.loads((out / "zone_context.json").read_text())
    rows = json.loads((out / "predictions.json").read_text())
    assert result["n_images"] == len(rows) == 16 and len(result["folds"]) == 2
    for form, ratings in (("plain", "scores_context"), ("tta", "scores_context_tta")):
        comparison = result["comparison"][form]
        assert comparison["zone_mae"]["baseline"] == pytest.approx(result["first_stage"][form]["zone_mae"], abs=1e-4)
        assert comparison["zone_mae"]["candidate"] == pytest.approx(result["with_context"][form]["zone_mae"], abs=1e-4)
        served = np.array([row[ratings] for row in rows])
        assert result["with_context"][form]["zone_mae"] == pytest.approx(np.abs(served - np.array([row["label_senior"] for row in rows])).mean())
