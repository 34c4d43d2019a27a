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

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from common.cam import LayerCapture, frozen
from common.cam.base import linear_head
from common.models import to_model_input


def _distance_to_mask(mask: np.ndarray, y: int, x: int) -> float:
    ys, xs = np.nonzero(mask)
    return float(np.sqrt(((ys - y) ** 2 + (xs - x) ** 2).min()))


def cam_evidence_offsets(model, dataset, device, layer=None, batch_size: int = 16, region: str = "lesion",
                         target: int = 1) -> dict:
    """Per abnormal image: (peak distance, evidence distance) in pixels from the CAM peak of class ``target`` (1:
    abnormal, the logit of a 1-output head) at ``layer``
    (default: the features the linear head pools) to the region: the lesion mask, or (``region="marker"``)
    the L/R marker's box (see ``common.cam.scoring.region_masks``). Returns arrays "peak", "evidence".
    """
    from common.cam.scoring import region_masks

    head = linear_head(model)
    if head is None:
        raise ValueError("the model has no linear head (classifier / fc): CAM is undefined")
    layer = layer if layer is not None else model.cam_layers()[4]
    peak_d, evid_d = [], []
    for batch in DataLoader(dataset, batch_size=batch_size, shuffle=False):
        masks = region_masks(batch, region)  # (B, H, W) bool
        x = to_model_input(batch["image"].to(device)).requires_grad_(True)  # (B, 3, H, W)
        with frozen(model), LayerCapture({"f": layer}) as cap:
            with torch.enable_grad():
                model(x)
                feats = cap.activations["f"]  # (B, C, h, w)
                # a 1-output head scores class 1 with +logit, class 0 with -logit; a K-output head: its row
                w = (head.weight[0] * (1.0 if target == 1 else -1.0) if head.weight.shape[0] == 1
                     else head.weight[target]).detach()
                cam = torch.einsum("c,bchw->bhw", w, feats)[:, None]  # (B, 1, h, w)
                # the peak of the map the CAM methods score (common.cam.base: ReLU, then upsampling), so this
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
        for i, m in enumerate(masks):
            if not m.any():
                continue
            if flat_map[i]:  # as common.metrics.pointing_game: a flat map points nowhere
                peak_d.append(np.inf)
                evid_d.append(np.inf)
                continue
            py, px = divmod(int(idx[i]), W)
            gy, gx = np.unravel_index(int(grad[i].argmax()), grad[i].shape)
            peak_d.append(_distance_to_mask(m, py, px))
            evid_d.append(_distance_to_mask(m, int(gy), int(gx)))
    return {"peak": np.asarray(peak_d), "evidence": np.asarray(evid_d)}


def summarize_offsets(offsets: dict, tolerance: int) -> dict:
    """Pointing game of the peak and of its evidence (within ``tolerance`` px), and median distances."""
    p, e = offsets["peak"], offsets["evidence"]  # inf: a flat map (no peak), a miss
    med = lambda d: float(np.median(d[np.isfinite(d)])) if np.isfinite(d).any() else float("nan")  # noqa: E731
    return {"n": int(len(p)), "peak_pointing_game": float((p <= tolerance).mean()),
            "evidence_pointing_game": float((e <= tolerance).mean()),
            "median_peak_px": med(p), "median_evidence_px": med(e),
            "displaced": float(((p > tolerance) & (e <= tolerance)).mean())}
