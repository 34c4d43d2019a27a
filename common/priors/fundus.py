"""Fundus priors: the optic cup lies inside the optic disc, each is one filled blob, and the disc is the brightest
spot of the photograph.

Fu et al., "Joint Optic Disc and Cup Segmentation Based on Multi-label Deep Network and Polar Transformation" (M-Net),
IEEE TMI 2018, https://arxiv.org/abs/1801.00926, predict disc and cup as two overlapping channels and post-process
each with its largest connected component; the cup outside the disc is anatomically impossible (the cup is the
excavation of the disc), so whatever the cup channel finds there is cut back.
"""

from __future__ import annotations

import cv2
import numpy as np

from common.priors.topology import fill_holes, largest_component


def cup_inside_disc(disc: np.ndarray, cup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(disc, cup) bool (H, W) -> the disc as its largest component, filled; the cup as the largest component of
    what lies inside that disc, filled (and so still inside it)."""
    disc, cup = np.asarray(disc, bool), np.asarray(cup, bool)
    assert disc.shape == cup.shape and disc.ndim == 2, (disc.shape, cup.shape)
    disc = fill_holes(largest_component(disc))
    cup = fill_holes(largest_component(cup & disc)) & disc
    return disc, cup


def disc_centre(image: np.ndarray, disc_fraction: float = 0.16) -> tuple[float, float]:
    """(x, y) of the optic disc in a fundus photograph (H, W, 3) or (H, W): the maximum of the brightness smoothed
    at the disc's scale (``disc_fraction``: its diameter over the image side, about 0.16 in REFUGE-like crops; the
    disc is the brightest structure of the fundus, Sinthanayothin et al. 1999)."""
    image = np.asarray(image, np.float32)
    grey = image.mean(-1) if image.ndim == 3 else image             # (H, W)
    assert grey.ndim == 2, f"image must be (H, W) or (H, W, 3), got {image.shape}"
    sigma = max(disc_fraction * max(grey.shape) / 4, 0.5)           # a Gaussian of the disc's radius / 2
    smooth = cv2.GaussianBlur(grey, (0, 0), sigma)
    y, x = np.unravel_index(int(np.argmax(smooth)), smooth.shape)
    return float(x), float(y)
