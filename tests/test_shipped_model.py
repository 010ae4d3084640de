"""The trained weights the bundle ships: they load by default, score the sample images plausibly,
and match the checksum and the logs that the model card quotes."""

from __future__ import annotations

import csv
import hashlib
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from monai_bsnet.cli import default_weights, main
from monai_bsnet.networks import BSNet, load_weights
from monai_bsnet.networks.weights import stage_fingerprint
from monai_bsnet.pooled_head import (
    classifier_probabilities,
    fit_samples_path,
    fit_zone_regression,
    frozen_stages_fingerprint,
    load_fit_samples,
    regression_to_classifier,
    zone_samples,
)
from monai_bsnet.severity import mapping_beside
from monai_bsnet.training import patient_groups
from monai_bsnet.transforms import LoadCXR, cxr_preprocessing
from monai_bsnet.zone_context import SERVED_CONTEXT_C, ZoneContextRating, rating_beside
from monai_bsnet.zones import median_scores

BUNDLE = Path(__file__).resolve().parents[1] / "bundle"
WEIGHTS = BUNDLE / "models" / "model.pt"


def test_the_default_weights_are_the_shipped_file_stored_in_half_precision_and_loaded_as_float32():
    assert default_weights() == WEIGHTS or "BSNET_WEIGHTS" in __import__("os").environ
    assert WEIGHTS.stat().st_size < 50 * 2**20
    stored = torch.load(WEIGHTS, map_location="cpu", weights_only=True)
    assert {v.dtype for v in stored.values() if v.is_floating_point()} == {torch.float16}
    network = load_weights(BSNet(), WEIGHTS)
    assert all(p.dtype == torch.float32 for p in network.parameters())


def test_the_fit_samples_beside_the_weights_are_what_their_zone_classifier_was_fitted_on():
    """The MONAI Label app refits the shipped classifier on these samples plus a site's images: fitted
    alone, they must give back the shipped classifier."""
    samples = load_fit_samples(fit_samples_path(WEIGHTS))
    network = load_weights(BSNet(), WEIGHTS)
    assert samples["fingerprint"] == frozen_stages_fingerprint(network)
    assert samples["features"].shape == (138, 6, 6, 1920) and samples["c"] == json.loads((BUNDLE / "logs" / "final.json").read_text())["training"]["chosen_C"]
    features, scores = samples["features"], samples["scores"]
    refitted = regression_to_classifier(fit_zone_regression(*zone_samples(features, scores, range(138), range(6)), samples["c"]))
    difference = classifier_probabilities(refitted, features, range(138)) - classifier_probabilities(network.scoring.classifiers[0], features, range(138))
    assert abs(difference).max() < 0.005  # measured 0.0013: the features are kept in half precision


def test_the_model_card_quotes_the_shipped_files_checksum_and_the_logged_numbers():
    card = (BUNDLE / "docs" / "README.md").read_text()
    digest = hashlib.sha256(WEIGHTS.read_bytes()).hexdigest()
    assert digest in card, "update the model card's SHA-256 of models/model.pt"
    segmentation = json.loads((BUNDLE / "logs" / "segmentation.json").read_text())
    assert f"{segmentation['test']['dice_mean']:.3f}" in card
    evaluation = json.loads((BUNDLE / "logs" / "evaluate_final.json").read_text())
    assert f"{evaluation['all']['plain']['zone_mae']:.2f}" in card
    # the honest estimate: the cross-validation of the shipped model's recipe
    variant = json.loads((BUNDLE / "logs" / "final.json").read_text())["variant"]
    cv = json.loads((BUNDLE / "logs" / f"cv_{variant}.json").read_text())
    assert f"{cv['plain']['zone_mae']:.3f}" in card and f"{cv['plain']['global_mae']:.2f}" in card
    assert re.search(r"must not be used for diagnosis|not for diagnosis", card, re.IGNORECASE)
    # the zone context stage: its nested cross-validation over three sets of draws, with TTA
    nested = [json.loads((BUNDLE / "logs" / "zone_context" / f"seed{s}" / "zone_context.json").read_text()) for s in range(3)]
    first, served = (f"{sum(n[side]['tta']['zone_mae'] for n in nested) / 3:.3f}" for side in ("first_stage", "with_context"))
    assert f"{first} -> {served}" in card, "the model card quotes the zone context stage's nested cross-validation"


