"""Stage c on cached outputs of the frozen stages (the CPU form of the head-only recipes), on the
bundle's sample radiographs at 64 px."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from monai_bsnet import frozen_head
from monai_bsnet.cross_validation import RECIPES, ScoringRecipe, patient_fold_indices, predict_zone_probabilities, summarise_predictions
from monai_bsnet.frozen_head import (
    CachedScoringStage,
    FrozenStageCache,
    copy_labels,
    cross_validate_head,
    head_probabilities,
    train_final_head,
    train_head,
)
from monai_bsnet.data import brixia_public_datalist
from monai_bsnet.metrics import zone_mae
from monai_bsnet.networks import BSNet
from monai_bsnet.pooled_head import PooledFeatureCache, cross_validate_features, pooled_zone_features

REPO = Path(__file__).resolve().parents[1]
SIZE = 64


def test_cached_plain_and_mirrored_copies_score_as_the_whole_network_does(tmp_path, scored_samples, untrained_bsnet):
    """Copy 0 is the inference preprocessing and copy 1 its mirror: the head on cached outputs gives
    the whole network's probabilities, with and without test-time augmentation."""
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    cache.build(scored_samples[:3])
    outputs = cache.load(scored_samples[:3])
    assert outputs.theta.shape == (3, 4, 2, 3) and outputs.features[0].shape[:3] == (3, 4, 64)
    cached_plain, cached_tta = head_probabilities(untrained_bsnet.scoring, outputs, [0, 1, 2])
    plain, tta = predict_zone_probabilities(untrained_bsnet, [item["image"] for item in scored_samples[:3]], spatial_size=SIZE)
    np.testing.assert_allclose(cached_plain, plain, atol=1e-4)
    np.testing.assert_allclose(cached_tta, tta, atol=1e-4)
    # the random draw differs from the plain copy
    assert not torch.allclose(outputs.features[0][:, 2], outputs.features[0][:, 0])


def test_the_cache_resumes_and_refuses_other_settings(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE, weights_id="a")
    cache.build(scored_samples[:2])
    first = cache.path(scored_samples[0]).stat().st_mtime_ns
    cache.build(scored_samples[:3])  # only the third image is new
    assert cache.path(scored_samples[0]).stat().st_mtime_ns == first and cache.path(scored_samples[2]).is_file()
    assert not list((tmp_path / "cache").glob("*.partial"))
    with pytest.raises(ValueError, match="built with"):
        FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE, weights_id="b")
    with pytest.raises(FileNotFoundError, match="not cached"):
        cache.load([{**scored_samples[0], "image": str(tmp_path / "not_built.jpg")}])


def test_a_cache_built_with_other_transforms_is_refused(tmp_path, untrained_bsnet, monkeypatch):
    """The stamp records train.json's transforms: a cache built with another equalisation (bins over
    [0, max], as in stop 31's experiment) is not reused with the same weights."""
    FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE, weights_id="a")
    shipped = frozen_head.train_config

    def zero_to_max_equalisation(image_size):
        parser = shipped(image_size)
        transforms = parser.get("train#deterministic_transforms")
        (i,) = [i for i, t in enumerate(transforms) if t["_target_"] == "HistogramNormalized"]
        parser[f"train#deterministic_transforms#{i}"] = {"_target_": "monai_bsnet.transforms.EqualiseHistogramd", "keys": "image"}
        return parser

    monkeypatch.setattr(frozen_head, "train_config", zero_to_max_equalisation)
    with pytest.raises(ValueError, match="built with"):
        FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE, weights_id="a")


