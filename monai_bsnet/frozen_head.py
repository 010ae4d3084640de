"""Scoring-head training on cached outputs of the frozen stages: stage c on a CPU.

In the head-only recipes (``head``, ``head_flip``) the encoder, the segmentation and the alignment are
frozen, so what they compute for a given input image never changes during training: only the random
augmentation does. :class:`FrozenStageCache` runs them once on a few augmented copies of each image,
drawn with ``train.json``'s own transforms, and keeps what the scoring stage reads (encoder features,
``theta``, aligned lung map). :func:`train_head` then trains the scoring head alone on these, or the
head with copies of the encoder's last stages (:class:`CachedScoringStage`, recipe ``flip_layer4``:
``layer4`` is recomputed from the cached ``layer3`` output, 0.33 s instead of 0.31 s per image). On two
CPU cores a step then costs 0.31 s per image instead of 1.30 s (``benchmarks/stage_c_training.py``),
and a patient-grouped 5-fold cross-validation of stage c takes under an hour after a 25-minute cache
build, instead of about 3 h at the bundle step's cost (16 epochs of ~88 images per fold).

The one difference from the bundle's on-the-fly training (``train.json``), stated in the model card:
each image is seen in ``2 * (1 + n_draws)`` fixed copies (the plain image and ``n_draws`` random
augmentations, each also mirrored with its zone scores swapped) instead of a fresh draw every epoch.
Everything else is ``train.json``'s: the preprocessing, the random transforms, the loss, AdamW with its
weight decay, the cosine schedule, the inner patient-grouped validation split and the best-epoch choice
by validation zone MAE.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
import torch.nn as nn

from monai_bsnet.cross_validation import (
    BUNDLE_CONFIGS,
    ScoringRecipe,
    patient_folds,
    predict_zone_probabilities,
    prediction_rows,
    summarise_predictions,
)
from monai_bsnet.metrics import METRICS
from monai_bsnet.networks import BSNet
from monai_bsnet.networks.encoder import ResNet18Encoder
from monai_bsnet.networks.scoring import ZoneScoringHead
from monai_bsnet.training import train_val_split
from monai_bsnet.transforms import mirror_average, swap_zone_sides

__all__ = [
    "FrozenOutputs",
    "FrozenStageCache",
    "CachedScoringStage",
    "train_config",
    "transforms_fingerprint",
    "copy_labels",
    "train_head",
    "head_probabilities",
    "cross_validate_head",
    "train_final_head",
]

#: Learning-rate factor of tuned encoder stages, as ``train.json`` scales its end-to-end phase.
ENCODER_LR_SCALE = 0.1

logger = logging.getLogger(__name__)


class FrozenOutputs(NamedTuple):
    """What the frozen stages computed for N images in V copies each (float32, on the CPU).

    Attributes:
        features: the four encoder stages the scoring head reads, each (N, V, C_k, h_k, w_k).
        theta: (N, V, 2, 3) alignments.
        aligned_lung: (N, V, 1, H, W) lung probability maps in the aligned frame.
    """

    features: list[torch.Tensor]
    theta: torch.Tensor
    aligned_lung: torch.Tensor

    def select(self, images: np.ndarray, copies: np.ndarray) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """The scoring inputs of copy ``copies[i]`` of image ``images[i]``, as a batch."""
        i, v = torch.as_tensor(images), torch.as_tensor(copies)
        return [f[i, v] for f in self.features], self.theta[i, v], self.aligned_lung[i, v]


def train_config(image_size: int):
    """``train.json`` parsed with the cache's image size and no random mirror (the cache mirrors
    every copy itself, so that a recipe can choose how often it sees mirrors)."""
    from monai.bundle import ConfigParser

    parser = ConfigParser()
    parser.read_config(str(BUNDLE_CONFIGS / "train.json"))
    parser.update({"image_size": image_size, "lateral_flip_prob": 0.0})
    return parser


def transforms_fingerprint(image_size: int) -> str:
    """A short hash of ``train.json``'s image transforms as the cache applies them (their config, not the
    code of the transforms it names): a cache built with another preprocessing or augmentation is refused."""
    parser = train_config(image_size)
    config = {part: parser.get(f"train#{part}") for part in ("deterministic_transforms", "random_transforms")}
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FrozenStageCache:
    """Outputs of the frozen encoder, segmentation and alignment for augmented copies of images.

    Copy ``2 j`` of an image is draw ``j`` (draw 0: the plain validation preprocessing; draws 1..n:
    ``train.json``'s random transforms, seeded per image and draw), copy ``2 j + 1`` is its mirror.
    One file per image is written atomically, so building resumes where a killed run stopped, and a
    ``cache.json`` ties the folder to the weights and settings it was built with.

    Args:
        bsnet: the network whose frozen stages are cached (its scoring stage is not used).
        folder: where the per-image files go.
        n_draws: random augmentations per image.
        image_size: the network's input side.
        seed: of the random draws.
        device: where the frozen stages run.
        weights_id: identifies the weights (for example their SHA-256); a folder built with other
            weights, settings or ``train.json`` transforms (:func:`transforms_fingerprint`) is refused.
    """

    def __init__(
        self,
        bsnet: BSNet,
        folder: str | os.PathLike,
        n_draws: int = 2,
        image_size: int = 512,
        seed: int = 0,
        device: str | torch.device = "cpu",
        weights_id: str = "",
    ) -> None:
        self.bsnet = bsnet.to(device).eval()
        self.folder = Path(folder)
        self.n_draws, self.image_size, self.seed, self.device = n_draws, image_size, seed, torch.device(device)
        # the transforms too: the stamp once held only the weights, and a cache of another equalisation was reused
        self.settings = {"n_draws": n_draws, "image_size": image_size, "seed": seed, "weights": weights_id,
                         "transforms": transforms_fingerprint(image_size)}
        self.folder.mkdir(parents=True, exist_ok=True)
        stamp = self.folder / "cache.json"
        if stamp.is_file():  # opened again (also read-only, by built()): the stamp must match, and stays as it is
            if json.loads(stamp.read_text()) != self.settings:
                raise ValueError(f"{self.folder} holds a cache built with {stamp.read_text()}, not {self.settings}: use another folder")
        else:
            stamp.write_text(json.dumps(self.settings))

    @classmethod
    def built(cls, folder: str | os.PathLike) -> FrozenStageCache:
        """A cache built before (by ``train_recipe.py``), opened to read its outputs, with the settings of
        its ``cache.json``. Its network is a default BS-Net that is never run: only the scoring head's
        (parameter-free) zone cropping is used on what the cache holds; build with the real network."""
        settings = json.loads((Path(folder) / "cache.json").read_text())
        return cls(BSNet(), folder, settings["n_draws"], settings["image_size"], settings["seed"], weights_id=settings["weights"])

    @property
    def n_copies(self) -> int:
        return 2 * (1 + self.n_draws)

    def path(self, item: Mapping[str, Any]) -> Path:
        return self.folder / f"{Path(item['image']).name}.pt"

    def copies(self, item: Mapping[str, Any], deterministic, random) -> torch.Tensor:
        """The ``n_copies`` network inputs of one image, (V, 1, H, W)."""
        plain = deterministic({"image": item["image"], "label": item["label"]})
        draws = [plain["image"]]
        for j in range(1, self.n_draws + 1):
            # a seed per image and draw: the same copies whatever the order or the resumption
            digest = hashlib.sha256(f"{self.seed}:{j}:{Path(item['image']).name}".encode()).digest()
            random.set_random_state(seed=int.from_bytes(digest[:4], "little"))
            draws.append(random(dict(plain))["image"])
        images = []
        for image in draws:
            image = torch.as_tensor(image, dtype=torch.float32)
            images += [image, image.flip(-1)]
        return torch.stack(images)

    @torch.inference_mode()
    def build(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Compute and store the outputs of every item that has no file yet."""
        from monai.transforms import Compose

        parser = train_config(self.image_size)
        deterministic = Compose(parser.get_parsed_content("train#deterministic_transforms"))
        # the image transforms only: the label transforms (the rater draw) act at training time
        random = Compose(parser.get_parsed_content("train#random_transforms"))
        todo = [item for item in items if not self.path(item).is_file()]
        start = time.perf_counter()
        for n, item in enumerate(todo, 1):
            record = self.record(self.copies(item, deterministic, random).to(self.device))
            partial = self.path(item).with_suffix(".partial")
            torch.save(record, partial)
            os.replace(partial, self.path(item))
            logger.info("cached %s (%d/%d, %.0f s)", Path(item["image"]).name, n, len(todo), time.perf_counter() - start)

    def record(self, images: torch.Tensor) -> dict[str, Any]:
        """What is stored of one image's copies (V, 1, H, W): the scoring stage's inputs."""
        features, _, theta, aligned_lung = self.bsnet.scoring_inputs(images)
        return {"features": [f.cpu() for f in features[1:]], "theta": theta.cpu(), "aligned_lung": aligned_lung.cpu()}

    def require(self, items: Sequence[Mapping[str, Any]]) -> None:
        """Raise :class:`FileNotFoundError` unless every item is cached."""
        missing = [str(item["image"]) for item in items if not self.path(item).is_file()]
        if missing:
            raise FileNotFoundError(f"{len(missing)} images are not cached in {self.folder} (first: {missing[0]}): build first")

    def stored(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """One built item's file, as :meth:`record` wrote it."""
        return torch.load(self.path(item), weights_only=True)

    @staticmethod
    def outputs(record: Mapping[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """A stored record's outputs: its features (each (V, C_k, h_k, w_k)), theta and aligned lung map."""
        return record["features"], record["theta"], record["aligned_lung"]

    def outputs_of(self, item: Mapping[str, Any]) -> tuple[list[torch.Tensor], torch.Tensor, torch.Tensor]:
        """One built item's cached outputs (:meth:`outputs` of its file)."""
        return self.outputs(self.stored(item))

    def load(self, items: Sequence[Mapping[str, Any]]) -> FrozenOutputs:
        """The cached outputs of ``items``, in their order (build them first)."""
        if not items:
            raise ValueError("no items to load")
        self.require(items)

        def parts(item: Mapping[str, Any]) -> list[torch.Tensor]:
            features, theta, aligned_lung = self.outputs_of(item)
            return [*features, theta, aligned_lung]

        # filled in place, one file at a time: the peak memory is the cache's size, not twice it
        first = parts(items[0])
        wholes = [torch.empty((len(items), *part.shape), dtype=part.dtype) for part in first]
        for i, item in enumerate(items):
            for whole, part in zip(wholes, first if i == 0 else parts(item)):
                whole[i] = part
        return FrozenOutputs(wholes[:-2], wholes[-2], wholes[-1])


class CachedScoringStage(nn.Module):
    """What stage c trains on cached frozen-stage outputs: the scoring head and, optionally, copies of
    the encoder's last ``tuned_stages`` ResNet stages, recomputed from the cached stage before them.

    The copied stages keep the encoder's batch-norm statistics (they stay in evaluation mode, as a
    frozen stage of :class:`~monai_bsnet.networks.BSNet` does) and learn at a tenth of the head's
    learning rate. :meth:`install` writes both into a BS-Net; there the tuned stages also feed the
    segmentation, so the installed network's lung map and alignment can move a little from the
    cached ones: evaluate it as a whole (:func:`cross_validate_head` does).

    Args:
        head: the scoring head (trained in place).
        encoder: the encoder whose stages are copied (needed when ``tuned_stages`` > 0).
        tuned_stages: 0 (the head alone) to 3 (``layer2`` to ``layer4``).
    """

    def __init__(self, head: ZoneScoringHead, encoder: ResNet18Encoder | None = None, tuned_stages: int = 0) -> None:
        super().__init__()
        if not 0 <= tuned_stages <= 3 or (tuned_stages and encoder is None):
            raise ValueError(f"tuned_stages must be 0..3 (and needs the encoder), got {tuned_stages}")
        self.head = head
        self.stage_numbers = list(range(5 - tuned_stages, 5))  # ResNet layer numbers, 4 = layer4
        self.tuned = nn.ModuleList(copy.deepcopy(getattr(encoder, f"layer{k}")) for k in self.stage_numbers)

    def train(self, mode: bool = True) -> CachedScoringStage:
        super().train(mode)
        self.tuned.eval()  # fixed batch-norm statistics, as in the frozen encoder
        return self

    def forward(self, features: list[torch.Tensor], theta: torch.Tensor, aligned_lung: torch.Tensor) -> torch.Tensor:
        """Zone logits (B, 6, 4) from the cached scoring inputs (the four encoder stages, finest first)."""
        features = list(features)
        for k, layer in zip(self.stage_numbers, self.tuned):
            # the head's features are layer1..layer4 (indices 0..3): layer k reads index k - 2
            features[k - 1] = layer(features[k - 2].contiguous(memory_format=torch.channels_last))
        crops = self.head.zone_crops(features, theta, aligned_lung)
        # channels-last convolutions are about a third faster on CPU (oneDNN)
        return self.head.classify([c.contiguous(memory_format=torch.channels_last) for c in crops])

    def parameter_groups(self, learning_rate: float) -> list[dict[str, Any]]:
        """Optimiser groups: the head at the optimiser's rate, the tuned stages at a tenth of ``learning_rate``."""
        groups: list[dict[str, Any]] = [{"params": list(self.head.parameters())}]
        if len(self.tuned):
            groups.append({"params": list(self.tuned.parameters()), "lr": learning_rate * ENCODER_LR_SCALE})
        return groups

    def install(self, bsnet: BSNet) -> BSNet:
        """Copy the head and the tuned encoder stages into ``bsnet``; returns it."""
        bsnet.scoring.load_state_dict(self.head.state_dict())
        for k, layer in zip(self.stage_numbers, self.tuned):
            getattr(bsnet.encoder, f"layer{k}").load_state_dict(layer.state_dict())
        return bsnet


def _as_stage(module: ZoneScoringHead | CachedScoringStage) -> CachedScoringStage:
    return module if isinstance(module, CachedScoringStage) else CachedScoringStage(module)


def copy_labels(labels: torch.Tensor, copies: np.ndarray) -> torch.Tensor:
    """Zone scores (B, 6) of the given copies: odd copies are mirrors, whose scores swap sides."""
    mirrored = torch.as_tensor(copies % 2 == 1)
    return torch.where(mirrored[:, None], swap_zone_sides(labels), labels)


def train_head(
    head: ZoneScoringHead | CachedScoringStage,
    outputs: FrozenOutputs,
    labels: torch.Tensor,
    train_index: Sequence[int],
    val_index: Sequence[int],
    recipe: ScoringRecipe,
    seed: int = 0,
    junior_labels: torch.Tensor | None = None,
) -> dict[str, Any]:
    """Train ``head`` in place on cached outputs; it ends with the weights of its best validation epoch.

    Each epoch sees every training image once, in one of its copies: a random draw, mirrored with
    probability ``recipe.lateral_flip_prob``. Validation uses the plain copy (as the bundle's
    validation preprocessing). Loss, optimiser and schedule are ``train.json``'s.

    Args:
        head: the scoring head to train, or a :class:`CachedScoringStage` (a head with tuned
            encoder stages).
        outputs: cached frozen outputs of all images.
        labels: (N, 6) zone scores of all images.
        train_index, val_index: rows of ``outputs`` to train on and to choose the best epoch with
            (no validation rows: the last epoch is kept).
        recipe: epochs, learning rate, batch size, mirror probability, and ``extra`` overrides of
            ``train.json`` (for example ``{"loss#mae_weight": 0.0}``); ``end_to_end_epochs`` must be 0:
            an end-to-end phase changes the frozen stages and cannot be cached.
        seed: of the initial order and copies.
        junior_labels: (N, 6) the other rater's scores, trained on in a ``recipe.junior_label_prob``
            share of the draws (as :class:`~monai_bsnet.transforms.RandRaterLabeld`); validation
            stays with ``labels``.

    Returns:
        best validation zone MAE, its epoch, and the seconds taken.
    """
    if recipe.end_to_end_epochs:
        raise ValueError("an end-to-end phase trains the stages this cache holds fixed: use cross_validation.train_scoring")
    if recipe.junior_label_prob and junior_labels is None:
        raise ValueError("the recipe trains on the junior rater's scores in part: pass junior_labels")
    parser = train_config(int(outputs.aligned_lung.shape[-1]))
    stage = _as_stage(head)
    parser.update({"learning_rate": recipe.learning_rate, "max_epochs": recipe.head_epochs, **recipe.extra, "network": stage,
                   "optimizer#params": stage.parameter_groups(recipe.learning_rate)})
    loss_function = parser.get_parsed_content("loss")
    optimizer = parser.get_parsed_content("optimizer")
    scheduler = parser.get_parsed_content("lr_scheduler")
    zone_mae = METRICS["zone_mae"]
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    stage.to(memory_format=torch.channels_last)
    n_sources = outputs.theta.shape[1] // 2  # the plain copy and the random draws, each also mirrored
    best: dict[str, Any] = {"best_metric": float("inf"), "best_epoch": 0}
    best_state = copy.deepcopy(stage.state_dict())
    start = time.perf_counter()
    for epoch in range(1, recipe.head_epochs + 1):
        stage.train()
        order = rng.permutation(np.asarray(train_index))
        copies = 2 * rng.integers(0, n_sources, len(order)) + (rng.random(len(order)) < recipe.lateral_flip_prob)
        for s in range(0, len(order), recipe.batch_size):
            index, copy_index = order[s : s + recipe.batch_size], copies[s : s + recipe.batch_size]
            target = labels[index]
            if recipe.junior_label_prob:  # no draw otherwise: the other recipes keep their random stream
                junior = torch.as_tensor(rng.random(len(index)) < recipe.junior_label_prob)
                target = torch.where(junior[:, None], junior_labels[index], target)
            logits = stage(*outputs.select(index, copy_index))
            loss = loss_function(logits, copy_labels(target, copy_index))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        scheduler.step()
        if len(val_index):
            metric = float(zone_mae(head_probabilities(stage, outputs, val_index)[0], labels[np.asarray(val_index)].numpy()))
            logger.info("epoch %d: validation zone MAE %.4f", epoch, metric)
            if metric < best["best_metric"]:
                best = {"best_metric": metric, "best_epoch": epoch}
                best_state = copy.deepcopy(stage.state_dict())
        else:
            best, best_state = {"best_metric": float("nan"), "best_epoch": epoch}, stage.state_dict()
    stage.load_state_dict(best_state)
    best["seconds"] = round(time.perf_counter() - start, 1)
    return best


@torch.inference_mode()
def head_probabilities(
    head: ZoneScoringHead | CachedScoringStage, outputs: FrozenOutputs, index: Sequence[int], batch_size: int = 16
) -> tuple[np.ndarray, np.ndarray]:
    """Zone probabilities (n, 6, 4) of rows ``index``: plain, and with test-time augmentation (the
    average with the mirror copy's, zones swapped back), as :func:`~monai_bsnet.cross_validation.predict_zone_probabilities`."""
    stage = _as_stage(head).eval()
    index = np.asarray(index)
    plain, tta = [], []
    for s in range(0, len(index), batch_size):
        rows = index[s : s + batch_size]
        probs = torch.softmax(stage(*outputs.select(rows, np.zeros(len(rows), int))), -1)
        mirrored = torch.softmax(stage(*outputs.select(rows, np.ones(len(rows), int))), -1)
        plain.append(probs.numpy())
        tta.append(mirror_average(probs, mirrored).numpy())
    return np.concatenate(plain), np.concatenate(tta)


def _fresh_stage(seed: int, encoder: ResNet18Encoder, recipe: ScoringRecipe) -> CachedScoringStage:
    """A newly initialised head of the shipped architecture, with copies of the encoder stages to tune."""
    torch.manual_seed(seed)
    head = BSNet(shared_zone_classifier=recipe.shared_zone_classifier).scoring
    return CachedScoringStage(head, encoder, recipe.tuned_encoder_stages)


class _Labels(NamedTuple):
    reference: torch.Tensor  # (N, 6) the scores trained on and validated against
    junior: torch.Tensor | None  # (N, 6) the other rater's, where every item has them


def _cached(cache: FrozenStageCache, items: Sequence[Mapping[str, Any]]):
    """Build and load the cache of ``items``; their scores; a function from a subset to its rows."""
    cache.build(items)
    row = {item["image"]: i for i, item in enumerate(items)}

    def scores(key: str) -> torch.Tensor:
        return torch.tensor([list(item[key]) for item in items], dtype=torch.long)

    labels = _Labels(scores("label"), scores("label_junior") if all("label_junior" in item for item in items) else None)
    return cache.load(items), labels, lambda subset: [row[item["image"]] for item in subset]


def _train_fresh_stage(
    cache: FrozenStageCache, outputs, labels, rows, train, val, recipe: ScoringRecipe, seed: int
) -> tuple[CachedScoringStage, dict[str, Any]]:
    """A new head (and tuned encoder stages) trained on the ``train`` items, its epoch chosen on the
    ``val`` items; with its log."""
    stage = _fresh_stage(seed, cache.bsnet.encoder, recipe)
    log: dict[str, Any] = {"n_train": len(train), "n_val": len(val)}
    log["scoring"] = train_head(stage, outputs, labels.reference, rows(train), rows(val), recipe, seed, labels.junior)
    return stage, log


def cross_validate_head(
    recipe: ScoringRecipe,
    datalist: Sequence[Mapping[str, Any]],
    cache: FrozenStageCache,
    work_dir: str | os.PathLike,
    n_folds: int = 5,
    seed: int = 0,
    val_fraction: float = 0.2,
    training_seed: int | None = None,
) -> dict[str, Any]:
    """Patient-grouped cross-validation of a head-only ``recipe`` on cached outputs.

    The folds and each fold's inner validation split are those of
    :func:`~monai_bsnet.cross_validation.cross_validate`; a finished fold is kept in
    ``work_dir/foldK.json`` and skipped when run again. Writes ``work_dir/predictions.json`` and
    returns the same summary as :func:`~monai_bsnet.cross_validation.cross_validate`. With tuned
    encoder stages the held-out images are scored by the whole network they are installed in (its
    lung map and alignment then differ from the cached ones); without, from the cache, which holds
    the same values.

    ``seed`` draws the folds and inner splits; ``training_seed`` (default: ``seed``) the heads'
    initialisation, image order and copies. Repeating a run with other training seeds on the same
    splits measures how far two runs of one recipe differ by chance alone.
    """
    training_seed = seed if training_seed is None else training_seed
    work_dir = Path(work_dir)
    work_dir.mkdir(parents=True, exist_ok=True)
    items = list(datalist)
    outputs, labels, rows = _cached(cache, items)
    predictions: list[dict[str, Any]] = []
    folds_log = []
    for k, (train, test) in enumerate(patient_folds(items, n_folds, seed)):
        fold_file = work_dir / f"fold{k}.json"
        if not fold_file.is_file():
            stage, log = _train_fresh_stage(cache, outputs, labels, rows, *train_val_split(train, val_fraction, seed), recipe, training_seed)
            log.update(n_test=len(test), fold=k)
            if recipe.tuned_encoder_stages:
                network = stage.install(copy.deepcopy(cache.bsnet))
                probabilities = predict_zone_probabilities(network, [item["image"] for item in test], cache.device, spatial_size=cache.image_size)
            else:
                probabilities = head_probabilities(stage, outputs, rows(test))
            fold = {"log": log, "predictions": prediction_rows(test, k, *probabilities)}
            fold_file.with_suffix(".partial").write_text(json.dumps(fold))
            os.replace(fold_file.with_suffix(".partial"), fold_file)
            logger.info("fold %d: %s", k, log)
        fold = json.loads(fold_file.read_text())
        predictions += fold["predictions"]
        folds_log.append(fold["log"])
    (work_dir / "predictions.json").write_text(json.dumps(predictions))
    summary = summarise_predictions(predictions)
    summary.update(recipe=asdict(recipe), n_folds=n_folds, seed=seed, training_seed=training_seed, folds=folds_log, training="cached frozen-stage outputs",
                   cache=cache.settings)
    return summary


def train_final_head(
    recipe: ScoringRecipe,
    datalist: Sequence[Mapping[str, Any]],
    cache: FrozenStageCache,
    seed: int = 0,
    val_fraction: float = 0.2,
) -> dict[str, Any]:
    """Train the shipped model's head (and tuned encoder stages) on all of ``datalist`` (an inner
    validation split chooses the epoch, as :func:`~monai_bsnet.cross_validation.train_scoring`) and put
    it into ``cache.bsnet``.

    Returns the training log in :func:`~monai_bsnet.cross_validation.train_scoring`'s form.
    """
    items = list(datalist)
    outputs, labels, rows = _cached(cache, items)
    stage, log = _train_fresh_stage(cache, outputs, labels, rows, *train_val_split(items, val_fraction, seed), recipe, seed)
    stage.install(cache.bsnet)
    return log