def test_the_zone_context_stage_beside_the_weights_is_the_one_fitted_on_the_logged_out_of_fold_probabilities():
    """``train_recipe.py ... context`` fitted it on ``cv_pooled_predictions.json``: refitted from that log, it
    gives the same probabilities."""
    rows = json.loads((BUNDLE / "logs" / "cv_pooled_predictions.json").read_text())
    probabilities = np.array([r["probabilities_tta"] for r in rows])
    refitted = ZoneContextRating(SERVED_CONTEXT_C).fit(probabilities, np.array([r["label_senior"] for r in rows]), np.array(patient_groups(rows)))
    assert rating_beside(WEIGHTS).c == refitted.c
    np.testing.assert_allclose(rating_beside(WEIGHTS).probabilities(probabilities), refitted.probabilities(probabilities), atol=1e-9)


def test_weights_retrained_beside_the_shipped_stage_are_rated_by_their_medians(tmp_path):
    """The shipped stage and Cohen mapping are marked with the shipped zone classifier's fingerprint: another
    classifier saved as ``model.pt`` beside them (a user's retraining) is rated by its zone medians and gets
    no extent and opacity, with a warning, rather than files fitted for other probabilities."""
    shipped = load_weights(BSNet(), WEIGHTS)
    assert rating_beside(WEIGHTS).fitted_for == mapping_beside(WEIGHTS).fitted_for == stage_fingerprint(shipped, scoring=True)
    with torch.no_grad():
        shipped.scoring.classifiers[0].linear.bias.add_(torch.tensor([0.0, 0.1, 0.0, 0.0]))
    retrained = tmp_path / "models" / "model.pt"
    retrained.parent.mkdir()
    torch.save(shipped.state_dict(), retrained)
    for name in ("zone_context.json", "cohen_severity.json"):
        shutil.copy(WEIGHTS.with_name(name), retrained.with_name(name))
    sample = sorted((BUNDLE / "sample").glob("*.jpg"))[0]
    assert main(["predict", str(sample), "--weights", str(retrained), "--output", str(tmp_path / "out"), "--quiet", "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "out" / f"{sample.stem}.json").read_text())
    assert record["model"]["zone_rating"] == "median"
    assert record["geographic_extent"] is None and record["opacity"] is None  # Cohen's mapping: refused as well
    probabilities = torch.tensor([record["zones"][z]["probabilities"] for z in "ABCDEF"])
    assert [record["zones"][z]["score"] for z in "ABCDEF"] == median_scores(probabilities).tolist()


def test_shipped_weights_give_varied_plausible_scores_and_cohen_fields_on_the_samples(tmp_path):
    assert mapping_beside(WEIGHTS) is not None, "models/cohen_severity.json ships beside the weights"
    assert rating_beside(WEIGHTS) is not None, "models/zone_context.json ships beside the weights"
    assert main(["predict", str(BUNDLE / "sample"), "--output", str(tmp_path), "--quiet", "--device", "cpu"]) == 0
    rows = list(csv.DictReader(open(tmp_path / "results.csv")))
    assert len(rows) == 4 and all(r["status"] == "ok" for r in rows)
    zones = [[int(r[z]) for z in "ABCDEF"] for r in rows]
    assert len({z for row in zones for z in row}) > 1, "every zone of every image got the same score"
    for row in rows:
        assert 0 <= int(row["global"]) <= 18
        assert 0 <= float(row["geographic_extent"]) <= 8 and 0 <= float(row["opacity"]) <= 6
        record = json.loads((tmp_path / f"{Path(row['input']).stem}.json").read_text())
        assert "lungs_not_found" not in record["quality_flags"]
        assert record["geographic_extent"] == pytest.approx(float(row["geographic_extent"]), abs=0.01)
        # rated by the zone context stage, adding up to the zone medians' global score
        probabilities = [record["zones"][z]["probabilities"] for z in "ABCDEF"]
        assert record["model"]["zone_rating"] == "zone context"
        assert sum(int(row[z]) for z in "ABCDEF") == int(row["global"]) == median_scores(torch.tensor(probabilities)).sum()


def test_the_bundle_describes_the_shipped_weights_and_exports_them(tmp_path):
    """``inference.json``'s ``network_def`` is the shipped model's architecture: ``ckpt_export`` (strict
    loading) takes ``models/model.pt`` as the README's command does, and the TorchScript model scores
    as the eager one."""
    from monai.bundle import ckpt_export

    from monai_bsnet.networks import BSNetZoneProbabilities

    configs = BUNDLE / "configs"
    exported = tmp_path / "model.ts"
    ckpt_export(net_id="network_def", filepath=str(exported), ckpt_file=str(WEIGHTS), meta_file=str(configs / "metadata.json"),
                config_file=str(configs / "inference.json"))
    image = torch.rand(1, 1, 512, 512)
    with torch.no_grad():
        eager = load_weights(BSNetZoneProbabilities(), WEIGHTS).eval()(image)
        torch.testing.assert_close(torch.jit.load(str(exported))(image), eager, atol=1e-5, rtol=1e-4)


def test_bundle_evaluation_scores_what_inference_serves(tmp_path):
    """``evaluate.json`` judges the served ratings (mirror TTA, the zone context stage beside the weights),
    not the plain zone medians: its ``scores.csv`` holds the ratings ``bsnet predict`` writes for the same
    images, and ``metrics.json`` says how they were made. With ``--tta false`` and no stage beside the
    weights it is the plain medians."""
    images = sorted((BUNDLE / "sample").glob("*.jpg"))
    assert main(["predict", *map(str, images), "--output", str(tmp_path / "predict"), "--quiet", "--device", "cpu"]) == 0
    served = {Path(r["input"]).name: [int(r[z]) for z in "ABCDEF"] for r in csv.DictReader(open(tmp_path / "predict" / "results.csv"))}
    labels = [[1, 0, 2, 3, 1, 0]] * len(images)  # any reference: only the metrics depend on it

    def evaluate(out: Path, **overrides) -> tuple[dict, dict[str, list[int]], dict[str, list[int]]]:
        parser = ConfigParser()
        parser.read_config([str(BUNDLE / "configs" / name) for name in ("train.json", "evaluate.json")])
        parser.update({"eval_datalist": [{"image": str(p), "label": y} for p, y in zip(images, labels)], "output_dir": str(out),
                       "num_workers": 0, "device": "$torch.device('cpu')", **overrides})
        parser.get_parsed_content("initialize")
        parser.get_parsed_content("run")
        rows = list(csv.DictReader(open(out / "evaluation" / "scores.csv")))
        predicted = {r["image"]: [int(r[f"pred_{z}"]) for z in "ABCDEF"] for r in rows}
        truth = {r["image"]: [int(r[f"true_{z}"]) for z in "ABCDEF"] for r in rows}
        return json.loads((out / "evaluation" / "metrics.json").read_text()), predicted, truth

    report, predicted, truth = evaluate(tmp_path / "served")
    assert report["model"] == {"test_time_augmentation": "mirror", "zone_rating": "zone context"}
    assert predicted == served
    assert report["zone_mae"] == pytest.approx(np.mean([np.abs(np.subtract(predicted[k], truth[k])).mean() for k in predicted]))

    plain_weights = tmp_path / "plain" / "model.pt"
    plain_weights.parent.mkdir()
    plain_weights.symlink_to(WEIGHTS)  # the same weights with no zone context stage beside them
    report, predicted, _ = evaluate(tmp_path / "plain_eval", ckpt_path=str(plain_weights), tta=False)
    assert report["model"] == {"test_time_augmentation": None, "zone_rating": "median"}
    network = load_weights(BSNet(), WEIGHTS).eval()
    load, preprocess = LoadCXR(), cxr_preprocessing()
    with torch.no_grad():
        for path in images:
            logits = network.outputs(preprocess(load(path)).as_tensor()[None]).zone_logits
            assert predicted[path.name] == median_scores(torch.softmax(logits, -1))[0].tolist()