def test_training_the_head_fits_its_images_and_keeps_the_best_epoch(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    cache.build(scored_samples[:3])
    outputs = cache.load(scored_samples[:3])
    labels = torch.tensor([item["label"] for item in scored_samples[:3]])
    head = untrained_bsnet.scoring
    before = zone_mae(head_probabilities(head, outputs, range(3))[0], labels)
    recipe = ScoringRecipe(head_epochs=12, lateral_flip_prob=0.5, learning_rate=1e-2, batch_size=3)
    log = train_head(head, outputs, labels, range(3), range(3), recipe)
    after = zone_mae(head_probabilities(head, outputs, range(3))[0], labels)
    assert after < before and after == pytest.approx(log["best_metric"])
    assert 1 <= log["best_epoch"] <= 12
    # the frozen stages were never touched
    assert all(p.grad is None for p in untrained_bsnet.encoder.parameters())


def test_the_junior_share_of_the_draws_decides_which_rater_the_head_learns(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    cache.build(scored_samples[:3])
    outputs = cache.load(scored_samples[:3])
    senior, junior = torch.zeros(3, 6, dtype=torch.long), torch.full((3, 6), 3, dtype=torch.long)
    learned = {}
    for prob in (0.0, 1.0):
        head = copy.deepcopy(untrained_bsnet.scoring)
        recipe = ScoringRecipe(head_epochs=30, learning_rate=1e-2, batch_size=3, junior_label_prob=prob)
        # no validation rows, so the last epoch is kept (a senior-validated one would pick epoch 1)
        train_head(head, outputs, senior, range(3), [], recipe, junior_labels=junior)
        learned[prob] = head_probabilities(head, outputs, range(3))[0] @ np.arange(4)  # expected scores
    assert learned[0.0].max() < 1.0 and learned[1.0].min() > 2.0
    with pytest.raises(ValueError, match="junior_labels"):
        train_head(untrained_bsnet.scoring, outputs, senior, range(3), [], replace(recipe, head_epochs=1))


def test_mirrored_copies_carry_their_scores_swapped_side_for_side():
    labels = torch.tensor([[0, 1, 2, 3, 3, 3], [1, 1, 1, 0, 0, 0]])
    assert copy_labels(labels, np.array([0, 3])).tolist() == [[0, 1, 2, 3, 3, 3], [0, 0, 0, 1, 1, 1]]
    assert copy_labels(labels, np.array([1, 2])).tolist() == [[3, 3, 3, 0, 1, 2], [1, 1, 1, 0, 0, 0]]


def test_end_to_end_recipes_cannot_use_the_cache(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=0, image_size=SIZE)
    cache.build(scored_samples[:1])
    with pytest.raises(ValueError, match="end-to-end"):
        train_head(untrained_bsnet.scoring, cache.load(scored_samples[:1]), torch.zeros(1, 6, dtype=torch.long), [0], [], ScoringRecipe(end_to_end_epochs=2))


def test_cross_validation_on_the_cache_covers_every_image_once_and_resumes(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    recipe = ScoringRecipe(head_epochs=2, lateral_flip_prob=0.5, batch_size=2)
    summary = cross_validate_head(recipe, scored_samples, cache, tmp_path / "cv", n_folds=2)
    predictions = json.loads((tmp_path / "cv" / "predictions.json").read_text())
    assert sorted(p["filename"] for p in predictions) == sorted(item["filename"] for item in scored_samples)
    assert summary["n_images"] == 6 and len(summary["folds"]) == 2 and summary["training"] == "cached frozen-stage outputs"
    assert summary["junior_vs_senior"]["zone_mae"] == 0
    fold_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "cv").glob("fold*.json")}
    again = cross_validate_head(recipe, scored_samples, cache, tmp_path / "cv", n_folds=2)
    assert {p: p.stat().st_mtime_ns for p in fold_files} == fold_files and again["plain"] == summary["plain"]


def test_another_training_seed_keeps_the_folds_and_changes_only_the_trained_heads(tmp_path, scored_samples, untrained_bsnet):
    """The noise-floor runs: the same splits, another initialisation and order; the same seed repeats."""
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    recipe = ScoringRecipe(head_epochs=2, lateral_flip_prob=0.5, batch_size=2)

    def run(name: str, **seeds) -> tuple[dict, list]:
        summary = cross_validate_head(recipe, scored_samples, cache, tmp_path / name, n_folds=2, **seeds)
        return summary, json.loads((tmp_path / name / "predictions.json").read_text())

    reference, predicted = run("seed0")
    repeated, predicted_again = run("seed0_again", training_seed=0)
    other, predicted_other = run("seed1", training_seed=1)
    assert reference["training_seed"] == 0 and other["training_seed"] == 1 and other["seed"] == 0
    assert [(p["filename"], p["fold"]) for p in predicted_other] == [(p["filename"], p["fold"]) for p in predicted]
    assert [f["n_val"] for f in other["folds"]] == [f["n_val"] for f in reference["folds"]]
    assert [p["probabilities"] for p in predicted_again] == [p["probabilities"] for p in predicted]
    assert [p["probabilities"] for p in predicted_other] != [p["probabilities"] for p in predicted]


def test_the_final_head_goes_into_the_network(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    before = {k: v.clone() for k, v in untrained_bsnet.state_dict().items()}
    log = train_final_head(replace(ScoringRecipe(), head_epochs=2, batch_size=2), scored_samples, cache)
    after = untrained_bsnet.state_dict()
    assert log["n_train"] + log["n_val"] == 6
    assert not torch.equal(before["scoring.classifiers.0.blocks.0.conv.weight"], after["scoring.classifiers.0.blocks.0.conv.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("scoring."))


def test_a_shared_classifier_recipe_trains_one_classifier_for_the_six_zones(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    train_final_head(replace(RECIPES["head_shared"], head_epochs=2, batch_size=2), scored_samples, cache)
    state = untrained_bsnet.state_dict()
    first = state["scoring.classifiers.0.blocks.0.conv.weight"]
    assert all(torch.equal(state[f"scoring.classifiers.{zone}.blocks.0.conv.weight"], first) for zone in range(1, 6))
    # the installed network is the default architecture: its classifiers are separate modules again
    assert untrained_bsnet.scoring.classifiers[0] is not untrained_bsnet.scoring.classifiers[1]


def test_the_recipe_script_runs_cross_validation_and_the_final_model_on_the_cache(tmp_path, shared_data):
    models = tmp_path / "work" / "models"
    models.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(BSNet().state_dict(), models / "alignment.pt")  # stands in for stage b's checkpoint
    command = [sys.executable, str(REPO / "bundle" / "scripts" / "train_recipe.py"), "--data", str(shared_data),
               "--work", str(tmp_path / "work"), "--logs", str(tmp_path / "logs"), "--schedule", "smoke_cached",
               "--limit", "8", "--folds", "2", "--device", "cpu", "cv:head", "cv:head_flip", "final:auto"]
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    cv = json.loads((tmp_path / "logs" / "cv_head_flip.json").read_text())
    assert cv["training"] == "cached frozen-stage outputs" and cv["n_images"] == 8
    final = json.loads((tmp_path / "logs" / "final.json").read_text())
    assert final["variant"] in ("head", "head_flip") and (models / "model.pt").is_file()
    # both variants used the one cache
    assert len(list((tmp_path / "work" / "frozen_stages").glob("*.pt"))) == 8
    # the zone probes read the same cache
    probe = [sys.executable, str(REPO / "bundle" / "scripts" / "zone_probe.py"), "--data", str(shared_data), "--cache",
             str(tmp_path / "work" / "frozen_stages"), "--out", str(tmp_path / "probe.json"), "--limit", "8", "--folds", "2"]
    subprocess.run(probe, check=True, capture_output=True, timeout=600)
    probes = json.loads((tmp_path / "probe.json").read_text())
    assert probes["n_images"] == 8
    for grouping in ("shared", "per_level", "per_zone"):
        assert 0 <= probes[grouping]["zone_mae"] <= 3 and len(probes[grouping]["fold_zone_mae"]) == 2
        # its out-of-fold probabilities, in the form the recipes' cross-validations leave
        rows = json.loads((tmp_path / f"cv_probe_{grouping}_predictions.json").read_text())
        assert summarise_predictions(rows)["plain"]["zone_mae"] == pytest.approx(probes[grouping]["zone_mae"], abs=1e-4)
        head_rows = json.loads((tmp_path / "logs" / "cv_head_predictions.json").read_text())
        assert {(r["filename"], r["fold"]) for r in rows} == {(r["filename"], r["fold"]) for r in head_rows}  # the same folds
    # the fine-tuning experiment starts from the same fitted regression as the shared probe
    finetune = [sys.executable, str(REPO / "bundle" / "scripts" / "finetune_pooled_head.py"), "--data", str(shared_data), "--cache",
                str(tmp_path / "work" / "frozen_stages"), "--out", str(tmp_path / "finetune.json"), "--limit", "8", "--folds", "2",
                "--epochs", "2", "--learning-rates", "1e-3"]
    subprocess.run(finetune, check=True, capture_output=True, timeout=600)
    run = json.loads((tmp_path / "finetune.json").read_text())["runs"]["0.001"]
    assert run["zone_mae_fitted"] == pytest.approx(probes["shared"]["zone_mae"], abs=1e-4)
    assert 0 <= run["zone_mae_fine_tuned"] <= 3 and [f["best_epoch"] in (1, 2) for f in run["folds"]] == [True, True]


def test_the_retraining_and_learning_curve_experiments_run_on_a_small_cache(tmp_path, shared_data, untrained_bsnet):
    items = brixia_public_datalist(shared_data / "brixia-public")[:24]  # enough for two scores in every inner fold
    FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE).build(items)
    refit = [sys.executable, str(REPO / "bundle" / "scripts" / "refit_pooled_head.py"), "--data", str(shared_data), "--cache",
             str(tmp_path / "cache"), "--out", str(tmp_path / "refit.json"), "--limit", "24", "--folds", "2", "--site-sizes", "4", "0"]
    subprocess.run(refit, check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "refit.json").read_text())
    assert set(result["summary"]) == {f"{rater}, {size}" for rater in ("senior", "junior") for size in ("4 site images", "the whole site half")}
    for rows in result["summary"].values():
        assert all(0 <= rows[method]["zone_mae"] <= 3 and len(rows[method]["zone_mae_per_fold"]) == 2 for method in result["methods"])
    # no retraining gives the same held-out scores whatever the site
    assert len({rows["prior"]["zone_mae"] for key, rows in result["summary"].items() if key.startswith("senior")}) == 1
    # the site-weighting variant: on the plain and mirrored copies only, a weight of 1 is the unweighted refit
    weighted = refit[:refit.index("--site-sizes")] + ["--site-sizes", "4", "--methods", "refit_with_public", "--site-weights", "1", "4", "--copies", "2"]
    weighted[weighted.index(str(tmp_path / "refit.json"))] = str(tmp_path / "weighted.json")
    subprocess.run(weighted, check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "weighted.json").read_text())
    assert result["copies"] == 2 and result["methods"] == ["prior", "refit_with_public", "refit_with_public_w1", "refit_with_public_w4"]
    for rows in result["summary"].values():
        assert rows["refit_with_public_w1"]["zone_mae"] == pytest.approx(rows["refit_with_public"]["zone_mae"], abs=1e-4)
    # both raters' scores as targets, against the senior-only fit on the same copies and folds
    raters = refit[:refit.index("--site-sizes")]
    raters[1] = str(REPO / "bundle" / "scripts" / "rater_targets.py")
    raters[raters.index(str(tmp_path / "refit.json"))] = str(tmp_path / "raters.json")
    subprocess.run(raters, check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "raters.json").read_text())
    assert result["C_grid"] == [0.0005, 0.0015, 0.005] and result["reference"] == "senior"
    for view in ("plain", "tta"):
        difference = result["both_raters_minus_senior_only"][view]["zone_mae"]["difference"]
        assert difference == pytest.approx(result["both_raters"][view]["zone_mae"] - result["senior_only"][view]["zone_mae"], abs=1e-3)
    # the senior-only fit is cv:pooled's cross-validation of these vectors
    items = brixia_public_datalist(shared_data / "brixia-public")[:24]
    senior_only, _ = cross_validate_features(items, pooled_zone_features(FrozenStageCache.built(tmp_path / "cache"), items), 2)
    assert result["senior_only"]["plain"]["zone_mae"] == pytest.approx(summarise_predictions(senior_only)["plain"]["zone_mae"], abs=1e-6)
    # the learning curve on the same cache: all the training images are used where asked, fewer where not
    curve = [sys.executable, str(REPO / "bundle" / "scripts" / "learning_curve.py"), "--data", str(shared_data), "--cache",
             str(tmp_path / "cache"), "--out", str(tmp_path / "curve.json"), "--limit", "24", "--folds", "2", "--sizes", "6", "0", "--orders", "2"]
    subprocess.run(curve, check=True, capture_output=True, timeout=600)
    points = json.loads((tmp_path / "curve.json").read_text())["curve"]
    assert points["6"]["training_images_per_fold"] == [6, 6] and min(points["all"]["training_images_per_fold"]) >= 10
    assert points["all"]["zone_mae_range"][0] == points["all"]["zone_mae_range"][1]  # all images: every order fits the same
    # a cache of the pooled vectors alone (what train_recipe.py's cv:pooled builds) serves the same experiments, with the same numbers
    PooledFeatureCache(untrained_bsnet, tmp_path / "pooled", n_draws=1, image_size=SIZE).build(items)
    curve[curve.index(str(tmp_path / "cache"))] = str(tmp_path / "pooled")
    curve[curve.index(str(tmp_path / "curve.json"))] = str(tmp_path / "pooled_curve.json")
    subprocess.run(curve, check=True, capture_output=True, timeout=600)
    pooled_points = json.loads((tmp_path / "pooled_curve.json").read_text())["curve"]
    assert pooled_points["all"]["zone_mae_mean"] == pytest.approx(points["all"]["zone_mae_mean"], abs=1e-3)


def test_the_app_retraining_experiments_rate_and_choose_without_the_held_out_images(tmp_path, shared_data, untrained_bsnet):
    """``refit_zone_context.py``: the three ratings of a refitted head share its global score, so only
    their zone MAE differs, and Cohen's scores are rated four ways; ``active_learning.py``: the images the entropy strategy chose to label are
    training images of their fold, never held-out ones, and each budget is scored."""
    items = brixia_public_datalist(shared_data / "brixia-public")[:24]
    FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE).build(items)
    common = ["--data", str(shared_data), "--cache", str(tmp_path / "cache"), "--limit", "24", "--folds", "2"]
    script = REPO / "bundle" / "scripts"
    subprocess.run([sys.executable, str(script / "refit_zone_context.py"), *common, "--out", str(tmp_path / "rating.json"), "--site-sizes", "4", "0"],
                   check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "rating.json").read_text())
    assert set(result["summary"]) == {f"{rater}, {size}" for rater in ("senior", "junior") for size in ("4 site images", "the whole site half")}
    for rows in result["summary"].values():
        assert len({rows[m]["global_mae"] for m in ("median", "keep", "refit")}) == 1
        assert all(0 <= rows[m]["zone_mae"] <= 3 and len(rows[m]["zone_mae_per_fold"]) == 2 for m in ("median", "keep", "refit"))
    # Cohen's scores of the held-out Cohen-scored images: the floor is the same in every row, the mappings' within range
    cohen = result["cohen"]
    assert cohen["n_images"] > 0 and set(cohen["summary"]) == set(result["summary"])
    assert len({(row["constant"]["geographic_extent_mae"], row["constant"]["opacity_mae"]) for row in cohen["summary"].values()}) == 1
    assert all(0 <= row[m]["geographic_extent_mae"] <= 8 and 0 <= row[m]["opacity_mae"] <= 6 for row in cohen["summary"].values() for m in ("keep", "refit", "site"))
    # the site's Cohen-scored images: more of them as the site grows (the "site" way fits on them too)
    for rater in ("senior", "junior"):
        assert cohen["summary"][f"{rater}, 4 site images"]["site_cohen_images"] <= cohen["summary"][f"{rater}, the whole site half"]["site_cohen_images"]

    subprocess.run([sys.executable, str(script / "active_learning.py"), *common, "--out", str(tmp_path / "active.json"), "--budgets", "2", "4",
                    "--batch", "2", "--random-orders", "2"], check=True, capture_output=True, timeout=600)
    result = json.loads((tmp_path / "active.json").read_text())
    assert set(result["summary"]) == {f"{rater}, {b} site images" for rater in ("senior", "junior") for b in (2, 4)}
    folds = patient_fold_indices(items, 2)
    for log in result["folds"]:
        train, test = ({items[i]["filename"] for i in rows} for rows in folds[log["fold"]])
        assert len(set(log["entropy_order"])) == 4 and set(log["entropy_order"]) <= train and not set(log["entropy_order"]) & test
    for row in result["summary"].values():
        assert all(0 <= row[s]["zone_mae"] <= 3 for s in ("entropy", "random"))


