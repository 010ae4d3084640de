"""The pooled linear zone classifier: the network layer, its loading, and its fit on cached outputs
(the bundle's sample radiographs at 64 px)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.datasets import make_classification

from monai_bsnet.cross_validation import predict_zone_probabilities, summarise_predictions
from monai_bsnet.data import brixia_public_datalist, cohen_scores_of
from monai_bsnet.frozen_head import FrozenStageCache
from monai_bsnet.networks import BSNet, load_weights
from monai_bsnet.networks.scoring import ZoneScoringHead
from monai_bsnet.networks.scoring import LinearZoneClassifier, ZonePooling
from monai_bsnet.networks.weights import stage_fingerprint
from monai_bsnet.severity import CohenSeverityMapping
from monai_bsnet.training import patient_groups
from monai_bsnet.zone_context import SERVED_CONTEXT_C, ZoneContextRating, rating_beside
from monai_bsnet.pooled_head import (
    PooledFeatureCache,
    choose_refit_strength,
    choose_regularisation,
    regularisation_search,
    classifier_probabilities,
    cross_validate_pooled_head,
    fit_final_pooled_head,
    fit_zone_regression,
    pooled_zone_features,
    pooled_zone_vectors,
    frozen_stages_fingerprint,
    inner_out_of_fold_probabilities,
    load_fit_samples,
    refit_final_pooled_head,
    regression_probabilities,
    refit_towards,
    regression_to_classifier,
    zone_samples,
)
from sklearn.linear_model import LogisticRegression

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


@pytest.mark.parametrize("n_classes", [4, 3, 2])
def test_the_fitted_regression_and_its_network_layer_give_the_same_probabilities(n_classes):
    x, y = make_classification(300, 20, n_informative=6, n_classes=n_classes, random_state=0)
    y = np.array([0, 1, 3, 2])[y]  # with 3 or 2 classes, score 2 (and 3) never occur
    regression = fit_zone_regression(x, y, 0.1)
    layer = regression_to_classifier(regression)
    expected = np.zeros((len(x), 4))
    expected[:, regression.classes_] = regression.predict_proba(x)
    got = torch.softmax(layer(torch.as_tensor(x, dtype=torch.float32)), -1).detach().numpy()
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got[:, np.setdiff1d(range(4), regression.classes_)].max(initial=0) < 1e-10


def test_the_regression_samples_carry_the_scores_of_their_copy():
    features = np.arange(2 * 2 * 6, dtype=float).reshape(2, 2, 6, 1)  # images x copies (plain, mirrored) x zones
    scores = np.array([[0, 1, 2, 3, 2, 1], [3, 3, 2, 0, 0, 1]])
    x, y = zone_samples(features, scores, [1], [0, 1], [0, 3])  # zones A and D of image 1, plain then mirrored
    assert x[:, 0].tolist() == [12, 15, 18, 21]  # image 1 starts at 1 * 2 copies * 6 zones
    assert y.tolist() == [scores[1][0], scores[1][3], scores[1][3], scores[1][0]]  # the mirror swaps A and D


def test_a_single_score_is_refused():
    with pytest.raises(ValueError, match="score 2"):
        fit_zone_regression(np.ones((5, 3)), np.full(5, 2), 0.1)


def test_sample_weights_let_the_heavier_samples_decide_and_ones_change_nothing():
    x = np.repeat(np.eye(2), 10, axis=0)  # two points, ten samples each
    y = np.array([0] * 10 + [1] * 5 + [2] * 5)  # the second point is scored 1 by one half, 2 by the other
    weights = np.array([1.0] * 10 + [1.0] * 5 + [4.0] * 5)
    plain, weighted = fit_zone_regression(x, y, 1.0), fit_zone_regression(x, y, 1.0, sample_weight=weights)
    assert plain.predict_proba(x[10:11])[0, 1] == pytest.approx(plain.predict_proba(x[10:11])[0, 2], abs=1e-6)
    assert weighted.predict_proba(x[10:11])[0, 2] > 0.6 > weighted.predict_proba(x[10:11])[0, 1]
    ones = fit_zone_regression(x, y, 1.0, sample_weight=np.ones(len(y)))
    assert np.allclose(ones.predict_proba(x), plain.predict_proba(x), atol=1e-6)


def test_weights_decide_the_zone_classifier_form_when_loaded(tmp_path):
    torch.manual_seed(1)
    pooled = BSNet(zone_classifier="pooled_linear").eval()
    with torch.no_grad():  # a head that does not give uniform probabilities
        pooled.scoring.classifiers[0].linear.weight.normal_()
    torch.save(pooled.state_dict(), tmp_path / "pooled.pt")
    image = torch.rand(2, 1, SIZE, SIZE)

    loaded = load_weights(BSNet().freeze("scoring"), tmp_path / "pooled.pt").eval()
    assert loaded.scoring.zone_classifier == "pooled_linear"
    assert not any(p.requires_grad for p in loaded.scoring.parameters())  # a frozen stage stays frozen
    torch.testing.assert_close(loaded(image).zone_logits, pooled(image).zone_logits)
    scripted = torch.jit.script(loaded)
    torch.testing.assert_close(scripted(image).zone_logits, pooled(image).zone_logits)

    torch.save(BSNet().state_dict(), tmp_path / "bsnet.pt")  # and back to the authors' form
    assert load_weights(loaded, tmp_path / "bsnet.pt").scoring.zone_classifier == "bsnet"
    with pytest.raises(ValueError, match="unknown zone classifier"):
        ZoneScoringHead(zone_classifier="pooled")


def test_the_pooled_features_are_what_the_pooled_head_sees(tmp_path, scored_samples, untrained_bsnet):
    """A regression fitted on the cache's pooled features, installed in the network, scores the
    images as the regression does."""
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    with pytest.raises(FileNotFoundError, match="not cached"):  # pooling never runs the network itself
        pooled_zone_features(cache, scored_samples)
    cache.build(scored_samples)
    features = pooled_zone_features(cache, scored_samples)
    assert features.shape == (6, 4, 6, 2 * (64 + 128 + 256 + 512))
    scores = np.array([item["label"] for item in scored_samples])
    log = fit_final_pooled_head(scored_samples, cache, c_grid=(0.1,))
    assert log["n_train"] == 6 and log["chosen_C"] == 0.1
    assert untrained_bsnet.scoring.zone_classifier == "pooled_linear"
    regression = fit_zone_regression(*zone_samples(features, scores, range(6), range(4)), 0.1)
    expected = regression.predict_proba(features[:3, 0].reshape(-1, features.shape[-1])).reshape(3, 6, 4)
    plain, _ = predict_zone_probabilities(untrained_bsnet, [item["image"] for item in scored_samples[:3]], spatial_size=SIZE)
    np.testing.assert_allclose(plain, expected, atol=1e-4)
    # only the scoring stage changed
    for name, value in untrained_bsnet.state_dict().items():
        if not name.startswith("scoring."):
            torch.testing.assert_close(value, cache.bsnet.state_dict()[name])


def test_the_regularisation_is_chosen_by_grouped_cross_validation():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(12, 6))
    # features that carry the score plus noise: the weakest penalty should fit them best
    features = np.repeat(scores[:, None, :, None], 2, axis=1) + rng.normal(0, 0.3, size=(12, 2, 6, 5))
    features[:, 1] = features[:, 1][:, [3, 4, 5, 0, 1, 2]]  # copy 1 is the mirror: its zones swapped
    groups = np.array([f"p{i // 2}" for i in range(12)])
    c, errors = choose_regularisation(features, scores, groups, range(12), c_grid=(1e-4, 10.0))
    assert c == 10.0 and errors[10.0] < errors[1e-4]
    # the search keeps the chosen C's inner out-of-fold probabilities: the same as fitting the inner splits again
    images = np.arange(1, 12)
    searched_c, searched_errors, (plain, tta) = regularisation_search(features, scores, groups, images, c_grid=(1e-4, 10.0))
    assert (searched_c, searched_errors) == choose_regularisation(features, scores, groups, images, c_grid=(1e-4, 10.0))
    again = inner_out_of_fold_probabilities(features, scores, groups, images, searched_c)
    np.testing.assert_array_equal(plain, again[0])
    np.testing.assert_array_equal(tta, again[1])


def test_cross_validation_of_the_pooled_head_scores_every_image_once(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    summary = cross_validate_pooled_head(scored_samples, cache, tmp_path / "cv", n_folds=2, c_grid=(0.01, 0.1))
    rows = json.loads((tmp_path / "cv" / "predictions.json").read_text())
    assert sorted(r["filename"] for r in rows) == sorted(item["filename"] for item in scored_samples)
    assert summary["plain"]["zone_mae"] == summarise_predictions(rows)["plain"]["zone_mae"]
    assert [f["chosen_C"] in (0.01, 0.1) for f in summary["folds"]] == [True, True]
    assert untrained_bsnet.scoring.zone_classifier == "bsnet"  # the cross-validation leaves the network alone


def test_the_recipe_script_fits_and_ships_the_pooled_head(tmp_path, shared_data):
    models = tmp_path / "work" / "models"
    models.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(BSNet().state_dict(), models / "alignment.pt")  # stands in for stage b's checkpoint
    command = [sys.executable, str(REPO / "bundle" / "scripts" / "train_recipe.py"), "--data", str(shared_data),
               "--work", str(tmp_path / "work"), "--logs", str(tmp_path / "logs"), "--schedule", "smoke_cached",
               "--limit", "8", "--folds", "2", "--device", "cpu", "cv:pooled", "final:pooled", "context", "evaluate_final"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    cv = json.loads((tmp_path / "logs" / "cv_pooled.json").read_text())
    assert cv["n_images"] == 8 and (tmp_path / "logs" / "cv_pooled_predictions.json").is_file()
    # the pooled head is fitted on a cache of its pooled zone vectors alone: no whole frozen-stage outputs are kept
    assert len(list((tmp_path / "work" / "pooled_stages").glob("*.pt"))) == 8 and not (tmp_path / "work" / "frozen_stages").exists()
    final = json.loads((tmp_path / "logs" / "final.json").read_text())
    assert final["variant"] == "pooled" and final["training"]["n_train"] == 8
    shipped = load_weights(BSNet(), models / "model.pt")
    assert shipped.scoring.zone_classifier == "pooled_linear"
    kept = load_fit_samples(models / "model_fit_samples.npz")  # what the app's refit joins its images to
    assert kept["features"].shape[:3] == (8, 4, 6) and kept["fingerprint"] == frozen_stages_fingerprint(shipped)
    root = shared_data / "brixia-public"  # and their Cohen scores, which it fits Cohen's mapping again on
    np.testing.assert_array_equal(kept["cohen"], cohen_scores_of(brixia_public_datalist(root)[:8], root / "cohen-severity.csv", root / "images"))
    assert 0 < np.isfinite(kept["cohen"][:, 0]).sum() < 8
    evaluation = json.loads((tmp_path / "logs" / "evaluate_final.json").read_text())
    assert evaluation["all"]["n_images"] == 8 and "inner_validation" not in evaluation
    # the zone context stage beside the weights, fitted on the cross-validation's out-of-fold probabilities
    rows = json.loads((tmp_path / "logs" / "cv_pooled_predictions.json").read_text())
    stage = rating_beside(models / "model.pt")
    assert stage is not None and stage.fitted_on == 8 == json.loads((tmp_path / "logs" / "context.json").read_text())["n"]
    probabilities = np.array([r["probabilities_tta"] for r in rows])
    refitted = ZoneContextRating(SERVED_CONTEXT_C).fit(probabilities, np.array([r["label_senior"] for r in rows]), np.array(patient_groups(rows)))
    assert stage.c == refitted.c  # its strength chosen on the same rows, their patients kept apart
    np.testing.assert_allclose(stage.probabilities(probabilities), refitted.probabilities(probabilities), atol=1e-12)
    assert stage.fitted_for == stage_fingerprint(shipped, scoring=True)  # served only with this zone classifier


def _zero_prior(x: np.ndarray) -> LinearZoneClassifier:
    prior = LinearZoneClassifier(x.shape[1])
    with torch.no_grad():
        prior.feature_mean.copy_(torch.as_tensor(x.mean(0)))
        prior.feature_scale.copy_(torch.as_tensor(x.std(0)))
        prior.linear.weight.zero_()
        prior.linear.bias.zero_()
    return prior


def test_a_refit_towards_a_zero_prior_is_scikit_learns_l2_logistic_regression():
    """Centred on zero, the refit's objective is scikit-learn's (C times the summed cross-entropy plus
    half the squared norm), with the bias penalised like a weight of a constant feature."""
    x, y = make_classification(400, 12, n_informative=6, n_classes=4, random_state=0)
    prior = _zero_prior(x)
    refitted = refit_towards(prior, x, y, 0.05)
    z = (x - x.mean(0)) / x.std(0)
    reference = LogisticRegression(C=0.05, fit_intercept=False, tol=1e-10, max_iter=5000).fit(np.c_[z, np.ones(len(z))], y)
    got = torch.softmax(refitted(torch.as_tensor(x, dtype=torch.float32)), -1).detach().numpy()
    np.testing.assert_allclose(got, reference.predict_proba(np.c_[z, np.ones(len(z))]), atol=1e-4)
    assert not torch.equal(refitted.linear.weight, prior.linear.weight)  # a copy: the prior is left as it was
    assert prior.linear.weight.abs().max() == 0


def test_a_refit_moves_from_the_prior_as_far_as_its_strength_lets_it():
    rng = np.random.default_rng(0)
    x, y = make_classification(600, 10, n_informative=5, n_classes=4, random_state=1)
    prior = regression_to_classifier(fit_zone_regression(x, y, 1.0))
    site = rng.choice(len(x), 60, replace=False)
    shifted = np.minimum(y[site] + 1, 3)  # a site whose raters score one step higher
    distance = [
        float((refit_towards(prior, x[site], shifted, c).linear.weight - prior.linear.weight).detach().norm()) for c in (0.0, 0.001, 0.1, 10.0)
    ]
    assert distance[0] == 0 and distance[1] < distance[2] < distance[3]
    # the site's rating is learned: the expected score of the site's images goes up by about the shift
    expected = lambda layer: (torch.softmax(layer(torch.as_tensor(x[site], dtype=torch.float32)), -1).detach().numpy() @ np.arange(4)).mean()
    assert expected(prior) < y[site].mean() + 0.3 and expected(refit_towards(prior, x[site], shifted, 10.0)) > shifted.mean() - 0.3


def test_the_refit_strength_is_chosen_by_grouped_cross_validation_and_zero_keeps_a_prior_that_is_right():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(16, 6))
    features = np.repeat(scores[:, None, :, None], 2, axis=1) + rng.normal(0, 0.3, size=(16, 2, 6, 5))
    features[:, 1] = features[:, 1][:, [3, 4, 5, 0, 1, 2]]  # copy 1 is the mirror: its zones swapped
    groups = np.array([f"p{i // 2}" for i in range(16)])
    samples = zone_samples(features, scores, range(16), range(2))
    right = regression_to_classifier(fit_zone_regression(*samples, 10.0))
    c, errors = choose_refit_strength(right, features, scores, groups, range(16), c_grid=(0.0, 0.01, 1.0))
    assert set(errors) == {0.0, 0.01, 1.0} and errors[0.0] < 0.05
    # a prior that gives every zone score 0 is left for the data
    wrong = _zero_prior(samples[0])
    with torch.no_grad():
        wrong.linear.bias.copy_(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    c, errors = choose_refit_strength(wrong, features, scores, groups, range(16), c_grid=(0.0, 1.0))
    assert c == 1.0 and errors[1.0] < errors[0.0] - 0.5
    probabilities = classifier_probabilities(refit_towards(wrong, *samples, 1.0), features, range(16))
    assert probabilities.shape == (16, 6, 4) and (probabilities.argmax(-1) == scores).mean() > 0.9


def test_the_pooled_feature_cache_holds_what_the_full_cache_pools(tmp_path, scored_samples, untrained_bsnet):
    full = FrozenStageCache(untrained_bsnet, tmp_path / "full", n_draws=1, image_size=SIZE)
    full.build(scored_samples[:3])
    pooled = PooledFeatureCache(untrained_bsnet, tmp_path / "pooled", n_draws=1, image_size=SIZE)
    pooled.build(scored_samples[:3])
    np.testing.assert_allclose(pooled_zone_features(pooled, scored_samples[:3]), pooled_zone_features(full, scored_samples[:3]), atol=1e-5)
    assert list(torch.load(pooled.path(scored_samples[0]), weights_only=True)) == ["pooled"]  # nothing else is kept


def test_a_refit_joins_the_labelled_images_to_the_samples_the_head_was_fitted_on(tmp_path, scored_samples, untrained_bsnet):
    cache = PooledFeatureCache(untrained_bsnet, tmp_path / "pooled", n_draws=1, image_size=SIZE)
    with pytest.raises(ValueError, match="needs the pooled linear zone classifier"):
        refit_final_pooled_head(scored_samples, cache, {})
    samples_path = tmp_path / "model_fit_samples.npz"
    cohen = np.array([[6.0, 4.0], [np.nan, np.nan], [1.5, 1.0], [3.0, 2.5]])  # Cohen scores of three of the four images
    fit_final_pooled_head(scored_samples[:4], cache, c_grid=(0.1,), samples_path=samples_path, cohen=cohen)
    kept = load_fit_samples(samples_path)
    assert kept["features"].shape == (4, 4, 6, 1920) and kept["c"] == 0.1
    assert kept["fingerprint"] == frozen_stages_fingerprint(untrained_bsnet)
    assert list(kept["groups"]) == [item["patient_id"] for item in scored_samples[:4]]  # kept apart by a refit's inner splits
    np.testing.assert_array_equal(kept["cohen"], cohen)  # a refit fits Cohen's mapping again on them
    assert not list(tmp_path.glob("*.partial*"))  # written atomically

    log = refit_final_pooled_head(scored_samples[4:], cache, kept)
    assert log["n_train"] == 2 and log["n_fit_samples_images"] == 4 and log["C"] == 0.1
    assert "zone_context" not in log and "cohen" not in log  # no path, nothing else fitted
    features = pooled_zone_features(cache, scored_samples)
    scores = np.array([item["label"] for item in scored_samples])
    together = np.concatenate([kept["features"], features[4:]])  # the kept four (half precision) and the two new
    expected = fit_zone_regression(*zone_samples(together, scores, range(6), range(4)), 0.1)
    got = classifier_probabilities(untrained_bsnet.scoring.classifiers[0], together, range(6))
    np.testing.assert_allclose(got, regression_probabilities(expected, together, range(6))[0], atol=1e-4)
    assert all(c is untrained_bsnet.scoring.classifiers[0] for c in untrained_bsnet.scoring.classifiers)

    # with a path, the zone context stage is fitted again for the refitted classifier: on out-of-fold TTA
    # probabilities of the same images at the same C, the kept images' patients and the new ones' kept apart
    kept["groups"] = np.array(["a", "a", "b", "b"])  # two patients with two images each
    log = refit_final_pooled_head(scored_samples[4:], cache, kept, context_path=tmp_path / "zone_context.json", cohen_path=tmp_path / "cohen.json")
    stage = ZoneContextRating.load(tmp_path / "zone_context.json")
    assert log["zone_context"]["fitted_on"] == stage.fitted_on == 6
    assert stage.fitted_for == stage_fingerprint(untrained_bsnet, scoring=True)
    groups = np.array(["fit:a", "fit:a", "fit:b", "fit:b", "site:p11", "site:p12"])
    _, inner_tta = inner_out_of_fold_probabilities(together, scores, groups, range(6), 0.1)
    expected_stage = ZoneContextRating(SERVED_CONTEXT_C).fit(inner_tta, scores, groups)
    assert stage.c == expected_stage.c == log["zone_context"]["C"]
    probe = np.random.default_rng(0).dirichlet(np.ones(4), size=(5, 6))
    np.testing.assert_allclose(stage.probabilities(probe), expected_stage.probabilities(probe), atol=1e-6)
    # Cohen's mapping, fitted again on the same probabilities of the kept images that have Cohen scores
    mapping = CohenSeverityMapping.load(tmp_path / "cohen.json")
    assert log["cohen"]["fitted_on"] == mapping.fitted_on == 3 and mapping.fitted_for == stage.fitted_for
    expected_mapping = CohenSeverityMapping().fit(inner_tta[[0, 2, 3]], cohen[[0, 2, 3], 0], cohen[[0, 2, 3], 1])
    for name, values in expected_mapping.predict(probe).items():
        np.testing.assert_allclose(mapping.predict(probe)[name], values, atol=1e-6)
    # fit samples saved without Cohen scores (before 0.3.2): no mapping, nothing written
    (tmp_path / "cohen.json").unlink()
    log = refit_final_pooled_head(scored_samples[4:], cache, {**kept, "cohen": np.full((4, 2), np.nan)}, cohen_path=tmp_path / "cohen.json")
    assert "cohen" not in log and not (tmp_path / "cohen.json").exists()
    _, per_image = inner_out_of_fold_probabilities(together, scores, np.arange(6), range(6), 0.1)
    assert not np.allclose(ZoneContextRating(stage.c).fit(per_image, scores).probabilities(probe), stage.probabilities(probe), atol=1e-3)

    with torch.no_grad():  # other frozen stages: their pooled vectors do not mix with the kept ones
        untrained_bsnet.encoder.layer1[0].conv1.weight.mul_(2)
    with pytest.raises(ValueError, match="other frozen stages"):
        refit_final_pooled_head(scored_samples[4:], cache, kept)


def test_the_draw_noise_experiment_repeats_cv_pooled_on_disjoint_pairs_of_draws(tmp_path, shared_data):
    """``draw_noise.py``: its first pair of draws is ``cv:pooled``'s own (the same seeded draws as a
    2-draw cache, the same folds and C search), the second pair other draws of the same images."""
    out, weights = tmp_path / "out", REPO / "bundle" / "models" / "model.pt"
    command = [sys.executable, str(REPO / "bundle" / "scripts" / "draw_noise.py"), "--data", str(shared_data), "--cache", str(tmp_path / "draws"),
               "--out", str(out), "--limit", "16", "--image-size", str(SIZE), "--draws", "4", "--folds", "2"]
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    result = json.loads((out / "draw_noise.json").read_text())
    assert set(result["pairs"]) == {"draws 1-2", "draws 3-4"} and set(result["comparisons"]) == {"draws 3-4 vs draws 1-2"}
    assert result["all_draws"]["n_copies"] == 10 and [result["pairs"][pair]["n_copies"] for pair in ("draws 1-2", "draws 3-4")] == [6, 6]
    first = json.loads((out / "cv_pooled_draws12_predictions.json").read_text())
    second = json.loads((out / "cv_pooled_draws34_predictions.json").read_text())
    every = json.loads((out / "cv_pooled_drawsall_predictions.json").read_text())
    assert [row["probabilities"] for row in first] != [row["probabilities"] for row in second], "other draws, other fits"
    assert [row["probabilities"] for row in every] not in ([row["probabilities"] for row in first], [row["probabilities"] for row in second])
    # another seed (--seed 1 makes this cache): the same plain copies and mirrors, other random draws
    items = brixia_public_datalist(shared_data / "brixia-public")[:16]
    reseeded = PooledFeatureCache(load_weights(BSNet(), weights), tmp_path / "seed1", n_draws=4, image_size=SIZE, seed=1)
    reseeded.build(items[:1])
    seed0, seed1 = (torch.load(folder / f"{Path(items[0]['image']).name}.pt", weights_only=True)["pooled"] for folder in (tmp_path / "draws", tmp_path / "seed1"))
    assert result["cache"]["seed"] == 0 and torch.allclose(seed0[:2], seed1[:2], atol=1e-4) and not torch.allclose(seed0[2:], seed1[2:], atol=1e-2)

    two_draws = PooledFeatureCache(load_weights(BSNet(), weights), tmp_path / "two", n_draws=2, image_size=SIZE)
    cross_validate_pooled_head(items, two_draws, tmp_path / "cv", n_folds=2)
    expected = json.loads((tmp_path / "cv" / "predictions.json").read_text())
    assert [(row["filename"], row["fold"]) for row in expected] == [(row["filename"], row["fold"]) for row in first]
    # not to the last digit: the copies run in batches of 10 and of 6 (other float rounding), which the L-BFGS
    # fits, stopping at their tolerance, carry into the probabilities (seen: 6e-4 at most)
    np.testing.assert_allclose([row["probabilities"] for row in first], [row["probabilities"] for row in expected], atol=1e-3)


def test_the_two_pass_cache_reads_the_lungs_at_one_side_and_the_features_at_another(untrained_bsnet, tmp_path):
    """``TwoPassPooledCache`` (the 640 px experiment): at one side it is the pooled cache; at two sides its
    vectors are those of the larger copy's encoder features pooled with the smaller copy's lung map."""
    sys.path.insert(0, str(REPO / "bundle" / "scripts"))
    from pooled_experiments import TwoPassPooledCache

    images = torch.rand(2, 1, 128, 128)
    one_side = TwoPassPooledCache(untrained_bsnet, tmp_path / "a", n_draws=0, image_size=128, lung_size=128)
    with torch.inference_mode():
        one_pass = pooled_zone_vectors(untrained_bsnet, images)
        np.testing.assert_allclose(one_side.record(images)["pooled"], one_pass, atol=1e-5)
        two_sides = TwoPassPooledCache(untrained_bsnet, tmp_path / "b", n_draws=0, image_size=128, lung_size=64).record(images)["pooled"]
        small = torch.nn.functional.interpolate(images, size=(64, 64), mode="area")
        _, _, theta, aligned_lung = untrained_bsnet.scoring_inputs(small)
        crops = untrained_bsnet.scoring.zone_crops(untrained_bsnet.encoder(images)[1:], theta, aligned_lung)
        expected = ZonePooling()(crops).view(2, 6, -1)
    np.testing.assert_allclose(two_sides, expected, atol=1e-5)
    assert not np.allclose(two_sides, one_pass, atol=1e-3)  # not the one-pass vectors
