"""The training recipe's parts: the mirror augmentation, patient folds, the Cohen mapping, and the
whole recipe (stages, cross-validation, final model, mapping, half-precision export) on tiny data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from monai.bundle import ConfigParser

from monai_bsnet.cross_validation import compare_predictions, patient_folds, summarise_predictions
from monai_bsnet.data import brixia_public_datalist, lungseg_datalist
from monai_bsnet.networks import BSNet, load_weights
from monai_bsnet.networks.weights import stage_fingerprint
from monai_bsnet.severity import CohenSeverityMapping, cross_validated_mae, mapping_beside, severity_features
from monai_bsnet.training import cpu_has_bfloat16
from monai_bsnet.transforms import RandLateralFlipd, RandRaterLabeld, swap_zone_sides

REPO = Path(__file__).resolve().parents[1]


def test_lateral_flip_mirrors_the_image_and_swaps_the_lungs_scores():
    image = torch.zeros(1, 8, 8)
    image[0, :, 1] = 1.0  # something in the left half of the picture: the patient's RIGHT lung
    flipped = RandLateralFlipd("image", prob=1.0)({"image": image, "label": torch.tensor([3, 2, 1, 0, 0, 0])})
    assert flipped["image"][0, :, 6].eq(1).all() and flipped["image"][0, :, 1].eq(0).all()
    # the finding now sits where the patient's LEFT lung is read: its scores go to D, E, F
    assert flipped["label"].tolist() == [0, 0, 0, 3, 2, 1]
    kept = RandLateralFlipd("image", prob=0.0)({"image": image, "label": torch.tensor([3, 2, 1, 0, 0, 0])})
    assert torch.equal(kept["image"], image) and kept["label"].tolist() == [3, 2, 1, 0, 0, 0]


def test_the_rater_draw_trains_on_the_junior_scores_with_its_probability(shared_data):
    item = brixia_public_datalist(shared_data / "brixia-public")[0]
    senior, junior = item["label_senior"], item["label_junior"]
    labels = {}
    for prob in (0.0, 1.0):
        parser = ConfigParser()
        parser.read_config(str(REPO / "bundle" / "configs" / "train.json"))
        parser.update({"image_size": 64, "junior_label_prob": prob, "lateral_flip_prob": 0.0})
        labels[prob] = parser.get_parsed_content("train#preprocessing")(item)["label"]
    assert labels[0.0].tolist() == senior and labels[1.0].tolist() == junior
    assert labels[1.0].dtype == torch.long
    # the draw comes before the mirror, which swaps the drawn scores
    mirrored = RandLateralFlipd("image", prob=1.0)(RandRaterLabeld(prob=1.0)({"image": torch.zeros(1, 4, 4), "label": torch.tensor(senior),
                                                                             "label_junior": junior}))
    assert mirrored["label"].tolist() == swap_zone_sides(torch.tensor(junior)).tolist()
    with pytest.raises(KeyError, match="x.png.*label_junior"):
        RandRaterLabeld(prob=1.0)({"image_path": "x.png", "label": torch.tensor(senior)})


def test_swapping_zone_sides_twice_is_the_identity_for_scores_and_probabilities():
    probs = torch.rand(2, 6, 4)
    assert torch.equal(swap_zone_sides(swap_zone_sides(probs)), probs)
    assert torch.equal(swap_zone_sides(probs)[:, 0], probs[:, 3])
    assert swap_zone_sides(np.array([1, 2, 3, 4, 5, 6])).tolist() == [4, 5, 6, 1, 2, 3]


def test_patient_folds_keep_each_patient_on_one_side_and_cover_every_image():
    rng = np.random.default_rng(0)
    items = [{"image": f"{i}.png", "patient_id": str(i // 3) if i < 40 else "", "label": rng.integers(0, 4, 6).tolist()}
             for i in range(50)]
    folds = patient_folds(items, n_folds=5, seed=0)
    assert len(folds) == 5
    tested = [item["image"] for _, test in folds for item in test]
    assert sorted(tested) == sorted(i["image"] for i in items)  # every image is tested exactly once
    for train, test in folds:
        train_patients = {i["patient_id"] for i in train if i["patient_id"]}
        assert not train_patients & {i["patient_id"] for i in test if i["patient_id"]}


def test_cohen_mapping_recovers_a_linear_relation_and_clips_to_the_ranges():
    rng = np.random.default_rng(1)
    probs = rng.dirichlet(np.ones(4) * 0.5, size=(80, 6))
    x = severity_features(probs)
    extent = np.clip(0.9 * x[:, 0] + 0.1 * x[:, 1], 0, 8)
    opacity = np.clip(0.3 * x[:, 1], 0, 6)
    mapping = CohenSeverityMapping().fit(probs, extent, opacity)
    predicted = mapping.predict(probs)
    assert np.abs(predicted["geographic_extent"] - extent).mean() < 0.3
    assert np.abs(predicted["opacity"] - opacity).mean() < 0.3
    severe = np.zeros((1, 6, 4))
    severe[..., 3] = 1
    far = CohenSeverityMapping({"geographic_extent": [0, 5, 5], "opacity": [0, 5, 5]}).predict(severe)
    assert far["geographic_extent"][0] == 8 and far["opacity"][0] == 6  # clipped to Cohen et al.'s maxima
    scores = cross_validated_mae(probs, extent, opacity, groups=np.arange(80) // 2)
    assert scores["geographic_extent_mae"] < scores["geographic_extent_mae_constant"]


def test_cohen_cross_validation_keeps_each_patients_images_on_one_side(monkeypatch):
    """Images of one patient have near-identical scores: a fold that splits them would learn the answer."""
    rng = np.random.default_rng(2)
    probs, groups = rng.dirichlet(np.ones(4), size=(40, 6)), np.repeat(np.arange(20), 2)
    folds, fit = [], CohenSeverityMapping.fit

    def recording_fit(self, p, extent, opacity):
        folds.append({i for i in range(40) if any(np.array_equal(probs[i], q) for q in p)})
        return fit(self, p, extent, opacity)

    monkeypatch.setattr(CohenSeverityMapping, "fit", recording_fit)
    cross_validated_mae(probs, rng.uniform(0, 8, 40), rng.uniform(0, 6, 40), groups=groups)
    assert [len(rows) for rows in folds] == [32] * 5
    for rows in folds:  # a fold's training images are whole patients
        assert rows == {i for i in range(40) if groups[i] in set(groups[list(rows)])}


def test_the_lung_max_input_is_the_expected_worst_zone_of_each_lung_summed():
    certain = np.zeros((1, 6, 4))
    certain[0, range(6), [1, 3, 0, 0, 2, 1]] = 1  # right lung (A-C) 1, 3, 0; left lung (D-F) 0, 2, 1
    np.testing.assert_allclose(severity_features(certain, ("lung_max",)), [[3 + 2]])
    # zones independent: a lung whose two zones are each 0 or 2 at even odds has its worst zone 2 with probability 3/4
    p = np.zeros((1, 6, 4))
    p[0, :, 0] = 1
    p[0, [0, 1], 0], p[0, [0, 1], 2] = 0.5, 0.5
    np.testing.assert_allclose(severity_features(p, ("lung_max",)), [[1.5]])


def test_a_cohen_mapping_with_other_inputs_round_trips_through_its_file(tmp_path):
    probs = np.random.default_rng(3).dirichlet(np.ones(4), size=(12, 6))
    features = ("involved", "expected_global", "lung_max")
    mapping = CohenSeverityMapping(features=features).fit(probs, np.linspace(0, 8, 12), np.linspace(0, 6, 12))
    assert len(mapping.coefficients["opacity"]) == 4
    loaded = CohenSeverityMapping.load(mapping.save(tmp_path / "cohen_severity.json"))
    assert loaded.features == features
    np.testing.assert_allclose(loaded.predict(probs)["opacity"], mapping.predict(probs)["opacity"])
    with pytest.raises(ValueError, match="unknown inputs"):
        CohenSeverityMapping(features=("involved", "whatever"))


def test_cohen_mapping_round_trips_through_its_file_and_is_found_beside_the_weights(tmp_path):
    mapping = CohenSeverityMapping({"geographic_extent": [0.5, 1.0, 0.1], "opacity": [0.2, 0.0, 0.3]}, fitted_on=55)
    mapping.save(tmp_path / "cohen_severity.json")
    loaded = mapping_beside(tmp_path / "model.pt")
    assert loaded is not None and loaded.coefficients == mapping.coefficients and loaded.fitted_on == 55
    assert mapping_beside(tmp_path / "elsewhere" / "model.pt") is None
    # marked as fitted for one network's scoring stage, it is refused for another's
    network = BSNet()
    mapping.fitted_for = stage_fingerprint(network, scoring=True)
    mapping.save(tmp_path / "cohen_severity.json")
    assert mapping_beside(tmp_path / "model.pt", network).fitted_for == mapping.fitted_for
    with torch.no_grad():
        network.scoring.classifiers[0].blocks[0].conv.weight.add_(0.01)
    assert mapping_beside(tmp_path / "model.pt", network) is None and mapping_beside(tmp_path / "model.pt") is not None
    (tmp_path / "bad.json").write_text(json.dumps({"features": ["x"], "coefficients": {}}))
    with pytest.raises(ValueError, match="bad.json"):
        CohenSeverityMapping.load(tmp_path / "bad.json")


def test_summary_reports_both_raters_and_per_fold_numbers():
    predictions = []
    for k in range(2):
        for i in range(4):
            label = [i % 4] * 6
            probs = np.eye(4)[label]
            predictions.append({"fold": k, "label_senior": label, "label_junior": [0] * 6,
                                "probabilities": probs.tolist(), "probabilities_tta": probs.tolist()})
    summary = summarise_predictions(predictions)
    assert summary["plain"]["zone_mae"] == 0 and summary["plain"]["fold_zone_mae"] == [0, 0]
    assert summary["junior_vs_senior"]["zone_mae"] == pytest.approx(1.5)


def _prediction_rows(truth: np.ndarray, predicted: np.ndarray, patients: list[str]) -> list[dict]:
    """Out-of-fold rows as cross_validation.prediction_rows writes them, with one-hot probabilities."""
    return [{"filename": f"img{i}.png", "patient_id": patients[i], "fold": i % 2, "label_senior": truth[i].tolist(),
             "label_junior": truth[i].tolist(), "probabilities": np.eye(4)[predicted[i]].tolist(),
             "probabilities_tta": np.eye(4)[predicted[i]].tolist()} for i in range(len(truth))]


def test_comparing_two_cross_validations_gives_the_difference_with_a_patient_bootstrap_interval():
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 4, (40, 6))
    patients = [f"p{i // 2}" for i in range(40)]
    off_by_one = _prediction_rows(truth, np.where(truth < 3, truth + 1, 2), patients)
    exact = _prediction_rows(truth, truth, patients)
    better = compare_predictions(off_by_one, exact[::-1], n_resamples=2000)  # matched by file name, not order
    assert better["n_images"] == 40 and better["n_patients"] == 20
    assert better["zone_mae"]["baseline"] == 1 and better["zone_mae"]["candidate"] == 0
    assert better["zone_mae"]["difference"] == -1 and better["zone_mae"]["folds_lower"] == 2
    assert better["global_mae"]["difference"] < 0 and better["global_mae"]["ci95"][1] < 0
    same = compare_predictions(exact, exact, n_resamples=2000)
    assert same["zone_mae"]["difference"] == 0 and same["zone_mae"]["ci95"] == [0, 0]
    with pytest.raises(ValueError, match="img39.png"):
        compare_predictions(exact, exact[:-1])


def test_the_comparison_resamples_patients_not_images():
    """The same per-image gains are less certain when they all come from one patient's images."""
    truth = np.zeros((40, 6), int)
    baseline = _prediction_rows(truth, np.ones_like(truth), [f"p{i}" for i in range(40)])
    improved = np.ones_like(truth)
    improved[:10] = 0  # ten images scored right
    one_patient = ["p0" if i < 10 else f"p{i}" for i in range(40)]  # the ten from one patient
    ten_patients = [f"p{i}" for i in range(40)]
    spread = compare_predictions(baseline, _prediction_rows(truth, improved, ten_patients), n_resamples=2000)
    for row in baseline:
        row["patient_id"] = one_patient[int(row["filename"][3:-4])]
    clustered = compare_predictions(baseline, _prediction_rows(truth, improved, one_patient), n_resamples=2000)
    assert clustered["zone_mae"]["difference"] == spread["zone_mae"]["difference"] == -0.25
    assert clustered["n_patients"] == 31 and spread["n_patients"] == 40
    width = lambda r: r["zone_mae"]["ci95"][1] - r["zone_mae"]["ci95"][0]  # noqa: E731
    assert width(clustered) > 1.5 * width(spread)


