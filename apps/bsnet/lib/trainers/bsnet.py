"""Retraining BS-Net's scoring stage on the radiologists' corrections (MONAI Label train task ``bsnet``).

Two methods (request option ``method``; ``auto``, the default, takes ``refit`` when the base weights
hold the pooled linear zone classifier and their fit samples are beside them, as for the shipped
model, and ``fine_tune`` otherwise):

``refit``: the pooled linear zone classifier is a logistic regression, so it is fitted again rather
than trained: on the public images it was fitted on (their pooled zone vectors and scores, shipped
beside the weights as ``model_fit_samples.npz``) and the datastore's labelled images together, with the
shipped fit's L2 strength (:func:`monai_bsnet.pooled_head.refit_final_pooled_head`). A few labels move
the classifier a little, many move it far, and the public images are not forgotten. The labelled
images' vectors (6 copies each: the plain image, two of the bundle's augmentations and their mirrors,
as the shipped fit) are kept in ``<model_dir>/pooled_features`` at 0.3 MB an image, so that the next
refit computes only the new images (kept by image file name: an image replaced under the same name
keeps its old vectors until that folder is deleted). Every refit starts again from the base weights with all of the
datastore's labels, so retrainings do not drift. Minutes on a CPU, most of it the frozen stages on
the new images. On the public images, in a simulated site, this gave a lower zone MAE than the fine-tuning and than
no retraining at every site size tried (``bundle/docs/experiments.md``, "Retraining on a site's labels").
The zone context stage and Cohen et al.'s mapping are fitted again for the refitted classifier (on
out-of-fold probabilities of the same images; the mapping on the 55 public images with Cohen scores) and
published beside the weights before them, marked with the classifier's fingerprint (experiments, "The
zone context stage after a refit", "Cohen et al.'s scores after a refit").

``fine_tune``: the bundle's scoring stage (``bundle/configs/train.json``), run by MONAI Label's ``BasicTrainTask``
on the datastore's labelled images: encoder, lung segmentation and alignment stay frozen (so the zone
geometry of every image, and of every saved label, stays what it was), the zone heads learn from
the corrected scores with the bundle's loss (per-zone cross-entropy + MAE of the expected score),
validation on a patient-wise split picks the best epoch by zone MAE, and the best model is published
atomically to ``<model_dir>/bsnet.pt``, which the infer tasks pick up on their next call (the
refit publishes the same way).

MONAI Label runs every training in a separate process: inference keeps being served meanwhile. On a
small CPU machine that process takes ``train_threads`` cores (default: all but one), leaving the rest
to the server.
"""

from __future__ import annotations

import datetime
import filecmp
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from monai.engines import SupervisedEvaluator
from monai.handlers import CheckpointSaver, LrScheduleHandler, from_engine
from monai.inferers import SimpleInferer
from monai.transforms import Activationsd, EnsureTyped, RandAdjustContrastd, RandAffined, SelectItemsd
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context
from monailabel.tasks.train.handler import PublishStatsAndModel, prepare_stats

from lib.labels import IMAGE_INFO_KEY, LabelError, read_target
from lib.model import BrixiaModel, build_network, warn_random_weights
from monai_bsnet.label_maps import BRIXIA_LABELS
from monai_bsnet.losses import BrixiaScoreLoss
from monai_bsnet.metrics import BrixiaScoreHandler
from monai_bsnet.networks import ZoneScorer
from monai_bsnet.networks.weights import state_dict_from_checkpoint, zone_classifier_of
from monai_bsnet.pooled_head import PooledFeatureCache, fit_samples_path, load_fit_samples, refit_final_pooled_head
from monai_bsnet.severity import MAPPING_FILE
from monai_bsnet.zone_context import CONTEXT_FILE
from monai_bsnet.training import train_val_split, trainable_parameters
from monai_bsnet.transforms import LoadCXRd, RandLateralFlipd, cxr_preprocessingd

logger = logging.getLogger(__name__)

#: Stages frozen while fine-tuning the scoring stage (the bundle's ``frozen_stages``).
FROZEN_STAGES = ["encoder", "segmentation", "alignment"]

