"""The whole BS-Net training recipe, step by step, resumable: what produced ``models/model.pt``.

Steps (each writes ``LOGS/<step>.json``; a step whose log exists is skipped, and a killed step
resumes from its last epoch checkpoint when started again):

    segmentation      stage a on lungseg/ (train split), then lung Dice on its test split
    alignment         stage b on the same masks, then Dice of aligned vs canonical masks on the test split
    segmentation_decoder  stage a continued on alignment.pt: the U-Net++ decoder alone, the encoder
                      frozen (its features, and so what the scoring stage reads of them, stay as they
                      are); alignment.pt then holds the new decoder (the one before is kept aside)
    segmentation_continued  the same with the encoder trained too: better lung maps, but new features,
                      so the scoring stage must be fitted again (cv:pooled, final:pooled) on them
    cv:VARIANT        patient-grouped 5-fold cross-validation of one scoring recipe on brixia-public/
                      (``pooled``: the pooled linear zone classifier, fitted on cached frozen-stage outputs)
    final:VARIANT     the shipped model: that recipe on all 138 images ("auto": the best cross-validated);
                      ``pooled`` also keeps what it was fitted on in model_fit_samples.npz, for the app's refits
    cohen             Cohen et al.'s extent/opacity mapping fitted on the out-of-fold probabilities
    context           the zone context stage (the second rating stage, zone_context.json) fitted on
                      cv:pooled's out-of-fold probabilities
    evaluate_final    the shipped model against both raters, training and inner-validation images apart
    evaluate_segmentation  the shipped model's lung Dice on the lungseg test split, raw and cleaned
    export            model.pt stored in half precision (model_half.pt), and what that changes

    python bundle/scripts/train_recipe.py --data DATA --work WORK --logs bundle/logs \\
        --schedule gpu segmentation alignment cv:head cv:pooled final:auto cohen context evaluate_final export

``DATA`` holds ``lungseg/`` and ``brixia-public/`` as ``bsnet prepare-data`` builds them (or the
team's ``../shared/data``). ``--schedule cpu`` keeps the GPU recipe but with the data loading a
two-core machine can sustain (stage c alone then takes hours per fold); ``cpu_cached`` trains the
head-only variants of stage c on cached outputs of the frozen stages (``monai_bsnet.frozen_head``:
each image in 6 fixed copies, 2 random draws and their mirrors, instead of a fresh draw per epoch),
about 9 min per fold on two cores; ``cpu_long`` trains stage a from scratch for 60 epochs on a CPU (about
2.7 min per epoch on two cores under bfloat16, with glibc's allocator keeping freed memory, below);
``smoke`` and ``smoke_cached`` are the tiny runs the tests use.

On Linux, stage a's large activations are freed and allocated again at every step, and glibc returns
them to the system each time: with the default allocator settings about half of a CPU step went to
page faults (15 s instead of 6.5 s per step of 16 images at 512 px on two cores, with two loader
processes). Keeping freed memory removes that::

    MALLOC_MMAP_THRESHOLD_=4294967296 MALLOC_TRIM_THRESHOLD_=68719476736 MALLOC_TOP_PAD_=1073741824 \
        python bundle/scripts/train_recipe.py ... --schedule cpu_long segmentation

The process then keeps its peak memory (about 12 GB for stage a), so use it without data-loading
processes (``cpu_long`` has none): each forked one would copy that heap.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from monai_bsnet.cross_validation import RECIPES, ScoringRecipe, cross_validate, run_bundle_stage, train_scoring
from monai_bsnet.data import brixia_public_datalist, cohen_scores_of, cohen_severity_datalist, lungseg_datalist
from monai_bsnet.training import cpu_has_bfloat16, patient_groups
from monai_bsnet.zones import median_scores

SCHEDULES = {
    # stage a/b epochs, data-loading workers, mixed precision, image size, scoring-epoch scale, decoder-only epochs,
    # epochs of stage a continued with the encoder
    "gpu": {"segmentation_epochs": 50, "alignment_epochs": 60, "num_workers": 4, "amp": True, "image_size": 512, "scale": 1.0, "decoder_epochs": 30, "continuation_epochs": 30},
    "gpu_quick": {"segmentation_epochs": 15, "alignment_epochs": 25, "num_workers": 14, "amp": True, "image_size": 512, "scale": 0.75, "decoder_epochs": 15, "continuation_epochs": 15},
    "cpu_quick": {"segmentation_epochs": 15, "alignment_epochs": 25, "num_workers": 2, "amp": False, "image_size": 512, "scale": 0.75, "decoder_epochs": 10, "continuation_epochs": 10},
    # stage c on cached outputs of the frozen stages (monai_bsnet.frozen_head): 2 random draws per image
    "cpu_cached": {"segmentation_epochs": 15, "alignment_epochs": 25, "num_workers": 2, "amp": False, "image_size": 512, "scale": 0.4,
                   "cached_draws": 2, "decoder_epochs": 10, "continuation_epochs": 16},
    "cpu": {"segmentation_epochs": 30, "alignment_epochs": 60, "num_workers": 2, "amp": False, "image_size": 512, "scale": 0.5, "decoder_epochs": 10, "continuation_epochs": 16},
    "smoke": {"segmentation_epochs": 1, "alignment_epochs": 1, "num_workers": 0, "amp": False, "image_size": 64, "scale": 0.0, "decoder_epochs": 1, "continuation_epochs": 1},
    "smoke_cached": {"segmentation_epochs": 1, "alignment_epochs": 1, "num_workers": 0, "amp": False, "image_size": 64, "scale": 0.0,
                     "cached_draws": 1, "pooled_draws": 1, "decoder_epochs": 1, "continuation_epochs": 1},
}

# cpu_cached with stage a from scratch for as long as the GPU run that reached 0.954 (60 epochs), resumed
# across sessions; no loader processes, as the allocator setting of the module's docstring needs
SCHEDULES["cpu_long"] = {**SCHEDULES["cpu_cached"], "segmentation_epochs": 60, "num_workers": 0}


#: The recipe fitted rather than trained: the pooled linear zone classifier (``monai_bsnet.pooled_head``),
#: a logistic regression on the frozen stages' cached outputs, whatever the schedule.
POOLED = "pooled"
#: Which zone probabilities of the out-of-fold predictions Cohen et al.'s mapping and the zone context stage
#: are fitted on: those of the default mirror test-time augmentation, as inference computes them.
SERVED_PROBABILITIES = "probabilities_tta"
#: Random augmentation draws per image that the pooled head is fitted on (each with its mirror, beside the
#: plain image and its mirror); the smoke schedules set ``pooled_draws`` lower.
POOLED_DRAWS = 2


def _engine_settings(sched) -> dict:
    """The schedule's settings of a bundle training stage's engines: data-loading processes and precision."""
    return {"num_workers": sched["num_workers"], "amp": sched["amp"], "bfloat16": sched["bfloat16"]}


def step_segmentation(args, sched, models: Path) -> dict:
    start = time.perf_counter()
    train = lungseg_datalist(args.data / "lungseg", split="train")[: args.limit]
    result = run_bundle_stage(
        ["train.json", "train_segmentation.json"],
        {"datalist": train, "ckpt_dir": str(models), "output_dir": str(args.work / "logs"), "max_epochs": sched["segmentation_epochs"],
         "batch_size": 16, "image_size": sched["image_size"], **_engine_settings(sched)},
    )
    result.update(train_seconds=round(time.perf_counter() - start, 1), bfloat16=sched["bfloat16"])
    result["test"] = segmentation_test_dice(args, models / "segmentation.pt", sched["image_size"])
    return result


@torch.inference_mode()
def lung_maps(args, ckpt: Path, image_size: int, items: list[dict]):
    """``ckpt``'s lung probability map (1, 1, h, w) of each of ``items`` (lungseg image/mask pairs) at the
    network's resolution, with the item's mask resized to it: pairs, one at a time."""
    from monai.transforms import Resize

    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.transforms import LoadCXR, cxr_preprocessing

    network = load_weights(BSNet(), ckpt).to(args.device).eval()
    load, preprocess, resize = LoadCXR(), cxr_preprocessing(image_size), Resize((image_size, image_size), mode="nearest")
    for item in items:
        image = preprocess(load(item["image"])).as_tensor()[None].to(args.device)
        yield torch.sigmoid(network.outputs(image).lung_logits.float()).cpu(), resize(load(item["mask"])).as_tensor()[None]


def segmentation_test_dice(args, ckpt: Path, image_size: int) -> dict:
    """Lung Dice of ``ckpt`` on lungseg's test split (network resolution, threshold 0.5): of the
    network's map, and of the cleaned map the outputs are made from (two largest regions, holes filled)."""
    from monai_bsnet.metrics import lung_dice
    from monai_bsnet.transforms import clean_lung_probability

    dice, cleaned = [], []
    for lung, mask in lung_maps(args, ckpt, image_size, lungseg_datalist(args.data / "lungseg", split="test")[: args.limit]):
        dice.append(float(lung_dice(lung, mask)[0]))
        cleaned.append(float(lung_dice(clean_lung_probability(lung[0])[None], mask)[0]))
    return {"n": len(dice), **_dice_summary(dice), "cleaned": _dice_summary(cleaned)}


