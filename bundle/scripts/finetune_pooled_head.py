"""Does gradient fine-tuning keep, improve or spoil a fitted pooled linear zone classifier?

The MONAI Label app retrains the served model's scoring stage by gradient descent (AdamW, the bundle's
loss, cosine schedule, the best validated epoch published). Since 0.2.0 that stage is a logistic
regression fitted with a strong L2 penalty (``monai_bsnet.pooled_head``), which gradient steps do not
keep. This experiment measures what such a retraining does, on the folds of ``cv:pooled``: in each
fold the regression is fitted on the training images as ``cv:pooled`` fits it, then fine-tuned on the
same training images as the app does (a patient-wise 20% validation split choosing the best of the
epochs 1..N; batches of 4 images, each a random cached copy; AdamW with weight decay 1e-4), and the
held-out images are scored before and after. It runs on the pooled zone vectors, which are exactly
what the pooled head's trainable layer sees.

    python bundle/scripts/finetune_pooled_head.py --data DATA --cache WORK/frozen_stages \\
        --out bundle/logs/finetune_experiment/pooled_finetune.json --learning-rates 1e-3 1e-4 1e-5

About 2 min to pool the cache of the 138 images, then under a minute per learning rate on two cores.
"""

from __future__ import annotations

import json

import numpy as np
import torch

from pooled_experiments import experiment_parser, pooled_public_images

from monai_bsnet.cross_validation import patient_fold_indices
from monai_bsnet.losses import BrixiaScoreLoss
from monai_bsnet.metrics import METRICS
from monai_bsnet.pooled_head import classifier_probabilities, choose_regularisation, fit_zone_regression, regression_to_classifier, zone_samples
from monai_bsnet.training import train_val_split
from monai_bsnet.transforms import swap_zone_sides
from monai_bsnet.zones import NUM_SCORES, NUM_ZONES

zone_mae = METRICS["zone_mae"]


def fine_tune(layer, features, scores, train, val, learning_rate: float, epochs: int, seed: int) -> tuple[int, float]:
    """Train ``layer`` as the app does; load its best validated epoch (>= 1); return that epoch and its zone MAE."""
    optimizer = torch.optim.AdamW(layer.parameters(), lr=learning_rate, weight_decay=1e-4)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs)
    loss_function = BrixiaScoreLoss(mae_weight=1.0)
    rng = np.random.default_rng(seed)
    best = (np.inf, 0, None)
    for epoch in range(1, epochs + 1):
        order = rng.permutation(train)
        for start in range(0, len(order), 4):
            batch = order[start : start + 4]
            copies = rng.integers(0, features.shape[1], len(batch))
            x = torch.as_tensor(np.stack([features[n, c] for n, c in zip(batch, copies)]))
            y = torch.as_tensor(np.stack([swap_zone_sides(scores[n]) if c % 2 else scores[n] for n, c in zip(batch, copies)]))
            loss = loss_function(layer(x.reshape(-1, x.shape[-1])).reshape(len(batch), NUM_ZONES, NUM_SCORES), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
        error = zone_mae(classifier_probabilities(layer, features, val), scores[val])
        if error < best[0]:
            best = (error, epoch, {k: v.clone() for k, v in layer.state_dict().items()})
    layer.load_state_dict(best[2])
    return best[1], float(best[0])


def main(argv=None) -> int:
    parser = experiment_parser(__doc__)
    parser.add_argument("--learning-rates", type=float, nargs="+", default=[1e-3, 1e-4, 1e-5])
    parser.add_argument("--epochs", type=int, default=20, help="the app's default max_epochs")
    args = parser.parse_args(argv)
    items, cache, features, scores, groups = pooled_public_images(args)
    row = {item["image"]: i for i, item in enumerate(items)}  # for the inner split, which returns items
    result = {"n_images": len(items), "epochs": args.epochs, "cache": cache.settings, "runs": {}}
    for learning_rate in args.learning_rates:
        fitted, tuned = np.zeros((len(items), NUM_ZONES, NUM_SCORES)), np.zeros((len(items), NUM_ZONES, NUM_SCORES))
        folds = []
        for k, (train_rows, test_rows) in enumerate(patient_fold_indices(items, args.folds)):
            c, _ = choose_regularisation(features, scores, groups, train_rows)
            layer = regression_to_classifier(fit_zone_regression(*zone_samples(features, scores, train_rows, range(features.shape[1])), c))
            fitted[test_rows] = classifier_probabilities(layer, features, test_rows)
            inner_train, inner_val = train_val_split([items[i] for i in train_rows], 0.2, 0)
            epoch, val_error = fine_tune(layer, features, scores, [row[i["image"]] for i in inner_train], [row[i["image"]] for i in inner_val],
                                         learning_rate, args.epochs, k)
            tuned[test_rows] = classifier_probabilities(layer, features, test_rows)
            folds.append({"fold": k, "chosen_C": c, "best_epoch": epoch, "zone_mae_fitted": round(zone_mae(fitted[test_rows], scores[test_rows]), 4),
                          "zone_mae_fine_tuned": round(zone_mae(tuned[test_rows], scores[test_rows]), 4)})
        result["runs"][str(learning_rate)] = {"zone_mae_fitted": round(zone_mae(fitted, scores), 4), "zone_mae_fine_tuned": round(zone_mae(tuned, scores), 4),
                                              "global_mae_fitted": round(METRICS["global_mae"](fitted, scores), 3),
                                              "global_mae_fine_tuned": round(METRICS["global_mae"](tuned, scores), 3), "folds": folds}
        print(learning_rate, {k: v for k, v in result["runs"][str(learning_rate)].items() if k != "folds"}, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
