"""Where does the CAM peak *look*? Distance of the peak, and of the input evidence behind it, to the lesion.

CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150) places class evidence at the feature-map cell
whose features carry it. Nothing in training ties that cell to where the evidence is in the image: with
global average pooling the score is the same wherever the features fire, so a deep layer with a large
receptive field can encode "lesion over there" in a cell several pixels away. This diagnostic tells the
two apart per image: the CAM peak's distance to the lesion mask, and the distance to the mask of the input
pixel with the largest gradient of that peak value (what the peak cell responds to, a vanilla-gradient
saliency of one cell: Simonyan et al. 2014, https://arxiv.org/abs/1312.6034). A peak beside the lesion whose
gradient sits on it is a displaced explanation of a model that did use the lesion.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from common.cam.context import linear_head, resolve_targets, score_coefficients
from common.cam.hooks import LayerCapture, frozen
from common.cam.scoring import region_masks
from common.models import to_model_input


def _distance_to_mask(mask: np.ndarray, y: int, x: int) -> float:
    ys, xs = np.nonzero(mask)
    return float(np.sqrt(((ys - y) ** 2 + (xs - x) ** 2).min()))


def cam_evidence_offsets(model, dataset, device, layer=None, batch_size: int = 16, region: str = "lesion",
                         target: int = 1) -> dict:
    """Per image with the region: (peak distance, evidence distance) in pixels from the CAM peak of class
    ``target`` at ``layer`` to the region (see :func:`cam_evidence_by_region`). Returns arrays "peak", "evidence"."""
    return cam_evidence_by_region(model, dataset, device, layer, batch_size, (region,), target)[region]


def cam_evidence_by_region(model, dataset, device, layer=None, batch_size: int = 16,
                           regions: Sequence[str] = ("lesion",), target: int = 1) -> dict:
    """{region: {"peak": (N,), "evidence": (N,)}} from one forward and one backward pass per batch.

    For each image that has the region: the distance in pixels from the peak of the CAM of class ``target`` at
    ``layer`` (default: the features the linear head pools) to the region, and that of the input pixel with the
    largest gradient of the peak value. The region is the lesion mask or (``"marker"``) the L/R marker's box
    (:func:`common.cam.scoring.region_masks`); the class is scored as every CAM method scores it
    (:func:`common.cam.context.score_coefficients`: a 1-output head's class 0 is the negated logit).
    """
    head = linear_head(model)
    if head is None:
        raise ValueError("the model has no linear head (classifier / fc): CAM is undefined")
    layer = layer if layer is not None else model.cam_layers()[4]
    peak_d = {r: [] for r in regions}
    evid_d = {r: [] for r in regions}
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        masks = {r: region_masks(batch, r) for r in regions}  # (B, H, W) bool each
        x = to_model_input(batch["image"].to(device)).requires_grad_(True)  # (B, 3, H, W)
        with frozen(model), LayerCapture({"f": layer}) as cap:
            with torch.enable_grad():
                logits = model(x)  # (B, K)
                feats = cap.activations["f"]  # (B, C, h, w)
                coef = score_coefficients(resolve_targets(logits.detach(), target), logits.shape[1])  # (B, K)
                w = (coef.to(head.weight.dtype) @ head.weight).detach()  # (B, C): CAM's weights (common.cam.cam)
                cam = torch.einsum("bc,bchw->bhw", w, feats)[:, None]  # (B, 1, h, w)
                # the peak of the map the CAM methods score (common.cam.normalize: ReLU, then upsampling), so this
                # pointing game is theirs; its gradient is that of the raw map's value there
                shown = F.interpolate(cam.clamp_min(0), size=x.shape[-2:], mode="bilinear",
                                      align_corners=False).flatten(1)  # (B, H*W)
                idx = shown.argmax(1)
                flat_map = ~(shown.max(1).values > shown.min(1).values)  # no peak (all-negative CAM): a miss
                raw = F.interpolate(cam, size=x.shape[-2:], mode="bilinear", align_corners=False).flatten(1)
                # images do not interact (eval-mode BN), so one backward gives every image's own gradient
                raw.gather(1, idx[:, None]).sum().backward()
        grad = x.grad.abs().sum(1).cpu().numpy()  # (B, H, W)
        W = x.shape[-1]
        for i in range(len(grad)):
            py, px = divmod(int(idx[i]), W)
            gy, gx = np.unravel_index(int(grad[i].argmax()), grad[i].shape)
            for r, m in masks.items():
                if not m[i].any():
                    continue
                if flat_map[i]:  # as common.metrics.pointing_game: a flat map points nowhere
                    peak_d[r].append(np.inf)
                    evid_d[r].append(np.inf)
                    continue
                peak_d[r].append(_distance_to_mask(m[i], py, px))
                evid_d[r].append(_distance_to_mask(m[i], int(gy), int(gx)))
    return {r: {"peak": np.asarray(peak_d[r]), "evidence": np.asarray(evid_d[r])} for r in regions}


def summarize_offsets(offsets: dict, tolerance: int) -> dict:
    """Pointing game of the peak and of its evidence (within ``tolerance`` px), and median distances."""
    p, e = offsets["peak"], offsets["evidence"]  # inf: a flat map (no peak), a miss
    med = lambda d: float(np.median(d[np.isfinite(d)])) if np.isfinite(d).any() else float("nan")  # noqa: E731
    return {"n": int(len(p)), "peak_pointing_game": float((p <= tolerance).mean()),
            "evidence_pointing_game": float((e <= tolerance).mean()),
            "median_peak_px": med(p), "median_evidence_px": med(e),
            "displaced": float(((p > tolerance) & (e <= tolerance)).mean())}