def test_the_comparison_script_tables_every_run_against_the_baseline(tmp_path):
    truth = np.random.default_rng(1).integers(0, 4, (12, 6))
    patients = [f"p{i}" for i in range(12)]
    (tmp_path / "side").mkdir()
    (tmp_path / "cv_head_predictions.json").write_text(json.dumps(_prediction_rows(truth, np.clip(truth + 1, 0, 3), patients)))
    (tmp_path / "side" / "cv_exact_predictions.json").write_text(json.dumps(_prediction_rows(truth, truth, patients)))
    out = subprocess.run([sys.executable, str(REPO / "bundle" / "scripts" / "compare_recipes.py"), "--logs", str(tmp_path),
                          "--out", str(tmp_path / "comparison.json"), "--resamples", "500"], capture_output=True, text=True, check=True).stdout
    assert "| side/cv_exact |" in out and "| side/cv_exact + TTA |" in out
    comparison = json.loads((tmp_path / "comparison.json").read_text())
    assert comparison["baseline"] == "cv_head" and comparison["comparisons"]["side/cv_exact"]["zone_mae"]["candidate"] == 0
    missing = subprocess.run([sys.executable, str(REPO / "bundle" / "scripts" / "compare_recipes.py"), "--logs", str(tmp_path),
                              "--baseline", "cv_nothing"], capture_output=True, text=True)
    assert missing.returncode != 0 and "cv_nothing" in missing.stderr


