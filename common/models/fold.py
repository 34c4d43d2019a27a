"""Inference copies of a network with each BatchNorm that directly follows a convolution folded into it.

In eval mode BatchNorm is an affine map per channel, so conv -> BN equals one conv with rescaled
weights and a bias (the folding every inference runtime does). Score-CAM runs the same network once per
channel, so the saved BN passes add up. Found pairs: adjacent Conv2d -> BatchNorm2d inside an
``nn.Sequential`` (DenseNet's stem conv0 -> norm0), and torchvision's ``_DenseLayer`` conv1 -> norm2
(its bottleneck). DenseNet's other BNs follow a concatenation, not a convolution, and stay as they are.
Outputs equal the original's up to float rounding (~1e-6 relative).
"""

from __future__ import annotations

import copy
import weakref

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (type(conv) is nn.Conv2d and type(bn) is nn.BatchNorm2d and bn.track_running_stats
            and bn.running_mean is not None and conv.out_channels == bn.num_features)


def folded_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """(eval-mode deep copy of ``model`` with conv -> BN pairs folded, number of BNs folded)."""
    from torchvision.models.densenet import _DenseLayer

    net = copy.deepcopy(model).eval()
    folded = 0
    for module in net.modules():
        if isinstance(module, _DenseLayer) and _foldable(module.conv1, module.norm2):
            module.conv1 = fuse_conv_bn_eval(module.conv1, module.norm2)
            module.norm2 = nn.Identity()
            folded += 1
        elif isinstance(module, nn.Sequential):
            names = list(module._modules)
            for a, b in zip(names, names[1:]):
                if _foldable(module._modules[a], module._modules[b]):
                    module._modules[a] = fuse_conv_bn_eval(module._modules[a], module._modules[b])
                    module._modules[b] = nn.Identity()
                    folded += 1
    return net, folded


_CACHE: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _state_key(model: nn.Module) -> tuple:
    """Changes whenever a parameter or buffer is replaced or updated in place (optimizer steps, loading)."""
    return tuple((id(t), t._version, t.device, t.dtype) for t in (*model.parameters(), *model.buffers()))


@torch.no_grad()
def cached_folded_copy(model: nn.Module) -> tuple[nn.Module, int]:
    """:func:`folded_copy`, kept per model and rebuilt only when its weights changed (a deep copy of
    DenseNet169 takes a few hundred ms, as long as a couple of its forward passes)."""
    key = _state_key(model)
    hit = _CACHE.get(model)
    if hit is not None and hit[0] == key:
        return hit[1], hit[2]
    net, n = folded_copy(model)
    _CACHE[model] = (key, net, n)
    return net, n
