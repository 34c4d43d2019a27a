"""Eigen-Grad-CAM: Eigen-CAM (Muhammad & Yeasin, IJCNN 2020, https://arxiv.org/abs/2008.00299) of the gradient-
weighted activations g * A, as pytorch-grad-cam's ``EigenGradCAM`` (https://github.com/jacobgil/pytorch-grad-cam):
class-discriminative, unlike Eigen-CAM, and smoother than Grad-CAM. The SVD's sign is fixed as
:mod:`common.cam.eigencam` fixes it (``sign="activation"``: the component loads positively on the channels of
g * A on average); ``sign="svd"`` keeps LAPACK's sign, as the reference does.
"""

from __future__ import annotations

from common.cam.base import BaseCAM
from common.cam.eigencam import SIGNS, first_component


class EigenGradCAM(BaseCAM):
    """Eigen-Grad-CAM: first principal component of gradients x activations."""

    name = "eigengradcam"

    def __init__(self, sign: str = "activation"):
        if sign not in SIGNS:
            raise ValueError(f"sign must be one of {SIGNS}, got {sign!r}")
        self.sign = sign

    def raw_map(self, acts, grads, ctx):
        return first_component(grads * acts, self.sign)  # (B, *s)
