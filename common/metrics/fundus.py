"""REFUGE's optic disc / cup metrics: Dice of the disc and of the cup, vertical cup-to-disc ratio (vCDR) and its MAE.

As the REFUGE challenge scores them (Orlando et al. 2020, Medical Image Analysis 59, https://arxiv.org/abs/1910.03667):
masks are REFUGE-encoded (0 cup, 128 disc rim, 255 background), the disc includes the cup, Dice is computed per
image and averaged, and the vertical diameter of a structure is its tallest column of pixels.

    from common.metrics.fundus import fundus_scores
    fundus_scores(pred_masks, true_masks)   # {"disc_dice", "cup_dice", "vcdr_mae", "per_image": {...}}
"""

from __future__ import annotations

import numpy as np

from common.errors import InputError

CUP, RIM, BACKGROUND = 0, 128, 255  # REFUGE grey levels


def check_refuge(mask: np.ndarray, what: str = "mask") -> np.ndarray:
    """``mask`` as uint8 if it holds REFUGE's levels only; InputError naming the stray values otherwise."""
    mask = np.asarray(mask)
    bad = np.setdiff1d(np.unique(mask), [CUP, RIM, BACKGROUND])
    if bad.size:
        raise InputError(f"{what} holds values {bad[:5].tolist()} outside REFUGE's 0 (cup) / 128 (rim) / 255 "
                         "(background)", hint="save masks losslessly and resize them with nearest-neighbour")
    return mask.astype(np.uint8)


def disc_and_cup(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """REFUGE mask (..., H, W) -> (disc, cup) bool arrays; the disc includes the cup."""
    mask = check_refuge(mask)
    return mask != BACKGROUND, mask == CUP


def vertical_diameter(binary: np.ndarray) -> np.ndarray:
    """Tallest column of a binary (..., H, W) mask in pixels (REFUGE's vertical diameter)."""
    return np.asarray(binary, bool).sum(-2).max(-1)


def vcdr(mask: np.ndarray) -> np.ndarray | float:
    """Vertical cup-to-disc ratio of REFUGE masks (..., H, W): cup's vertical diameter over the disc's (0: no disc)."""
    disc, cup = disc_and_cup(mask)
    d, c = vertical_diameter(disc).astype(np.float64), vertical_diameter(cup).astype(np.float64)
    ratio = np.divide(c, d, out=np.zeros_like(c), where=d > 0)
    return float(ratio) if ratio.ndim == 0 else ratio


def dice_per_image(pred: np.ndarray, truth: np.ndarray, empty: float = 1.0) -> np.ndarray:
    """Dice 2|P∩T| / (|P| + |T|) of each (H, W) pair of bool (N, H, W) stacks; both empty -> ``empty``."""
    pred, truth = np.asarray(pred, bool), np.asarray(truth, bool)
    if pred.shape != truth.shape or pred.ndim != 3:
        raise ValueError(f"dice_per_image needs two (N, H, W) stacks of one shape, got {pred.shape} {truth.shape}")
    inter = (pred & truth).sum((1, 2)).astype(np.float64)
    total = (pred.sum((1, 2)) + truth.sum((1, 2))).astype(np.float64)
    return np.divide(2 * inter, total, out=np.full(total.shape, float(empty)), where=total > 0)


def fundus_scores(pred: np.ndarray, truth: np.ndarray) -> dict:
    """REFUGE's three numbers of REFUGE-encoded (N, H, W) predicted and true masks: mean disc Dice, mean cup Dice,
    mean absolute vCDR error; ``per_image`` holds each image's disc / cup Dice, vCDR and true vCDR."""
    pred, truth = check_refuge(pred, "predicted mask"), check_refuge(truth, "true mask")
    if pred.shape != truth.shape:
        raise ValueError(f"predicted masks {pred.shape} and true masks {truth.shape} differ in shape")
    if pred.ndim == 2:
        pred, truth = pred[None], truth[None]
    (pd, pc), (td, tc) = disc_and_cup(pred), disc_and_cup(truth)
    per = {"disc_dice": dice_per_image(pd, td), "cup_dice": dice_per_image(pc, tc),
           "vcdr": np.atleast_1d(vcdr(pred)), "vcdr_true": np.atleast_1d(vcdr(truth))}
    return {"disc_dice": float(per["disc_dice"].mean()), "cup_dice": float(per["cup_dice"].mean()),
            "vcdr_mae": float(np.abs(per["vcdr"] - per["vcdr_true"]).mean()), "n_images": int(len(pred)),
            "per_image": {k: v.tolist() for k, v in per.items()}}