def test_the_comparison_script_measures_each_runs_own_test_time_mirroring(tmp_path):
    truth = np.random.default_rng(2).integers(0, 4, (12, 6))
    rows = _prediction_rows(truth, np.clip(truth + 1, 0, 3), [f"p{i}" for i in range(12)])
    for row, exact in zip(rows, _prediction_rows(truth, truth, [f"p{i}" for i in range(12)])):
        row["probabilities_tta"] = exact["probabilities"]  # the mirror corrects every score
    (tmp_path / "cv_mirrored_predictions.json").write_text(json.dumps(rows))
    (tmp_path / "cv_same_predictions.json").write_text(json.dumps(_prediction_rows(truth, truth, [f"p{i}" for i in range(12)])))
    subprocess.run([sys.executable, str(REPO / "bundle" / "scripts" / "compare_recipes.py"), "--logs", str(tmp_path), "--tta-effect",
                    "--out", str(tmp_path / "tta.json"), "--resamples", "500"], capture_output=True, text=True, check=True)
    effect = json.loads((tmp_path / "tta.json").read_text())["comparisons"]
    mirrored, same = effect["cv_mirrored + TTA"]["zone_mae"], effect["cv_same + TTA"]["zone_mae"]
    assert mirrored["baseline"] == pytest.approx(np.mean(np.clip(truth + 1, 0, 3) - truth)) and mirrored["candidate"] == 0
    assert mirrored["difference"] < 0 and same["difference"] == 0