def test_recipe_extras_override_train_json(tmp_path, scored_samples, untrained_bsnet):
    """``extra`` reaches the config the head is trained with: a zero learning rate leaves its weights."""
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=0, image_size=SIZE)
    cache.build(scored_samples[:3])
    before = untrained_bsnet.scoring.classifiers[0].blocks[0].conv.weight.detach().clone()
    recipe = ScoringRecipe(head_epochs=1, batch_size=3, extra={"optimizer#lr": 0.0})
    train_head(untrained_bsnet.scoring, cache.load(scored_samples[:3]), torch.zeros(3, 6, dtype=torch.long), [0, 1, 2], [], recipe)
    assert torch.equal(untrained_bsnet.scoring.classifiers[0].blocks[0].conv.weight, before)


def test_a_tuned_encoder_stage_starts_as_the_frozen_one_learns_slower_and_is_installed_with_the_head(tmp_path, scored_samples, untrained_bsnet):
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=1, image_size=SIZE)
    cache.build(scored_samples[:3])
    outputs = cache.load(scored_samples[:3])
    stage = CachedScoringStage(copy.deepcopy(untrained_bsnet.scoring), untrained_bsnet.encoder, tuned_stages=1)
    # recomputed from the cached layer3 output, the copied layer4 gives the cached scores
    np.testing.assert_allclose(head_probabilities(stage, outputs, [0, 1, 2])[0], head_probabilities(untrained_bsnet.scoring, outputs, [0, 1, 2])[0], atol=1e-5)
    head_group, tuned_group = stage.parameter_groups(1e-3)
    assert "lr" not in head_group and tuned_group["lr"] == pytest.approx(1e-4)
    batch_norm = stage.tuned[0][0].bn1
    statistics = batch_norm.running_mean.clone()
    train_head(stage, outputs, torch.tensor([item["label"] for item in scored_samples[:3]]), [0, 1, 2], [], ScoringRecipe(head_epochs=2, batch_size=3))
    assert torch.equal(batch_norm.running_mean, statistics), "tuned stages keep the encoder's batch-norm statistics"
    assert not torch.equal(stage.tuned[0][0].conv1.weight, untrained_bsnet.encoder.layer4[0].conv1.weight)
    before = {k: v.clone() for k, v in untrained_bsnet.state_dict().items()}
    stage.install(untrained_bsnet)
    assert torch.equal(untrained_bsnet.encoder.layer4[0].conv1.weight, stage.tuned[0][0].conv1.weight)
    assert torch.equal(untrained_bsnet.scoring.pyramid.laterals[0].conv.weight, stage.head.pyramid.laterals[0].conv.weight)
    changed = {k for k in before if not torch.equal(before[k], untrained_bsnet.state_dict()[k])}
    assert changed and all(k.startswith(("encoder.layer4.", "scoring.")) for k in changed)
    with pytest.raises(ValueError, match="tuned_stages"):
        CachedScoringStage(untrained_bsnet.scoring, None, tuned_stages=1)


def test_cross_validation_with_a_tuned_stage_scores_held_out_images_with_the_whole_network(tmp_path, scored_samples, untrained_bsnet, monkeypatch):
    import monai_bsnet.frozen_head as frozen_head

    scored = []
    original = frozen_head.predict_zone_probabilities
    monkeypatch.setattr(frozen_head, "predict_zone_probabilities", lambda net, images, *a, **k: scored.append(list(images)) or original(net, images, *a, **k))
    cache = FrozenStageCache(untrained_bsnet, tmp_path / "cache", n_draws=0, image_size=SIZE)
    recipe = ScoringRecipe(head_epochs=1, batch_size=3, tuned_encoder_stages=1)
    summary = cross_validate_head(recipe, scored_samples, cache, tmp_path / "cv", n_folds=2)
    assert summary["recipe"]["tuned_encoder_stages"] == 1 and summary["n_images"] == 6
    assert sorted(sum(scored, [])) == sorted(item["image"] for item in scored_samples)  # each held-out image once, through the network
    with pytest.raises(ValueError, match="cached training only"):
        from monai_bsnet.cross_validation import train_scoring

        train_scoring(recipe, scored_samples, tmp_path / "none.pt", tmp_path / "ckpt")
