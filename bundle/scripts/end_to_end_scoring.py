"""End-to-end scoring on a GPU: does training the encoder with the scoring loss beat the pooled head
fitted on frozen features (``cv:pooled``, zone MAE 0.629 / global MAE 2.83)?

Every CPU experiment so far kept the encoder as stage a left it (trained on lung masks alone); the
"what would help" list of ``bundle/docs/experiments.md`` puts first an encoder trained with the
scoring loss, as the authors' final "end-to-end" step, which a 2-core machine cannot afford.

Per fold of ``cv:pooled`` (same patient-grouped folds, same C per fold):

1. the shipped network's frozen stages, and its pooled linear zone classifier fitted again on the
   training fold alone (logistic regression on pooled zone vectors of augmented copies, as
   ``cv:pooled``): epoch 0, the reference;
2. the encoder and that classifier trained together by AdamW with the scoring loss
   (:class:`~monai_bsnet.losses.BrixiaScoreLoss`) plus a distillation term that keeps the lung map
   the (frozen) U-Net++ decoder computes from the new features where the shipped network had it
   (BCE against the shipped network's lung probability on the same augmented image), so that the
   lungs, the alignment and the zone boxes stay as they are. Batch-norm statistics stay fixed (110
   images cannot re-estimate them), decoder and alignment are frozen. GPU augmentation like
   ``train.json``'s: mirror with the zone scores swapped, affine, gamma, blur, noise;
3. the classifier fitted again by logistic regression on the trained encoder's pooled vectors
   (``refit``): how the MONAI Label app would refit it on this encoder.

The test fold's zone probabilities (plain and mirrored TTA) are kept at the evaluation epochs;
``variants`` are run one after the other, each over all folds, then the shipped-model candidate of
the first (pre-registered) variant is trained on all images. A time budget stops the run early with
everything done so far written.

    # here (CPU): the brixia-public images as the network reads them, and the lungseg test split
    python bundle/scripts/end_to_end_scoring.py pack --data ../shared/data --out .devdata/e2e
    # on the GPU machine
    python bundle/scripts/end_to_end_scoring.py run --packed .devdata/e2e --out $OUT --budget-s 420
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import math
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from monai_bsnet.losses import BrixiaScoreLoss  # noqa: E402
from monai_bsnet.metrics import global_mae, lung_dice, zone_mae  # noqa: E402
from monai_bsnet.networks import BSNet, load_weights  # noqa: E402
from monai_bsnet.pooled_head import fit_zone_regression, pooled_zone_vectors, regression_to_classifier, zone_samples  # noqa: E402
from monai_bsnet.transforms import swap_zone_sides  # noqa: E402

#: What is compared, in this order; the first is the pre-registered one whose all-image model is the
#: shipping candidate. lr: AdamW learning rate of encoder and classifier; distill: weight of the lung-map
#: term; warmup: epochs of linear learning-rate warm-up before the cosine decay (0: none).
#: The first three ran in stop 21 (``logs/end_to_end_experiment``); the warm-up variants are the next
#: run's (``--only e2e_warm_lr1e-4_d5 ...``), after its first epochs' loss jump and its lung Dice loss.
VARIANTS = [
    {"name": "e2e_lr1e-4", "lr": 1e-4, "epochs": 30, "distill": 1.0, "warmup": 0},
    {"name": "e2e_lr3e-5", "lr": 3e-5, "epochs": 30, "distill": 1.0, "warmup": 0},
    {"name": "e2e_lr3e-4", "lr": 3e-4, "epochs": 30, "distill": 1.0, "warmup": 0},
    {"name": "e2e_warm_lr1e-4_d5", "lr": 1e-4, "epochs": 30, "distill": 5.0, "warmup": 3},
    {"name": "e2e_warm_lr3e-4_d5", "lr": 3e-4, "epochs": 30, "distill": 5.0, "warmup": 3},
]
EVAL_EPOCHS = (5, 10, 20, 30)


# ---- packing (CPU, where the data is) ------------------------------------------------------------

def _encoded(array: np.ndarray, **options) -> bytes:
    """An 8-bit picture as file bytes (Pillow's ``save`` options: ``format`` and the format's own)."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, **options)
    return buffer.getvalue()