def _compare_draw_sets(baseline: Path, candidate: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """``compare_draw_sets.py`` on two sets of draws ("seed 0", "seed 1") that are both the same pair of files."""
    pairs = [arg for label in ("seed 0", "seed 1") for arg in ("--pair", label, str(baseline), str(candidate))]
    return subprocess.run([sys.executable, str(REPO / "bundle" / "scripts" / "compare_draw_sets.py"), *pairs, "--resamples", "200",
                           "--out", str(out), *options], capture_output=True, text=True)


def test_the_draw_set_comparison_applies_the_shipping_rule_to_every_set(tmp_path):
    """Zone errors that cancel in the sum: the baseline is off by +1 in zone A and -1 in zone B (global exact),
    one candidate only by +1 in zone A (lower zone MAE, higher global MAE), another exact."""
    truth = np.random.default_rng(3).integers(1, 3, (12, 6))
    patients = [f"p{i}" for i in range(12)]
    files = {}
    for name, (error_a, error_b) in (("baseline", (1, -1)), ("one_sided", (1, 0)), ("exact", (0, 0))):
        predicted = truth + np.array([error_a, error_b, 0, 0, 0, 0])
        files[name] = tmp_path / f"{name}.json"
        files[name].write_text(json.dumps(_prediction_rows(truth, predicted, patients)))

    def rule(candidate: str) -> dict:
        out = tmp_path / f"{candidate}_decision.json"
        _compare_draw_sets(files["baseline"], files[candidate], out).check_returncode()
        return json.loads(out.read_text())

    one_sided = rule("one_sided")
    assert set(one_sided["pairs"]) == {"seed 0", "seed 1"} and one_sided["rule"]["key"] == "probabilities_tta"
    assert one_sided["rule"]["mean_zone_mae"] == {"baseline": round(2 / 6, 4), "candidate": round(1 / 6, 4)}
    assert one_sided["rule"]["mean_global_mae"] == {"baseline": 0, "candidate": 1}
    assert one_sided["rule"]["zone_mae_lower_on_every_set"] and not one_sided["rule"]["mean_global_mae_at_most_0.03_higher"]
    assert not one_sided["rule"]["passes"]
    assert rule("exact")["rule"]["passes"]


def test_the_draw_set_comparison_judges_the_served_ratings_no_worse_than_the_baseline(tmp_path):
    """The nested runs' served ratings (the zone context stage's zone scores): a candidate whose served zone MAE
    is 2/72 higher on the mean passes ``no_worse`` with a margin of 0.03 and fails with 0.02; ``better`` fails it."""
    truth = np.random.default_rng(4).integers(1, 3, (12, 6))
    patients = [f"p{i}" for i in range(12)]
    paths = {}
    for name, wrong_rows in (("baseline", []), ("candidate", [0, 1])):  # the candidate is off by one in zone 0 of 2 of 12 images
        rows = _prediction_rows(truth, truth, patients)
        for i, row in enumerate(rows):
            served = truth[i].copy()
            served[0] += i in wrong_rows
            row["scores_context"] = row["scores_context_tta"] = served.tolist()
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(rows))
    plain_file = tmp_path / "no_served.json"
    plain_file.write_text(json.dumps(_prediction_rows(truth, truth, patients)))

    decision = tmp_path / "decision.json"

    def decide(*options: str, candidate: Path = paths["candidate"]) -> subprocess.CompletedProcess:
        decision.unlink(missing_ok=True)
        return _compare_draw_sets(paths["baseline"], candidate, decision, "--key", "scores_context_tta", *options)

    def rule(*options: str) -> dict:
        decide(*options).check_returncode()
        return json.loads(decision.read_text())

    loose = rule("--rule", "no_worse", "--zone-margin", "0.03", "--global-margin", "0.2")
    assert loose["rule"]["rule"] == "no_worse" and loose["rule"]["key"] == "scores_context_tta"
    assert loose["rule"]["mean_zone_mae"] == {"baseline": 0, "candidate": round(2 / 72, 4)}
    assert loose["rule"]["mean_global_mae"] == {"baseline": 0, "candidate": round(2 / 12, 4)}
    assert loose["rule"]["passes"] and "zone_mae_lower_on_every_set" not in loose["rule"]
    assert loose["pairs"]["seed 0"]["scores_context"]["zone_mae"]["difference"] == pytest.approx(2 / 72, abs=1e-4)
    assert loose["pairs"]["seed 0"]["probabilities_tta"]["zone_mae"]["difference"] == 0  # the first stage's: equal
    tight = rule("--rule", "no_worse", "--zone-margin", "0.02", "--global-margin", "0.2")
    assert not tight["rule"]["mean_zone_mae_at_most_0.02_higher"] and not tight["rule"]["passes"]
    assert not rule("--rule", "better", "--zone-margin", "0", "--global-margin", "0.2")["rule"]["passes"]
    missing = decide("--rule", "no_worse", candidate=plain_file)
    assert missing.returncode != 0 and "no_served.json" in missing.stderr and "scores_context_tta" in missing.stderr
    assert not decision.exists()