#: Default learning rate of the fine-tuning: a tenth of the bundle's training from scratch. At the
#: bundle's 1e-3, fine-tuning the shipped pooled linear zone classifier on the images it was fitted on
#: raised the cross-validated zone MAE from 0.629 to 0.687; at 1e-4 it stayed at 0.637
#: (``bundle/scripts/finetune_pooled_head.py``, ``bundle/docs/experiments.md``).
FINE_TUNING_LEARNING_RATE = 1e-4

#: Methods of request option ``method`` (``auto``: ``refit`` for a pooled linear base, else ``fine_tune``).
METHODS = ("auto", "refit", "fine_tune")
#: Random augmentations per image of a refit, and its input side: those of the shipped fit, whose
#: samples the labelled images join (``bundle/docs/experiments.md``, the pooled head).
REFIT_DRAWS, REFIT_IMAGE_SIZE = 2, 512


class AtomicPublisher(PublishStatsAndModel):
    """MONAI Label's publisher, but the model is copied under a temporary name and renamed, so that a
    concurrent inference never loads a half-written checkpoint."""

    def iteration_completed(self) -> dict[str, Any]:
        stats = prepare_stats(self.start_ts, self.trainer, self.evaluator)
        stats["total_epochs"] = self.trainer.state.max_epochs
        filename = os.path.join(self.output_dir, datetime.datetime.now().strftime(f"stats_{self.run_id}.json"))
        with open(filename, "w") as f:
            json.dump(stats, f, indent=2, default=str)
        if self._stats_path:
            _atomic_copy(filename, self._stats_path)
        best = os.path.join(self.output_dir, self._key_metric_filename)
        if self._publish_path and os.path.exists(best):
            if not os.path.exists(self._publish_path) or not filecmp.cmp(self._publish_path, best, shallow=False):
                _atomic_copy(best, self._publish_path)
                logger.info("new BS-Net published: %s -> %s", best, self._publish_path)
        return stats


def _atomic_copy(source: str, target: str) -> None:
    Path(target).parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(target), prefix=".tmp_", suffix=Path(target).suffix)
    os.close(fd)
    try:
        shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