def _as_uint8(image: torch.Tensor) -> np.ndarray:
    return np.clip(np.asarray(image)[0] * 255 + 0.5, 0, 255).astype(np.uint8)


def pack(data: Path, out: Path, limit: int | None, image_size: int) -> dict:
    """Write ``out/images.zip`` (the brixia-public images after the deterministic training transforms,
    8-bit JPEG, and the lungseg test split with its masks) and ``out/meta.json`` (scores, patients,
    the ``cv:pooled`` folds)."""
    from monai.transforms import Resize

    from monai_bsnet.cross_validation import patient_fold_indices
    from monai_bsnet.data import brixia_public_datalist, lungseg_datalist
    from monai_bsnet.transforms import LoadCXR, cxr_preprocessing

    items = brixia_public_datalist(data / "brixia-public")[:limit]
    fold = np.zeros(len(items), dtype=int)
    for k, (_, test) in enumerate(patient_fold_indices(items, 5)):
        fold[test] = k
    load, preprocess = LoadCXR(), cxr_preprocessing(image_size)
    resize = Resize((image_size, image_size), mode="nearest")
    lungs = lungseg_datalist(data / "lungseg", split="test")[:limit]
    out.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out / "images.zip", "w", compression=zipfile.ZIP_STORED) as archive:
        for n, item in enumerate(items):
            archive.writestr(f"brixia/{n:04d}.jpg", _encoded(_as_uint8(preprocess(load(item["image"]))), format="JPEG", quality=95))
        for n, item in enumerate(lungs):
            archive.writestr(f"lungseg/{n:04d}.jpg", _encoded(_as_uint8(preprocess(load(item["image"]))), format="JPEG", quality=95))
            mask = (np.asarray(resize(load(item["mask"])))[0] > 0.5).astype(np.uint8) * 255
            archive.writestr(f"lungseg/{n:04d}_mask.png", _encoded(mask, format="PNG", optimize=True))
    meta = {
        "image_size": image_size,
        "filenames": [Path(item["image"]).name for item in items],
        "patient_id": [item["patient_id"] for item in items],
        "label_senior": [list(map(int, item["label_senior"])) for item in items],
        "label_junior": [list(map(int, item["label_junior"])) for item in items],
        "fold": fold.tolist(),
        "n_lungseg": len(lungs),
    }
    (out / "meta.json").write_text(json.dumps(meta))
    return meta


def read_pack(folder: Path) -> tuple[dict, np.ndarray, np.ndarray, np.ndarray]:
    """meta, brixia images (N, S, S) uint8, lungseg test images and masks (M, S, S) uint8."""
    from PIL import Image

    meta = json.loads((folder / "meta.json").read_text())
    with zipfile.ZipFile(folder / "images.zip") as archive:
        def read(name: str) -> np.ndarray:
            return np.asarray(Image.open(io.BytesIO(archive.read(name))).convert("L"))

        images = np.stack([read(f"brixia/{n:04d}.jpg") for n in range(len(meta["filenames"]))])
        m = meta["n_lungseg"]
        lung_images = np.stack([read(f"lungseg/{n:04d}.jpg") for n in range(m)]) if m else np.zeros((0,) + images.shape[1:], np.uint8)
        masks = np.stack([read(f"lungseg/{n:04d}_mask.png") for n in range(m)]) if m else np.zeros_like(lung_images)
    return meta, images, lung_images, masks


# ---- GPU augmentation (train.json's random transforms, batched) -----------------------------------