def test_the_weight_soup_is_the_mean_of_the_checkpoints_and_loads_as_a_bsnet(tmp_path):
    torch.manual_seed(0)
    first, second = BSNet().state_dict(), BSNet().state_dict()
    second["encoder.bn1.num_batches_tracked"] = torch.tensor(5)
    for i, state in enumerate((first, second)):
        torch.save(state, tmp_path / f"{i}.pt")
    script = [sys.executable, str(REPO / "bundle" / "scripts" / "average_checkpoints.py")]
    subprocess.run([*script, str(tmp_path / "0.pt"), str(tmp_path / "1.pt"), "--out", str(tmp_path / "soup" / "soup.pt")], check=True)
    soup = torch.load(tmp_path / "soup" / "soup.pt", weights_only=True)
    key = "encoder.conv1.weight"
    assert not torch.equal(first[key], second[key])
    assert torch.allclose(soup[key], (first[key] + second[key]) / 2, atol=1e-7) and soup[key].dtype == torch.float32
    assert soup["encoder.bn1.num_batches_tracked"] == first["encoder.bn1.num_batches_tracked"]  # integers: the first's
    load_weights(BSNet(), tmp_path / "soup" / "soup.pt")
    del second[key]
    torch.save(second, tmp_path / "1.pt")
    mismatch = subprocess.run([*script, str(tmp_path / "0.pt"), str(tmp_path / "1.pt"), "--out", str(tmp_path / "bad.pt")], capture_output=True, text=True)
    assert mismatch.returncode != 0 and not (tmp_path / "bad.pt").exists()
    assert f"{tmp_path / '1.pt'} is not the same network as {tmp_path / '0.pt'}: {key} differs" in mismatch.stderr
    torch.save({**first, key: torch.zeros(1)}, tmp_path / "1.pt")  # the same names, another shape
    reshaped = subprocess.run([*script, str(tmp_path / "0.pt"), str(tmp_path / "1.pt"), "--out", str(tmp_path / "bad.pt")], capture_output=True, text=True)
    assert reshaped.returncode != 0 and f"{key} differs" in reshaped.stderr and not (tmp_path / "bad.pt").exists()


