"""Eigen-CAM: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020, https://arxiv.org/abs/2008.00299.

Class-agnostic: the activations (positions x channels, centred per channel) are projected on their
first right singular vector. An SVD's sign is arbitrary, so by default the vector is flipped to load
positively on the channels on average (equivalently, the map correlates positively with the summed
activations): high values where features are strong. ``sign="svd"`` keeps LAPACK's sign, as
pytorch-grad-cam does. Eigen-Grad-CAM (:mod:`common.cam.eigengradcam`) projects gradients x activations instead.
"""

from __future__ import annotations

import torch

from common.cam.base import BaseCAM

SIGNS = ("activation", "svd")


def first_component(t: torch.Tensor, sign: str = "activation") -> torch.Tensor:
    """(B, C, *s) -> (B, *s): the centred positions x channels matrix projected on its first right singular vector."""
    if sign not in SIGNS:
        raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
    B, C, spatial = t.shape[0], t.shape[1], t.shape[2:]
    X = torch.nan_to_num(t.double()).reshape(B, C, -1).transpose(1, 2)  # (B, n, C); float64: small, stabler SVD
    X = X - X.mean(1, keepdim=True)
    v = torch.linalg.svd(X, full_matrices=False).Vh[:, 0, :]  # (B, C) first right singular vector
    if sign == "activation":
        v = v * torch.where(v.sum(1, keepdim=True) < 0, -1.0, 1.0)
    return (X @ v[:, :, None]).reshape(B, *spatial).to(t.dtype)  # (B, *s)


class EigenCAM(BaseCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): first principal component of the activations."""

    name = "eigencam"
    uses_gradients = False

    def __init__(self, sign: str = "activation"):
        if sign not in SIGNS:
            raise ValueError(f"sign must be 'activation' or 'svd', got {sign!r}")
        self.sign = sign

    def raw_map(self, acts, grads, ctx):
        return first_component(acts, self.sign)  # (B, *s)