def step_segmentation_decoder(args, sched, models: Path) -> dict:
    """Train the lung decoder further with the encoder frozen, from ``alignment.pt``.

    Why: stage a's encoder is shared with the scoring stage, so training it again would change the
    features every scoring head was trained on; the decoder alone can improve the lung masks, and a
    CPU affords it (channels-last convolutions: about 5 min per epoch of 252 images on 2 cores).
    """
    return _continue_segmentation(args, sched, models, "segmentation_decoder", ["encoder", "alignment", "scoring"],
                                  sched["decoder_epochs"])


def step_segmentation_continued(args, sched, models: Path) -> dict:
    """Train the encoder and the lung decoder further, from ``alignment.pt``.

    Why: the decoder alone levels off near a test Dice of 0.94; a stage a trained for 60 epochs
    reached 0.954. The encoder's features change, so the scoring stage must be fitted again on them
    (``cv:pooled`` after this step) before the result can be shipped.
    """
    return _continue_segmentation(args, sched, models, "segmentation_continued", ["alignment", "scoring"],
                                  sched["continuation_epochs"])


def _continue_segmentation(args, sched, models: Path, stage: str, frozen_stages: list[str], epochs: int) -> dict:
    """Stage a continued from ``alignment.pt`` with ``frozen_stages`` left as they are: learning rate
    3e-4, cosine decay over ``epochs``. The checkpoint before is kept as ``alignment_before_<stage>.pt``
    and ``alignment.pt`` then holds the best epoch, so that later steps (a cache of the frozen stages,
    ``cv:pooled``) read it. The scoring stage still reads the lung map (alignment and zone masks), so
    a scoring head must be measured again on the new ``alignment.pt``. Masks whose annotators cut a
    region out (``mask_has_holes``) are left out of training: the network should not learn holes
    that are lung.
    """
    start = time.perf_counter()
    masks = lungseg_datalist(args.data / "lungseg", split="train")
    train = [d for d in masks if not d["mask_has_holes"]][: args.limit]
    before = models / f"alignment_before_{stage}.pt"
    if not before.is_file():
        shutil.copy(models / "alignment.pt", before)
    result = run_bundle_stage(
        ["train.json", "train_segmentation.json"],
        {"datalist": train, "ckpt_dir": str(models), "output_dir": str(args.work / "logs"), "stage": stage,
         "best_ckpt": f"{stage}.pt", "init_ckpt": str(before), "init_required": True,
         "frozen_stages": frozen_stages, "max_epochs": epochs,
         "learning_rate": 3e-4, "batch_size": 8, "image_size": sched["image_size"], **_engine_settings(sched)},
    )
    result.update(train_seconds=round(time.perf_counter() - start, 1), n_train=len(train),
                  n_left_out_with_holes=sum(d["mask_has_holes"] for d in masks), frozen_stages=frozen_stages, bfloat16=sched["bfloat16"])
    result["test_before"] = segmentation_test_dice(args, before, sched["image_size"])
    result["test"] = segmentation_test_dice(args, models / f"{stage}.pt", sched["image_size"])
    shutil.copy(models / f"{stage}.pt", models / "alignment.pt")
    return result