def recipe_command(shared_data, tmp_path, *arguments: str) -> list[str]:
    """``train_recipe.py`` on the smoke schedule and the CPU, working and logging under ``tmp_path``."""
    return [sys.executable, str(REPO / "bundle" / "scripts" / "train_recipe.py"), "--data", str(shared_data), "--work", str(tmp_path / "work"),
            "--logs", str(tmp_path / "logs"), "--schedule", "smoke", "--device", "cpu", *arguments]


def test_the_whole_recipe_runs_and_resumes_on_tiny_data(shared_data, tmp_path):
    """segmentation -> alignment -> decoder-only segmentation -> segmentation continued with the encoder -> 2-fold CV -> final model -> Cohen mapping -> half
    export -> its lung Dice, 64 px."""
    steps = ["segmentation", "alignment", "segmentation_decoder", "segmentation_continued", "cv:head_flip", "final:auto", "cohen", "export", "evaluate_segmentation"]
    command = recipe_command(shared_data, tmp_path, "--limit", "10", "--folds", "2", *steps)
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    logs = tmp_path / "logs"
    for name in ("segmentation", "alignment", "cv_head_flip", "final", "cohen", "export"):
        assert (logs / f"{name}.json").is_file(), name
    assert 0 <= json.loads((logs / "segmentation.json").read_text())["test"]["dice_mean"] <= 1
    # stages a and b train under bfloat16 autocast by default where the CPU has bfloat16 instructions
    for name in ("segmentation", "alignment", "segmentation_decoder", "segmentation_continued"):
        assert json.loads((logs / f"{name}.json").read_text())["bfloat16"] is cpu_has_bfloat16(), name
    models = tmp_path / "work" / "models"
    # the two continuation steps train the lung decoder alone, then with the encoder, each without the
    # masks that have holes cut out, and leave in alignment.pt (what the scoring steps start from) their
    # checkpoint, with the alignment and scoring stages as they were
    with_holes = [d for d in lungseg_datalist(shared_data / "lungseg", split="train") if d["mask_has_holes"]]
    for stage, trained in (("segmentation_decoder", {"segmentation"}), ("segmentation_continued", {"encoder", "segmentation"})):
        log = json.loads((logs / f"{stage}.json").read_text())
        assert log["n_train"] == 10 and log["n_left_out_with_holes"] == len(with_holes) > 0
        assert {"test", "test_before"} <= log.keys()
        old = torch.load(models / f"alignment_before_{stage}.pt", map_location="cpu")
        new = torch.load(models / f"{stage}.pt", map_location="cpu")
        changed = {key.split(".")[0] for key in old if not torch.equal(old[key], new[key])}
        assert changed == trained, stage
    assert (models / "alignment_before_segmentation_continued.pt").read_bytes() == (models / "segmentation_decoder.pt").read_bytes()
    assert (models / "segmentation_continued.pt").read_bytes() == (models / "alignment.pt").read_bytes()
    shipped_dice = json.loads((logs / "evaluate_segmentation.json").read_text())
    assert shipped_dice["n"] == 10 and 0 <= shipped_dice["cleaned"]["dice_mean"] <= 1
    cv = json.loads((logs / "cv_head_flip.json").read_text())
    assert cv["n_images"] == 10 and len(cv["folds"]) == 2 and "zone_mae" in cv["tta"]
    predictions = json.loads((logs / "cv_head_flip_predictions.json").read_text())
    assert len(predictions) == 10 and np.allclose(np.array(predictions[0]["probabilities"]).sum(-1), 1, atol=1e-3)
    assert json.loads((logs / "final.json").read_text())["variant"] == "head_flip"
    mapping = CohenSeverityMapping.load(models / "cohen_severity.json")
    assert mapping.fitted_on == json.loads((logs / "cohen.json").read_text())["n"]
    # marked with the zone classifier of the model.pt it was fitted for (before the export's half precision)
    assert mapping.fitted_for == stage_fingerprint(load_weights(BSNet(), models / "model.pt"), scoring=True)
    export = json.loads((logs / "export.json").read_text())
    assert export["bytes_half"] < 0.55 * export["bytes_float32"]
    # a second run finds every step done and changes nothing
    before = (logs / "cv_head_flip.json").read_text()
    result = subprocess.run(command, check=True, capture_output=True, text=True, timeout=120)
    assert "done before" in result.stderr and (logs / "cv_head_flip.json").read_text() == before