class BrixiaScoringTrain(BasicTrainTask):
    """Train task: the scoring stage of BS-Net on the datastore's corrected Brixia scores.

    Request options: ``method`` (``auto``, ``refit``, ``fine_tune``: see the module's docstring).
    A refit's own: ``refit_c`` (its inverse L2 strength; default: the shipped fit's). A fine-tuning's (besides MONAI Label's ``max_epochs``, ``val_split``,
    ``train_batch_size``, ...): ``learning_rate``, ``image_size`` (network input side, a multiple of 32;
    512 as BS-Net was trained, smaller only for quick checks), ``end_to_end`` (also unfreeze the other
    stages, at a tenth of the learning rate, as the bundle does), ``seed`` (validation split).
    """

    def __init__(
        self,
        model: BrixiaModel,
        model_dir: str,
        threads: int | None = None,
        config: dict[str, Any] | None = None,
        description: str = "Retrain BS-Net's scoring stage on the corrected Brixia scores of the datastore",
    ) -> None:
        self.model = model
        self.threads = threads
        defaults = {
            "method": list(METHODS),
            "max_epochs": 20,
            "val_split": 0.2,
            "train_batch_size": 4,
            "val_batch_size": 4,
            "learning_rate": FINE_TUNING_LEARNING_RATE,
            "image_size": 512,
            "end_to_end": False,
            "seed": 0,
            "multi_gpu": False,
            "dataset": ["CacheDataset", "Dataset"],
            "dataloader": ["DataLoader", "ThreadDataLoader"],
            "tracking": ["None", "mlflow"],
        }
        defaults.update(config or {})
        super().__init__(
            model_dir=model_dir,
            description=description,
            config=defaults,
            amp=False,
            load_path=None,
            publish_path=model.paths[-1],
            key_metric_filename="model.pt",
            model_dict_key="model",
            labels=list(BRIXIA_LABELS),
            disable_meta_tracking=True,
            n_saved=1,
            tracking=None,
        )
        self._config.update(defaults)  # BasicTrainTask's own defaults would otherwise win for these keys

    # ---- run ------------------------------------------------------------------------------------------
    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        request = dict(request)
        # a client that does not choose gets the first option (MONAI Label lists the choices)
        for key in ("method", "dataset", "dataloader", "tracking", "device"):
            value = request.get(key, self._config.get(key))
            if isinstance(value, list) and value:
                request[key] = value[0]
        if self.threads:
            torch.set_num_threads(self.threads)
        name = str(request.get("name", self._config.get("name", "train_01")))
        for stale in ("model.pt", "train_model.pt", CONTEXT_FILE, MAPPING_FILE):  # nothing of a previous run may be published again
            path = Path(self._model_dir) / name / stale
            if path.exists():
                path.unlink()
        if self._method(request) == "refit":
            return self._refit(request, datastore, Path(self._model_dir) / name)
        return super().__call__(request, datastore)

    def _method(self, request: dict[str, Any]) -> str:
        method = str(request.get("method", "auto"))
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}: one of {', '.join(METHODS)}")
        if method == "auto":
            base = self.model.paths[0]
            refittable = fit_samples_path(base).is_file() and zone_classifier_of(state_dict_from_checkpoint(base)) == "pooled_linear"
            method = "refit" if refittable and not as_bool(request.get("end_to_end", False)) else "fine_tune"
        logger.info("retraining method: %s", method)
        return method

    def _refit(self, request: dict[str, Any], datastore: Datastore, output_dir: Path) -> dict[str, Any]:
        """Fit the base model's pooled linear zone classifier again on its public images and every
        labelled image; publish it."""
        start = time.time()
        base, samples = self.model.paths[0], fit_samples_path(self.model.paths[0])
        if not samples.is_file():
            raise ValueError(f"method refit needs the fit samples of the base weights, {samples}: use method fine_tune")
        bsnet = build_network(base)
        digest = hashlib.sha256(Path(base).read_bytes()).hexdigest()
        cache = PooledFeatureCache(bsnet, Path(self._model_dir) / "pooled_features" / digest[:16], REFIT_DRAWS, REFIT_IMAGE_SIZE, weights_id=digest)
        datalist, usable, new = self.pre_process(request, datastore), [], 0
        for item in datalist:  # one unreadable image must not stop the refit of the others
            try:
                new += not cache.path(item).is_file()
                cache.build([item])
                usable.append(item)
            except Exception as e:
                logger.warning("skipped: %s: cannot compute its pooled features: %s: %s", item["image_id"], type(e).__name__, e)
        if not usable:
            raise ValueError("no labelled image could be read: nothing to refit on")
        logger.info("pooled features: %d new, %d kept from earlier refits", new, len(usable) - new)
        c = request.get("refit_c")
        output_dir.mkdir(parents=True, exist_ok=True)
        stage, cohen = output_dir / CONTEXT_FILE, output_dir / MAPPING_FILE
        log = refit_final_pooled_head(usable, cache, load_fit_samples(samples), c=None if c in (None, "") else float(c), context_path=stage, cohen_path=cohen)
        logger.info("refitted on %d labelled and %d public images, C %s, in %.1f s; zone context stage (C %s) in %.1f s; Cohen's mapping on %d images",
                    log["n_train"], log["n_fit_samples_images"], log["C"], log["fit_seconds"], log["zone_context"]["C"], log["zone_context"]["seconds"],
                    log.get("cohen", {}).get("fitted_on", 0))
        torch.save(bsnet.state_dict(), output_dir / "model.pt")
        # the fitted files first: until the new weights replace the old, they are refused as fitted for another classifier
        for fitted in (stage, cohen):
            if fitted.is_file():
                _atomic_copy(str(fitted), str(Path(self._publish_path).with_name(fitted.name)))
        _atomic_copy(str(output_dir / "model.pt"), self._publish_path)
        logger.info("new BS-Net published: %s -> %s", output_dir / "model.pt", self._publish_path)
        stats = {"method": "refit", "start_ts": int(start), "total_time": f"{time.time() - start:.1f} s", **log,
                 "skipped": len(datalist) - len(usable), "new_features": new}
        stats_file = output_dir / "stats_refit.json"
        stats_file.write_text(json.dumps(stats, indent=2))
        _atomic_copy(str(stats_file), self._stats_path)
        return stats

    def pre_process(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, Any]]:
        """The training items: each labelled image with its six scores (images whose label gives no
        scores are skipped, with the reason in the log)."""
        datalist: list[dict[str, Any]] = []
        skipped: list[str] = []
        for image_id in sorted(datastore.get_labeled_images()):
            try:
                target = read_target(datastore, image_id, self.model)
                path = datastore.get_image_uri(image_id)
                if not path or not os.path.exists(path):
                    raise LabelError(f"{image_id}: image file missing")
            except LabelError as e:
                skipped.append(str(e))
                continue
            except Exception as e:  # one broken item must not stop the training of the others
                logger.exception("%s: cannot make a training item", image_id)
                skipped.append(f"{image_id}: {type(e).__name__}: {e}")
                continue
            info = datastore.get_image_info(image_id)
            patient = info.get("PatientID") or (info.get(IMAGE_INFO_KEY) or {}).get("patient_id") or ""
            datalist.append({"image": path, "label": target["scores"], "image_id": image_id, "patient_id": patient})
            logger.info("training item %s: Brixia %s (%s)", image_id, target["brixia"], target["source"])
        for reason in skipped:
            logger.warning("skipped: %s", reason)
        if not datalist:
            raise ValueError("no labelled image gives six Brixia scores: save corrected zone maps or {'brixia': ...} first")
        logger.info("%d training items, %d skipped", len(datalist), len(skipped))
        return datalist

    def partition_datalist(self, context: Context, shuffle: bool = False) -> tuple[list, list]:
        # patient-wise split, as the bundle does: no patient on both sides
        val_split = float(context.request.get("val_split", 0.0))
        train, val = train_val_split(context.datalist, val_split, int(context.request.get("seed", 0)))
        logger.info("training on %d images, validating on %d", len(train), len(val))
        return list(train), list(val)

    # ---- network and optimisation ---------------------------------------------------------------------
    def network(self, context: Context) -> torch.nn.Module:
        path = self.model.current_path()  # continue from the served model (fine-tuned, else base)
        if path is None:
            warn_random_weights(self.model.paths)
        bsnet = build_network(path)
        logger.info("fine-tuning from %s", path or "random initialisation")
        end_to_end = as_bool(context.request.get("end_to_end", False))
        bsnet.freeze([] if end_to_end else FROZEN_STAGES)
        return ZoneScorer(bsnet)

    def optimizer(self, context: Context) -> torch.optim.Optimizer:
        end_to_end = as_bool(context.request.get("end_to_end", False))
        lr = float(context.request.get("learning_rate", FINE_TUNING_LEARNING_RATE)) * (0.1 if end_to_end else 1.0)
        return torch.optim.AdamW(trainable_parameters(context.network), lr=lr, weight_decay=1e-4)

    def loss_function(self, context: Context) -> torch.nn.Module:
        return BrixiaScoreLoss(mae_weight=1.0)

    def lr_scheduler_handler(self, context: Context) -> LrScheduleHandler:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(context.optimizer, T_max=max(1, int(context.max_epochs)))
        return LrScheduleHandler(scheduler, print_lr=False)

    def load_path(self, output_dir: str, pretrained: bool = True) -> None:
        return None  # the network loads its weights itself (checkpoints of BS-Net, not of this wrapper)

    # ---- data ---------------------------------------------------------------------------------------------
    def _deterministic(self, context: Context) -> list:
        size = int(context.request.get("image_size", 512))
        if size % 32:
            raise ValueError(f"image_size must be a multiple of 32, got {size}")
        return [
            LoadCXRd(keys="image"),
            *cxr_preprocessingd("image", size).transforms,
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
            EnsureTyped(keys="label", dtype=torch.long, track_meta=False),
        ]

    def train_pre_transforms(self, context: Context) -> list:
        size = int(context.request.get("image_size", 512))
        # mild augmentation: a handful of corrections must not be memorised pixel by pixel. The mirror
        # (zone scores swapped) is there because inference scores each image with its mirror by default,
        # which does not help a head that never saw a mirrored image (bundle/docs/README.md, Performance)
        return self._deterministic(context) + [
            RandLateralFlipd(keys="image", label_key="label", prob=0.5),
            RandAffined(
                keys="image", prob=0.5, rotate_range=0.1, scale_range=0.05,
                translate_range=(0.03 * size, 0.03 * size), padding_mode="zeros",
            ),
            RandAdjustContrastd(keys="image", prob=0.3, gamma=(0.8, 1.25)),
            EnsureTyped(keys="image", dtype=torch.float32, track_meta=False),
            SelectItemsd(keys=("image", "label")),
        ]

    def val_pre_transforms(self, context: Context) -> list:
        return self._deterministic(context) + [SelectItemsd(keys=("image", "label"))]

    def train_post_transforms(self, context: Context) -> list:
        # the Brixia metrics rate zone probabilities (each zone's median score), not logits
        return [Activationsd(keys="pred", softmax=True, dim=-1)]  # validation reuses them (BasicTrainTask)

    def val_inferer(self, context: Context) -> SimpleInferer:
        return SimpleInferer()

    # ---- metrics ------------------------------------------------------------------------------------------
    def train_key_metric(self, context: Context) -> dict[str, Any]:
        return {"train_zone_accuracy": BrixiaScoreHandler("zone_accuracy", from_engine(["pred", "label"]))}

    def val_key_metric(self, context: Context) -> dict[str, Any]:
        return {"val_zone_mae": BrixiaScoreHandler("zone_mae", from_engine(["pred", "label"]))}

    def val_additional_metrics(self, context: Context) -> dict[str, Any]:
        return {
            name: BrixiaScoreHandler(metric, from_engine(["pred", "label"]))
            for name, metric in (
                ("val_global_mae", "global_mae"),
                ("val_zone_accuracy", "zone_accuracy"),
                ("val_kappa_quadratic", "kappa_quadratic"),
            )
        }

    def _create_evaluator(self, context: Context) -> SupervisedEvaluator | None:
        """As MONAI Label's, but the key metric (zone MAE) is better when lower."""
        if not context.val_datalist:
            return None
        handlers = list(self.val_handlers(context) or [])
        handlers.append(
            CheckpointSaver(
                save_dir=context.output_dir,
                save_dict={self._model_dict_key: context.network},
                save_key_metric=True,
                key_metric_filename=self._key_metric_filename,
                key_metric_negative_sign=True,
            )
        )
        return SupervisedEvaluator(
            device=context.device,
            val_data_loader=self.val_data_loader(context),
            network=context.network,
            inferer=self.val_inferer(context),
            postprocessing=self._validate_transforms(self.val_post_transforms(context), "Validation", "post"),
            key_val_metric=self.val_key_metric(context),
            additional_metrics=self.val_additional_metrics(context),
            metric_cmp_fn=lambda current, previous: previous < 0 or current < previous,
            val_handlers=handlers,
        )

    def finalize(self, context: Context) -> None:
        publisher = AtomicPublisher(
            self._stats_path, self._publish_path, self._key_metric_filename, context.start_ts, context.run_id,
            context.output_dir, context.trainer, context.evaluator,
        )
        engine = context.evaluator or context.trainer
        from ignite.engine import Events

        engine.add_event_handler(Events.EPOCH_COMPLETED, publisher)


def as_bool(value: Any) -> bool:
    """A request or ``--conf`` flag: a bool as it is, or its text ("1", "true", "yes", "on")."""
    return value if isinstance(value, bool) else str(value).strip().lower() in ("1", "true", "yes", "on")
