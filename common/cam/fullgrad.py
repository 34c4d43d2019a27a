"""FullGrad: Srinivas & Fleuret, "Full-Gradient Representation for Neural Network Visualization", NeurIPS 2019,
https://arxiv.org/abs/1905.00780.

Not a one-layer method: the map sums the input-gradient term |x * dS/dx| and, for every convolution and batch norm
with a bias, the bias-gradient term |b * dS/dz| of its output z (a batch norm's bias is its effective one in eval
mode, beta - mu gamma / sqrt(var + eps)). Each channel of each term is min-max scaled at its own resolution, the
channels summed, upsampled to the input and all terms summed and scaled once more -- pytorch-grad-cam's
post-processing (https://github.com/jacobgil/pytorch-grad-cam), including its 1e-7 in the scaling, so the maps agree.
All gradients come from one forward and one backward pass with the model frozen (:func:`common.cam.hooks.frozen`).

    maps = FullGrad()(model, x, target=1)   # (B, H, W) in [0, 1]
"""

from __future__ import annotations

import torch
from torch import nn

from common.cam.context import Target, make_scorer
from common.cam.hooks import LayerCapture, frozen
from common.cam.normalize import upsample

BIAS_LAYERS = (nn.Conv2d, nn.Conv3d, nn.BatchNorm2d, nn.BatchNorm3d)
EPS = 1e-7  # pytorch-grad-cam's scale_cam_image: (v - min) / (max - min + 1e-7)


def bias_layers(model: nn.Module) -> dict[str, nn.Module]:
    """{name: module} of the convolutions and batch norms with a bias, in model order."""
    return {name: m for name, m in model.named_modules() if type(m) in BIAS_LAYERS and m.bias is not None}


def effective_bias(layer: nn.Module) -> torch.Tensor:
    """(C,) the bias the layer adds in eval mode (a batch norm's folded one)."""
    if isinstance(layer, (nn.BatchNorm2d, nn.BatchNorm3d)):
        return layer.bias - layer.running_mean * layer.weight / torch.sqrt(layer.running_var + layer.eps)
    return layer.bias


def _scale(t: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    t = t - t.amin(dims, keepdim=True)
    return t / (t.amax(dims, keepdim=True) + EPS)


class FullGrad:
    """FullGrad (Srinivas & Fleuret 2019): input-gradient + every bias-gradient term, summed."""

    name = "fullgrad"

    def __call__(self, model: nn.Module, x: torch.Tensor, target: Target = None) -> torch.Tensor:
        """Maps (B, *S) float32 in [0, 1] for x (B, C, *S), S 2D or 3D."""
        assert x.ndim in (4, 5), f"expected (B, C, H, W) or (B, C, D, H, W), got {tuple(x.shape)}"
        layers = bias_layers(model)
        if not layers:
            raise ValueError("FullGrad: the model has no convolution or batch norm with a bias")
        size, dims = tuple(x.shape[2:]), tuple(range(2, x.ndim))
        with frozen(model), LayerCapture(layers, clone=True) as capture:
            xg = x.detach().requires_grad_(True)
            output = model(xg)
            scorer, _, _ = make_scorer(output.detach(), target)
            capture.check_unmodified()
            names = list(layers)
            grads = torch.autograd.grad(scorer(output).sum(), [xg] + [capture.activations[n] for n in names],
                                        allow_unused=True)
            with torch.no_grad():
                total = _scale((grads[0] * x).abs(), dims).sum(1)  # (B, *S)
                for name, g in zip(names, grads[1:], strict=True):
                    if g is None:  # a layer the score does not depend on (an unused branch)
                        continue
                    b = effective_bias(layers[name]).reshape(1, -1, *([1] * (g.ndim - 2)))
                    term = _scale((b * g).abs(), tuple(range(2, g.ndim))).sum(1, keepdim=True)  # (B, 1, *s)
                    total = total + upsample(term, size)[:, 0]
                return _scale(total[:, None], dims)[:, 0].float()  # (B, *S)