def test_the_recipe_trains_in_float32_when_told_to(shared_data, tmp_path):
    subprocess.run(recipe_command(shared_data, tmp_path, "--limit", "6", "--no-bfloat16", "segmentation"), check=True, capture_output=True, timeout=300)
    assert json.loads((tmp_path / "logs" / "segmentation.json").read_text())["bfloat16"] is False


def test_the_lung_threshold_script_chooses_on_validation_images_and_reports_the_test_images(shared_data, tmp_path):
    """``lung_threshold.py``: the threshold with the best cleaned Dice on stage a's validation images
    (ties: the one nearest 0.5), and every threshold's Dice on the test images, 0.5 always among them."""
    out = tmp_path / "threshold.json"
    subprocess.run([sys.executable, str(REPO / "bundle" / "scripts" / "lung_threshold.py"), "--data", str(shared_data), "--out", str(out),
                    "--limit", "3", "--image-size", "128", "--thresholds", "0.3", "0.7"], check=True, capture_output=True, timeout=600)
    result = json.loads(out.read_text())
    assert set(result["cleaned"]) == {"0.30", "0.50", "0.70"}
    validation = {float(t): v["validation"]["dice_mean"] for t, v in result["cleaned"].items()}
    best = max(validation.values())
    assert result["chosen_on_validation"] == min((t for t, m in validation.items() if m == best), key=lambda t: abs(t - 0.5))
    for row in result["cleaned"].values():
        assert row["validation"]["n"] == row["test"]["n"] == 3 and 0 <= row["test"]["dice_min"] <= row["test"]["dice_mean"] <= 1
    chosen = result["cleaned"][f"{result['chosen_on_validation']:.2f}"]["test"]
    assert result["test_difference_from_0.5"]["dice_mean"] == pytest.approx(chosen["dice_mean"] - result["cleaned"]["0.50"]["test"]["dice_mean"])
    # a higher threshold keeps fewer pixels, so the Dice moves with it: the thresholds are really applied
    assert len({row["test"]["dice_mean"] for row in result["cleaned"].values()}) == 3
