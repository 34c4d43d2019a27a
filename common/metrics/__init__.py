"""Metrics for segmentation, classification and localization; inputs are shape-checked numpy/torch arrays."""

from common.metrics.classification import (
    accuracy,
    auroc,
    binary_confusion,
    binary_metrics,
    cohen_kappa,
    sensitivity_specificity,
)
from common.metrics.localization import box_iou, energy_pointing_game, mask_to_box, pointing_game
from common.metrics.segmentation import dice, iou

__all__ = [
    "accuracy", "auroc", "binary_confusion", "binary_metrics", "box_iou", "cohen_kappa", "dice", "energy_pointing_game",
    "iou", "mask_to_box", "pointing_game", "sensitivity_specificity",
]