def _dice_summary(dice: list[float]) -> dict:
    return {"dice_mean": float(np.mean(dice)), "dice_median": float(np.median(dice)), "dice_min": float(np.min(dice))}


def step_alignment(args, sched, models: Path) -> dict:
    start = time.perf_counter()
    masks = lungseg_datalist(args.data / "lungseg", split="train")[: args.limit]
    result = run_bundle_stage(
        ["train.json", "train_alignment.json"],
        {"datalist": [{"image": d["mask"], "label": d["mask"], "patient_id": d["patient_id"]} for d in masks],
         "ckpt_dir": str(models), "output_dir": str(args.work / "logs"), "max_epochs": sched["alignment_epochs"],
         **_engine_settings(sched)},
    )
    result.update(train_seconds=round(time.perf_counter() - start, 1), bfloat16=sched["bfloat16"])
    result["test"] = alignment_test_dice(args, models / "alignment.pt")
    return result


@torch.inference_mode()
def alignment_test_dice(args, ckpt: Path, repeats: int = 4) -> dict:
    """Dice between aligned and canonical masks of lungseg's test split, under the training distortions.

    The distortions are the stage's own random transforms with a fixed seed; the Dice of the
    distorted mask itself (no alignment) is the baseline that shows what the alignment adds.
    """
    from monai.bundle import ConfigParser
    from monai.utils import set_determinism

    from monai_bsnet.cross_validation import BUNDLE_CONFIGS
    from monai_bsnet.metrics import lung_dice
    from monai_bsnet.networks import BSNet, MaskAligner, load_weights

    parser = ConfigParser()
    parser.read_config([str(BUNDLE_CONFIGS / "train.json"), str(BUNDLE_CONFIGS / "train_alignment.json")])
    test = lungseg_datalist(args.data / "lungseg", split="test")[: args.limit]
    parser.update({"val_datalist": [{"image": d["mask"], "label": d["mask"]} for d in test] * repeats})
    set_determinism(seed=1234)
    dataset = parser.get_parsed_content("validate#dataset")
    aligner = MaskAligner(load_weights(BSNet(), ckpt)).to(args.device).eval()
    aligned, unaligned = [], []
    for item in dataset:
        mask, target = item["image"][None].to(args.device), item["label"][None]
        aligned.append(float(lung_dice(aligner(mask).cpu(), target)[0]))
        unaligned.append(float(lung_dice(mask.cpu(), target)[0]))
    return {"n": len(aligned), "dice_mean": float(np.mean(aligned)), "dice_median": float(np.median(aligned)),
            "dice_min": float(np.min(aligned)), "unaligned_dice_mean": float(np.mean(unaligned))}


