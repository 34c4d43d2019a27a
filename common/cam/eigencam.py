"""Eigen-CAM: Muhammad & Yeasin, "Eigen-CAM: Class Activation Map using Principal Components",
IJCNN 2020, https://arxiv.org/abs/2008.00299.

Class-agnostic: the activations (positions x channels, centred per channel) are projected on their
first right singular vector. An SVD's sign is arbitrary, so by default the vector is flipped to load
positively on the channels on average (equivalently, the map correlates positively with the summed
activations): high values where features are strong. ``sign="svd"`` keeps LAPACK's sign, as
pytorch-grad-cam does.
"""

from __future__ import annotations

import torch

from common.cam.base import BaseCAM


class EigenCAM(BaseCAM):
    """Eigen-CAM (Muhammad & Yeasin 2020): first principal component of the activations."""

    name = "eigencam"
    uses_gradients = False

    def __init__(self, sign: str = "activation"):
        if sign not in ("activation", "svd"):
            raise ValueError(f"sign must be 'activation' or 'svd', got {sign!r}")
        self.sign = sign

    def raw_map(self, acts, grads, ctx):
        B, C, h, w = acts.shape
        X = acts.double().reshape(B, C, h * w).transpose(1, 2)  # (B, hw, C); float64: small, stabler SVD
        X = X - X.mean(1, keepdim=True)
        v = torch.linalg.svd(X, full_matrices=False).Vh[:, 0, :]  # (B, C) first right singular vector
        if self.sign == "activation":
            v = v * torch.where(v.sum(1, keepdim=True) < 0, -1.0, 1.0)
        return (X @ v[:, :, None]).reshape(B, h, w).to(acts.dtype)  # (B, h, w)