def augment(images: torch.Tensor, scores: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A random draw of ``train.json``'s augmentation for a batch (B, 1, H, W) in [0, 1], on its device:
    lateral mirror (p 0.5, zone scores swapped), affine (p 0.7: rotation +-0.17 rad, scale +-10%,
    shift +-5%, zero padding), gamma 0.7-1.5 (p 0.5), Gaussian blur sigma 0.5-1.5 (p 0.2), Gaussian
    noise std up to 0.02 (p 0.2)."""
    b, device = images.shape[0], images.device

    def draw(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=device)

    mirror = draw(b) < 0.5
    images = torch.where(mirror[:, None, None, None], images.flip(-1), images)
    scores = torch.where(mirror[:, None], swap_zone_sides(scores), scores)

    do_affine = draw(b) < 0.7
    angle = (draw(b) * 2 - 1) * 0.17 * do_affine
    scale = 1 + (draw(b) * 2 - 1) * 0.1 * do_affine
    shift = (draw(b, 2) * 2 - 1) * 0.1 * do_affine[:, None]  # 5% of the side = 0.1 in [-1, 1] coordinates
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    gamma = torch.where(draw(b) < 0.5, 0.7 + draw(b) * 0.8, torch.ones(b, device=device))
    images = images.clamp(0, 1) ** gamma[:, None, None, None]

    blurred = images.clone()
    for i in torch.nonzero(draw(b) < 0.2).flatten().tolist():
        sigma = 0.5 + float(draw(1)) * 1.0
        x = torch.arange(-3, 4, device=device, dtype=images.dtype)
        kernel = torch.exp(-(x**2) / (2 * sigma**2))
        kernel = kernel / kernel.sum()
        one = F.conv2d(F.pad(images[i : i + 1], (3, 3, 0, 0), mode="replicate"), kernel.view(1, 1, 1, 7))
        blurred[i : i + 1] = F.conv2d(F.pad(one, (0, 0, 3, 3), mode="replicate"), kernel.view(1, 1, 7, 1))
    noisy = draw(b) < 0.2
    noise = torch.randn(images.shape, generator=generator, device=device) * (draw(b) * 0.02 * noisy)[:, None, None, None]
    return blurred + noise, scores


# ---- the pieces of one fold -----------------------------------------------------------------------

def autocast(device: torch.device):
    """bfloat16 for training on a GPU; everything measured (pooled vectors, probabilities, Dice) runs in
    float32, as inference does by default."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


@torch.no_grad()
def augmented_draws(images: torch.Tensor, scores: np.ndarray, copies: int, seed: int) -> list[tuple[torch.Tensor, np.ndarray]]:
    """``copies // 2`` versions of every image with their zone scores: the plain images, then seeded
    random draws of :func:`augment` (which may mirror an image and swap its scores)."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    draws = [(images, scores)]
    for _ in range(copies // 2 - 1):
        drawn, drawn_scores = augment(images, torch.as_tensor(scores, device=images.device), generator)
        draws.append((drawn, drawn_scores.cpu().numpy()))
    return draws


@torch.no_grad()
def pooled_vectors(net: BSNet, images: torch.Tensor, batch: int) -> np.ndarray:
    """(N, 2, 6, 1920) pooled zone vectors of the images and of their mirrors (``zone_samples``' layout)."""
    net.eval()
    views = [torch.cat([pooled_zone_vectors(net, view[i : i + batch]) for i in range(0, len(view), batch)]) for view in (images, images.flip(-1))]
    return torch.stack(views, 1).numpy()


def fit_classifier(net: BSNet, images: torch.Tensor, scores: np.ndarray, c: float, copies: int, seed: int, batch: int):
    """The pooled linear classifier fitted on ``copies`` versions of ``images`` (draws and their
    mirrors) by logistic regression, as ``cv:pooled`` fits it; returned as the network layer."""
    x, y = [], []
    for drawn, drawn_scores in augmented_draws(images, scores, copies, seed):
        samples = zone_samples(pooled_vectors(net, drawn, batch), drawn_scores, range(len(drawn)), [0, 1])
        x.append(samples[0])
        y.append(samples[1])
    return regression_to_classifier(fit_zone_regression(np.concatenate(x), np.concatenate(y), c))


@torch.no_grad()
def probabilities(net: BSNet, images: torch.Tensor, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """(N, 6, 4) zone probabilities, plain and averaged with the mirror (zones swapped back)."""
    net.eval()
    plain, mirrored = [], []
    for start in range(0, len(images), batch):
        x = images[start : start + batch]
        plain.append(torch.softmax(net(x).zone_logits.float(), -1))
        mirrored.append(swap_zone_sides(torch.softmax(net(x.flip(-1)).zone_logits.float(), -1)))
    p, m = torch.cat(plain).cpu().numpy(), torch.cat(mirrored).cpu().numpy()
    return p, (p + m) / 2


def trainable_copy(teacher: BSNet) -> BSNet:
    """The network the variant trains: encoder and zone classifier learn, the rest is frozen, and every
    batch-norm layer keeps the shipped statistics."""
    net = copy.deepcopy(teacher)
    net.freeze(["segmentation", "alignment"])
    net.freeze(["encoder", "scoring"], frozen=False)
    return net


def learning_rate_factor(step: int, steps: int, warmup: int = 0) -> float:
    """Multiplier of the learning rate at optimiser step ``step`` of ``steps``: a linear warm-up over the
    first ``warmup`` steps, then a cosine decay to 0 over the rest."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, steps - warmup) / max(steps - warmup, 1)))


def train_epochs(
    net: BSNet, teacher: BSNet, images: torch.Tensor, scores: torch.Tensor, variant: dict, seed: int, batch: int,
    on_epoch=None,
) -> list[float]:
    """Train ``net`` for ``variant["epochs"]`` (cosine learning rate); ``on_epoch(epoch)`` after each."""
    generator = torch.Generator(device=images.device).manual_seed(seed)
    params = [p for p in net.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=variant["lr"], weight_decay=1e-4)
    per_epoch = math.ceil(len(images) / batch)
    steps, warmup = variant["epochs"] * per_epoch, variant.get("warmup", 0) * per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: learning_rate_factor(step, steps, warmup))
    score_loss = BrixiaScoreLoss(mae_weight=1.0)
    losses = []
    for epoch in range(1, variant["epochs"] + 1):
        net.train()
        net.encoder.eval()  # fixed batch-norm statistics; the weights still learn
        order = torch.randperm(len(images), generator=generator, device=images.device)
        total = 0.0
        for start in range(0, len(images), batch):
            index = order[start : start + batch]
            x, y = augment(images[index], scores[index], generator)
            with autocast(images.device):
                with torch.no_grad():
                    target_lung = torch.sigmoid(teacher.segmentation(teacher.encoder(x)).float())
                out = net(x)
                loss = score_loss(out.zone_logits.float(), y)
                if variant["distill"]:
                    loss = loss + variant["distill"] * F.binary_cross_entropy_with_logits(out.lung_logits.float(), target_lung)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        losses.append(round(total / len(images), 4))
        if on_epoch is not None:
            on_epoch(epoch)
    return losses


@torch.no_grad()
def network_lung_dice(net: BSNet, images: torch.Tensor, masks: torch.Tensor, batch: int) -> list[float]:
    """Dice of the network's lung map (threshold 0.5) against the masks, per image."""
    net.eval()
    return [float(d) for i in range(0, len(images), batch)
            for d in lung_dice(torch.sigmoid(net(images[i : i + batch]).lung_logits.float()), masks[i : i + batch])]


# ---- the run ---------------------------------------------------------------------------------------

def summarise(predictions: dict[str, dict[str, list]], truth: np.ndarray) -> dict[str, dict[str, float]]:
    """Per prediction key: images scored so far, zone and global MAE of their median ratings, plain and with TTA."""
    summary = {}
    for key, table in predictions.items():
        done = [i for i, p in enumerate(table["probabilities"]) if p is not None]
        row: dict[str, float] = {"n": len(done)}
        for form, suffix in (("probabilities", ""), ("probabilities_tta", "_tta")):
            probs = np.array([table[form][i] for i in done])
            row.update({f"zone_mae{suffix}": round(zone_mae(probs, truth[done]), 4), f"global_mae{suffix}": round(global_mae(probs, truth[done]), 3)})
        summary[key] = row
    return summary


def print_summary(summary: dict[str, dict[str, float]]) -> None:
    for key, row in summary.items():
        print(f"{key:24s} n {row['n']:3d}  zone {row['zone_mae']:.3f} global {row['global_mae']:.2f}  tta {row['zone_mae_tta']:.3f} {row['global_mae_tta']:.2f}")


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False  # float32 measurements
    meta, images_u8, lung_u8, masks_u8 = read_pack(args.packed)
    n = len(images_u8)
    images = torch.as_tensor(images_u8, device=device)[:, None].float() / 255
    scores_np = np.array(meta["label_senior"])
    scores = torch.as_tensor(scores_np, device=device)
    folds = np.array(meta["fold"])
    fold_c = [f["chosen_C"] for f in json.loads(args.cv_log.read_text())["folds"]] if args.cv_log.is_file() else [0.001] * 5
    teacher = load_weights(BSNet(), args.weights).to(device).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    variants = [dict(v, epochs=args.epochs or v["epochs"]) for v in VARIANTS if not args.only or v["name"] in args.only][: args.variants]
    eval_epochs = sorted({e for e in EVAL_EPOCHS if e <= variants[0]["epochs"]} | {variants[0]["epochs"]})
    log = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu", "torch": torch.__version__, "n_images": n,
           "fold_C": fold_c, "copies": args.copies, "batch": args.batch, "eval_epochs": eval_epochs, "variants": variants,
           "filenames": meta["filenames"], "fold": folds.tolist(), "results": {}, "predictions": {}, "complete": False}
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        log["seconds"] = round(time.perf_counter() - start, 1)
        partial = args.out / "e2e_log.json.partial"
        partial.write_text(json.dumps(log))
        partial.replace(args.out / "e2e_log.json")

    def over_budget() -> bool:
        return time.perf_counter() - start > args.budget_s

    def keep(key: str, fold: int, test: np.ndarray, probs: tuple[np.ndarray, np.ndarray]) -> None:
        table = log["predictions"].setdefault(key, {"probabilities": [None] * n, "probabilities_tta": [None] * n, "folds_done": []})
        for i, row in enumerate(test):
            table["probabilities"][row] = np.round(probs[0][i], 5).tolist()
            table["probabilities_tta"][row] = np.round(probs[1][i], 5).tolist()
        table["folds_done"].append(fold)

    for variant in variants:
        for k in args.folds:
            if over_budget():
                log["stopped"] = f"time budget before {variant['name']} fold {k}"
                save()
                return log
            fold_start = time.perf_counter()
            train, test = np.flatnonzero(folds != k), np.flatnonzero(folds == k)
            if not len(test):
                continue
            net = trainable_copy(teacher)
            net.scoring.share_classifier(fit_classifier(net, images[train], scores_np[train], fold_c[k], args.copies, seed=k, batch=args.batch))
            if variant is variants[0]:
                keep("epoch0", k, test, probabilities(net, images[test], args.batch))

            def evaluate(epoch: int, net=net, test=test, k=k) -> None:
                if epoch in eval_epochs:
                    keep(f"{variant['name']}@{epoch}", k, test, probabilities(net, images[test], args.batch))

            losses = train_epochs(net, teacher, images[train], scores[train], variant, seed=100 + k, batch=args.batch, on_epoch=evaluate)
            refitted = copy.deepcopy(net)
            refitted.scoring.share_classifier(fit_classifier(refitted, images[train], scores_np[train], fold_c[k], args.copies, seed=k, batch=args.batch))
            keep(f"{variant['name']}+refit", k, test, probabilities(refitted, images[test], args.batch))
            log["results"].setdefault(variant["name"], []).append({"fold": k, "train_loss": losses, "seconds": round(time.perf_counter() - fold_start, 1)})
            save()
            print(f"{variant['name']} fold {k}: {time.perf_counter() - fold_start:.0f} s, loss {losses[0]} -> {losses[-1]}", flush=True)
        if variant is variants[0] and not args.no_final:
            final(args, log, teacher, variant, images, scores, scores_np, lung_u8, masks_u8, device)
            save()

    log["summary"] = summarise(log["predictions"], scores_np)
    log["complete"] = True
    save()
    print_summary(log["summary"])
    return log


def final(args, log, teacher, variant, images, scores, scores_np, lung_u8, masks_u8, device) -> None:
    """The shipping candidate: ``variant`` on every image (classifier fitted first at the shipped C), its
    encoder and scoring weights in half precision, split in parts under 16 MiB; lung Dice before/after."""
    begin = time.perf_counter()
    net = trainable_copy(teacher)
    net.scoring.share_classifier(fit_classifier(net, images, scores_np, args.final_c, args.copies, seed=999, batch=args.batch))
    losses = train_epochs(net, teacher, images, scores, variant, seed=1000, batch=args.batch)
    refitted = copy.deepcopy(net)
    refitted.scoring.share_classifier(fit_classifier(refitted, images, scores_np, args.final_c, args.copies, seed=999, batch=args.batch))
    entry = {"variant": variant["name"], "train_loss": losses, "C": args.final_c}
    if len(lung_u8):
        lung_images = torch.as_tensor(lung_u8, device=device)[:, None].float() / 255
        masks = torch.as_tensor(masks_u8, device=device)[:, None].float() / 255
        for name, model in (("shipped", teacher), ("final", net)):
            dice = network_lung_dice(model, lung_images, masks, args.batch)
            entry[f"lung_dice_{name}"] = {"mean": round(float(np.mean(dice)), 4), "median": round(float(np.median(dice)), 4), "min": round(float(np.min(dice)), 4)}
    for name, model in (("final", net), ("final_refit", refitted)):
        state = {k: v.detach().half().cpu() if v.is_floating_point() else v.cpu() for k, v in model.state_dict().items()
                 if k.startswith(("encoder.", "scoring."))}
        buffer = io.BytesIO()
        torch.save(state, buffer)
        blob = buffer.getvalue()
        part = 15 * 2**20
        entry[f"{name}_parts"] = []
        for j in range(0, len(blob), part):
            path = args.out / f"{name}.pt.part{j // part}"
            path.write_bytes(blob[j : j + part])
            entry[f"{name}_parts"].append(path.name)
        # probabilities of the training images themselves (a fit check, not a measure)
        entry[f"{name}_train_zone_mae"] = round(zone_mae(probabilities(model, images, args.batch)[0], scores_np), 4)
    entry["seconds"] = round(time.perf_counter() - begin, 1)
    log["final"] = entry
    print(f"final: {entry}", flush=True)


def kept_runs(runs: list[dict]) -> dict[str, str]:
    """What ``collect`` keeps as out-of-fold predictions, prediction key -> file stem: epoch 0, and each
    variant's last epoch and ``+refit`` (the other evaluation epochs: numbers only)."""
    kept = {"epoch0": "cv_e2e_epoch0"}
    for run_log in runs:
        for variant in run_log["variants"]:
            kept[f"{variant['name']}@{variant['epochs']}"] = f"cv_{variant['name']}"
            kept[f"{variant['name']}+refit"] = f"cv_{variant['name']}_refit"
    return kept


def collect(logs: list[Path], packed: Path, out: Path, baseline: Path | None = None) -> dict:
    """Join the runs' logs (a later one fills folds an earlier one left), write ``out/<kept name>_predictions.json``
    and ``.json`` (``summarise_predictions``) for every complete key of :func:`kept_runs`, and ``out/e2e_summary.json``:
    zone and global MAE of every key, run settings and timings, the all-image model's lung Dice, and each kept
    run compared (paired patient bootstrap, ``compare_predictions``) with epoch 0 and with ``baseline``'s predictions."""
    from monai_bsnet.cross_validation import compare_predictions, prediction_rows, summarise_predictions

    meta = json.loads((packed / "meta.json").read_text())
    items = [{"image": f, "filename": f, "patient_id": pid, "label_senior": s, "label_junior": j}
             for f, pid, s, j in zip(meta["filenames"], meta["patient_id"], meta["label_senior"], meta["label_junior"])]
    runs = [json.loads(path.read_text()) for path in logs]
    kept = kept_runs(runs)
    merged: dict[str, dict[str, list]] = {}
    for run_log in runs:
        for key, table in run_log["predictions"].items():
            into = merged.setdefault(key, {"probabilities": [None] * len(items), "probabilities_tta": [None] * len(items)})
            for form in into:
                into[form] = [old if new is None else new for old, new in zip(into[form], table[form])]
    out.mkdir(parents=True, exist_ok=True)
    summary: dict = {"runs": [{k: r.get(k) for k in ("device", "torch", "seconds", "stopped", "variants", "copies", "batch", "fold_C", "results")} for r in runs],
                     "final": next((r["final"] for r in runs if "final" in r), None)}
    summary["cross_validation"] = summarise(merged, np.array(meta["label_senior"]))
    written: dict[str, list[dict]] = {}  # file stem -> the out-of-fold rows written
    for key, table in merged.items():
        if key in kept and None not in table["probabilities"]:
            rows = prediction_rows(items, meta["fold"], np.array(table["probabilities"]), np.array(table["probabilities_tta"]))
            (out / f"{kept[key]}_predictions.json").write_text(json.dumps(rows))
            result = summarise_predictions(rows)
            result.update(recipe=key, n_folds=5, training="end_to_end_scoring.py (see e2e_summary.json)")
            (out / f"{kept[key]}.json").write_text(json.dumps(result, indent=1))
            written[kept[key]] = rows
    references = {"epoch0": written.get(kept["epoch0"])}
    if baseline is not None:
        references[baseline.name.removesuffix("_predictions.json")] = json.loads(baseline.read_text())
    summary["comparisons"] = {
        f"{name} vs {reference}": {key: compare_predictions(base, written[name], key) for key in ("probabilities", "probabilities_tta")}
        for name in kept.values() if name in written
        for reference, base in references.items() if base is not None and base is not written[name]
    }
    (out / "e2e_summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pack")
    p.add_argument("--data", type=Path, required=True, help="folder with brixia-public/ and lungseg/")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--limit", type=int, default=None, help="the first N images only (tests)")
    p.add_argument("--image-size", type=int, default=512)
    r = sub.add_parser("run")
    r.add_argument("--packed", type=Path, required=True)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--weights", type=Path, default=REPO / "bundle/models/model.pt")
    r.add_argument("--cv-log", type=Path, default=REPO / "bundle/logs/cv_pooled.json", help="per-fold C of cv:pooled")
    r.add_argument("--final-c", type=float, default=0.001, help="the shipped fit's C")
    r.add_argument("--copies", type=int, default=6, help="pooled copies per image for the logistic regressions (cv:pooled: 6)")
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--epochs", type=int, default=None, help="override every variant's epochs (tests)")
    r.add_argument("--variants", type=int, default=3, help="the first N variants (of --only's, if given)")
    r.add_argument("--budget-s", type=float, default=420.0)
    r.add_argument("--no-final", action="store_true")
    r.add_argument("--only", nargs="+", default=None, help="these variants (names) only, e.g. to finish a run the budget stopped")
    r.add_argument("--folds", type=int, nargs="+", default=list(range(5)), help="these folds only")
    r.add_argument("--cpu", action="store_true")
    c = sub.add_parser("collect")
    c.add_argument("logs", type=Path, nargs="+", help="e2e_log.json of each run, in order")
    c.add_argument("--packed", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--baseline", type=Path, default=None, help="out-of-fold predictions to compare with (cv_pooled_predictions.json)")
    args = parser.parse_args(argv)
    if args.command == "collect":
        print_summary(collect(args.logs, args.packed, args.out, args.baseline)["cross_validation"])
    elif args.command == "pack":
        meta = pack(args.data, args.out, args.limit, args.image_size)
        print(f"packed {len(meta['filenames'])} images, {meta['n_lungseg']} lungseg test images: {(args.out / 'images.zip').stat().st_size / 2**20:.1f} MiB")
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