def scoring_overrides(args, sched) -> dict:
    return {"num_workers": sched["num_workers"], "amp": sched["amp"], "image_size": sched["image_size"]}


def recipe_for(name: str, sched) -> ScoringRecipe:
    recipe = RECIPES[name]
    scale = sched["scale"]
    epochs = lambda n: max(1, round(n * scale)) if n else 0  # noqa: E731 - 0 keeps a phase off
    return replace(recipe, head_epochs=epochs(recipe.head_epochs), end_to_end_epochs=epochs(recipe.end_to_end_epochs),
                   batch_size=recipe.batch_size if scale else 2)


def brixia(args) -> list:
    return brixia_public_datalist(args.data / "brixia-public")[: args.limit]


def frozen_stage_cache(args, sched, models: Path, pooled: bool = False):
    """The outputs of stage b's frozen network on augmented copies of every image: whole for the trained
    heads (``cpu_cached``, ``cached_draws`` random draws), or only the pooled zone vectors that the pooled
    head is fitted on (``pooled_draws`` draws; 0.3 MB an image with 2 draws instead of 50 MB)."""
    from monai_bsnet.frozen_head import FrozenStageCache
    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.pooled_head import PooledFeatureCache

    ckpt = models / "alignment.pt"
    cache_class, folder, draws = (PooledFeatureCache, "pooled_stages", sched.get("pooled_draws", POOLED_DRAWS)) if pooled else (
        FrozenStageCache, "frozen_stages", sched.get("cached_draws", 2))
    return cache_class(load_weights(BSNet(), ckpt), args.work / folder, draws, sched["image_size"], device=args.device,
                       weights_id=hashlib.sha256(ckpt.read_bytes()).hexdigest())


def step_cv(args, sched, models: Path, variant: str) -> dict:
    work = args.work / f"cv_{variant}"
    if variant == POOLED:
        from monai_bsnet.pooled_head import cross_validate_pooled_head

        summary = cross_validate_pooled_head(brixia(args), frozen_stage_cache(args, sched, models, pooled=True), work, args.folds)
        shutil.copy(work / "predictions.json", args.logs / f"cv_{variant}_predictions.json")
        return summary
    recipe = recipe_for(variant, sched)
    if "cached_draws" in sched:
        from monai_bsnet.frozen_head import cross_validate_head

        summary = cross_validate_head(recipe, brixia(args), frozen_stage_cache(args, sched, models), work, args.folds)
    else:
        summary = cross_validate(recipe, brixia(args), models / "alignment.pt", work, args.folds,
                                 device=args.device, **scoring_overrides(args, sched))
    # the out-of-fold probabilities are small and are the evidence behind every cross-validated number
    shutil.copy(work / "predictions.json", args.logs / f"cv_{variant}_predictions.json")
    return summary


def step_final(args, sched, models: Path, variant: str) -> dict:
    if variant == "auto":
        variant = best_variant(args.logs)
    if variant == POOLED:
        from monai_bsnet.pooled_head import fit_final_pooled_head, fit_samples_path

        cache = frozen_stage_cache(args, sched, models, pooled=True)
        # what it is fitted on is kept beside it: the MONAI Label app refits it with a site's labels, and
        # Cohen et al.'s mapping with it on the images that have Cohen scores
        items, root = brixia(args), args.data / "brixia-public"
        log = fit_final_pooled_head(items, cache, samples_path=fit_samples_path(models / "model.pt"),
                                    cohen=cohen_scores_of(items, root / "cohen-severity.csv", root / "images"))
        torch.save(cache.bsnet.state_dict(), models / "model.pt")
        return {"variant": variant, "recipe": {"zone_classifier": "pooled_linear"}, "training": log}
    recipe = recipe_for(variant, sched)
    if "cached_draws" in sched:
        from monai_bsnet.frozen_head import train_final_head

        cache = frozen_stage_cache(args, sched, models)
        log = train_final_head(recipe, brixia(args), cache)
        torch.save(cache.bsnet.state_dict(), models / "model.pt")
    else:
        final_dir = args.work / "final"
        log = train_scoring(recipe, brixia(args), models / "alignment.pt", final_dir, **scoring_overrides(args, sched))
        shutil.copy(final_dir / "model.pt", models / "model.pt")
    return {"variant": variant, "recipe": asdict(recipe), "training": log}


def best_variant(logs: Path) -> str:
    """The cross-validated recipe with the lowest zone MAE (without TTA, which inference may not use)."""
    results = {p.stem[3:]: json.loads(p.read_text()) for p in logs.glob("cv_*.json") if not p.stem.endswith("_predictions")}
    if not results:
        raise SystemExit("no cross-validation logs yet: run a cv:VARIANT step first")
    return min(results, key=lambda v: results[v]["plain"]["zone_mae"])


def shipped_classifier_fingerprint(models: Path) -> str:
    """The fingerprint of ``models/model.pt``'s scoring stage, which the files fitted on its probabilities
    (Cohen's mapping, the zone context stage) are marked with: weights retrained over ``model.pt`` are then
    served without them, not with files fitted for other probabilities."""
    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.networks.weights import stage_fingerprint

    return stage_fingerprint(load_weights(BSNet(), models / "model.pt"), scoring=True)


#: Split seeds of the Cohen mapping's cross-validation (``step_cohen``).
COHEN_CV_REPEATS = 20


def step_cohen(args, sched, models: Path) -> dict:
    from monai_bsnet.severity import CohenSeverityMapping, cross_validated_mae

    variant = json.loads((args.logs / "final.json").read_text())["variant"]
    # the out-of-fold probabilities are what the model says of unseen images; without a
    # cross-validation run, the shipped model's own (mostly training-image) probabilities stand in
    source = args.logs / f"cv_{variant}_predictions.json"
    if not source.is_file():
        source = args.logs / "final_predictions.json"
        logging.warning("no cross-validation predictions of %s: fitting on %s (training images: optimistic)", variant, source)
    predictions = json.loads(source.read_text())
    root = args.data / "brixia-public"
    # fitted on what inference gives the mapping by default: the zone probabilities averaged with the mirror's (TTA)
    by_name = {p["filename"]: np.array(p[SERVED_PROBABILITIES]) for p in predictions}
    cohen = [d for d in cohen_severity_datalist(root / "cohen-severity.csv", root / "images") if Path(d["image"]).name in by_name]
    probs = np.stack([by_name[Path(d["image"]).name] for d in cohen])
    extent = np.array([d["geographic_extent"] for d in cohen])
    opacity = np.array([d["opacity"] for d in cohen])
    result = {"variant": variant, "fitted_on_predictions": source.name, "fitted_on_key": SERVED_PROBABILITIES, "n": len(cohen),
              # by patient, the mean over 20 shuffles of the five folds: one shuffle moves it by a few hundredths
              "cross_validated": cross_validated_mae(probs, extent, opacity, groups=[d["patient_id"] or d["filename"] for d in cohen], repeats=COHEN_CV_REPEATS),
              "cross_validated_split_seeds": COHEN_CV_REPEATS}
    mapping = CohenSeverityMapping().fit(probs, extent, opacity)
    mapping.fitted_for = shipped_classifier_fingerprint(models)
    mapping.save(models / "cohen_severity.json")
    result["mapping"] = mapping.to_dict()
    return result


def step_context(args, sched, models: Path) -> dict:
    """The zone context stage of the pooled head (:mod:`monai_bsnet.zone_context`), fitted on what the
    head gives images it was not fitted on: ``cv:pooled``'s out-of-fold probabilities, as served (with
    mirror TTA). Its nested cross-validation is ``bundle/scripts/zone_context_experiment.py``'s."""
    from monai_bsnet.zone_context import CONTEXT_FILE, SERVED_CONTEXT_C, ZoneContextRating

    source = args.logs / f"cv_{POOLED}_predictions.json"
    if not source.is_file():
        raise SystemExit(f"the context step fits on {source}: run cv:{POOLED} first")
    predictions = json.loads(source.read_text())
    # its strength chosen on these rows, each patient's images on one side (a row without a patient id alone)
    stage = ZoneContextRating(SERVED_CONTEXT_C).fit(np.array([p[SERVED_PROBABILITIES] for p in predictions]),
                                                    np.array([p["label_senior"] for p in predictions]), np.array(patient_groups(predictions)))
    stage.fitted_for = shipped_classifier_fingerprint(models)
    stage.save(models / CONTEXT_FILE)
    return {"fitted_on_predictions": source.name, "fitted_on_key": SERVED_PROBABILITIES, "n": len(predictions), "stage": stage.to_dict()}


@torch.inference_mode()
def step_evaluate_final(args, sched, models: Path) -> dict:
    """The shipped model against both raters on every image, split by its inner validation set where
    it had one (the pooled head is fitted on every image).

    The training images say little about generalisation; the inner validation images were not
    trained on but chose the checkpoint, so their numbers are optimistic too. The cross-validation
    steps give the honest estimate.
    """
    from monai_bsnet.cross_validation import predict_zone_probabilities, prediction_rows, summarise_predictions
    from monai_bsnet.networks import BSNet, load_weights
    from monai_bsnet.training import train_val_split

    items = brixia(args)
    network = load_weights(BSNet(), models / "model.pt")
    paths = [item["image"] for item in items]
    final = args.logs / "final.json"
    fitted_on_all = final.is_file() and json.loads(final.read_text())["variant"] == POOLED
    if fitted_on_all:  # no inner validation split: cross-validation within the 138 images chose its L2 strength
        folds = [0] * len(items)
        result = {"note": "fold 0 = training images: the pooled head was fitted on all of them"}
    else:
        _, val = train_val_split(items, 0.2, 0)  # as train_scoring splits them
        val_names = {item["filename"] for item in val}
        folds = [int(item["filename"] in val_names) for item in items]
        result = {"note": "fold 0 = training images, fold 1 = inner validation images (chose the checkpoint)"}
    predictions = prediction_rows(items, folds, *predict_zone_probabilities(network, paths, args.device, spatial_size=sched["image_size"]))
    (args.logs / "final_predictions.json").write_text(json.dumps(predictions))
    for name, subset in (("all", predictions), ("training", [p for p in predictions if p["fold"] == 0]),
                         ("inner_validation", [p for p in predictions if p["fold"] == 1])):
        if subset:
            result[name] = summarise_predictions(subset)
    return result


@torch.inference_mode()
def step_export(args, sched, models: Path) -> dict:
    """Store ``model.pt`` in half precision (half the size) and measure what that changes.

    :func:`~monai_bsnet.networks.load_weights` casts the weights back to float32, so inference
    still computes in float32; only the rounding of the stored weights differs.
    """
    from monai_bsnet.cross_validation import predict_zone_probabilities
    from monai_bsnet.networks import BSNet, load_weights

    full = load_weights(BSNet(), models / "model.pt")
    half = {k: v.half() if v.is_floating_point() else v for k, v in full.state_dict().items()}
    torch.save(half, models / "model_half.pt")
    restored = load_weights(BSNet(), models / "model_half.pt")
    images = [item["image"] for item in brixia(args)]
    p_full = predict_zone_probabilities(full, images, args.device, spatial_size=sched["image_size"], tta=False)[0]
    p_half = predict_zone_probabilities(restored, images, args.device, spatial_size=sched["image_size"], tta=False)[0]
    return {"n_images": len(images), "max_abs_probability_difference": float(np.abs(p_full - p_half).max()),
            "zone_score_agreement": float((median_scores(p_full) == median_scores(p_half)).mean()),
            "bytes_float32": (models / "model.pt").stat().st_size, "bytes_half": (models / "model_half.pt").stat().st_size}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("steps", nargs="+")
    parser.add_argument("--data", type=Path, required=True, help="folder with lungseg/ and brixia-public/")
    parser.add_argument("--work", type=Path, required=True, help="checkpoints and fold folders")
    parser.add_argument("--logs", type=Path, required=True, help="small JSON logs of each step (committed)")
    parser.add_argument("--models", type=Path, default=None, help="where segmentation.pt, alignment.pt, model.pt go (default WORK/models)")
    parser.add_argument("--schedule", choices=sorted(SCHEDULES), default="gpu")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N items of each list (smoke tests)")
    parser.add_argument("--num-workers", type=int, default=None, help="data-loading processes (default: the schedule's)")
    parser.add_argument("--bfloat16", action=argparse.BooleanOptionalAction, default=None,
                        help="stages a and b: the forward pass under bfloat16 autocast (default: on a CPU with bfloat16 "
                             "instructions, where it trains about twice as fast; a GPU schedule has --amp)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sched = dict(SCHEDULES[args.schedule])
    sched["bfloat16"] = args.bfloat16 if args.bfloat16 is not None else not torch.cuda.is_available() and cpu_has_bfloat16()
    if args.num_workers is not None:
        sched["num_workers"] = args.num_workers
    models = args.models or args.work / "models"
    for path in (args.work, args.logs, models):
        path.mkdir(parents=True, exist_ok=True)
    for step in args.steps:
        name, _, variant = step.partition(":")
        log_name = "final" if name == "final" else step.replace(":", "_")
        log_path = args.logs / f"{log_name}.json"
        if log_path.is_file():
            logging.info("%s: done before (%s)", step, log_path)
            continue
        start = time.perf_counter()
        if name == "segmentation":
            result = step_segmentation(args, sched, models)
        elif name == "alignment":
            result = step_alignment(args, sched, models)
        elif name == "segmentation_decoder":
            result = step_segmentation_decoder(args, sched, models)
        elif name == "segmentation_continued":
            result = step_segmentation_continued(args, sched, models)
        elif name == "cv":
            result = step_cv(args, sched, models, variant)
        elif name == "final":
            result = step_final(args, sched, models, variant or "auto")
        elif name == "cohen":
            result = step_cohen(args, sched, models)
        elif name == "context":
            result = step_context(args, sched, models)
        elif name == "evaluate_segmentation":  # the shipped (or any) model.pt on the lungseg test split
            result = segmentation_test_dice(args, models / "model.pt", sched["image_size"])
        elif name == "evaluate_final":
            result = step_evaluate_final(args, sched, models)
        elif name == "export":
            result = step_export(args, sched, models)
        else:
            parser.error(f"unknown step {step}")
        result.update(step=step, schedule=args.schedule, device=str(args.device),
                      device_name=torch.cuda.get_device_name() if str(args.device).startswith("cuda") else "cpu",
                      seconds=round(time.perf_counter() - start, 1))
        log_path.write_text(json.dumps(result, indent=1) + "\n")
        logging.info("%s: %s", step, {k: v for k, v in result.items() if not isinstance(v, (list, dict))})
    return 0


if __name__ == "__main__":
    sys.exit(main())
