"""A small CAM-ready CNN classifier for CPU-sized label-efficiency studies (transfer, active learning, shallow vs deep,
attention).

Layout, for an input of (B, in_channels, H, W):

    stage k (k = 1..stages)   [conv3x3 - BN - ReLU] x 2, optional attention block, 2x2 max-pool (not after the last)
                              width * 2**(k-1) channels
    relu                      a module, so CAM methods hook the map the head pools (as in DenseNetClassifier)
    pool + dropout + linear   global average pool -> (B, C) embedding -> (B, num_outputs)

``attention`` is a factory ``channels -> nn.Module`` appended to each stage (squeeze-and-excitation, CBAM, ...), so an
attention study changes one argument and nothing else. ``embed`` gives the pooled features (core-set, BADGE,
k-NN probes); ``stages`` is an ``nn.Sequential`` of the stages in order, so fine-tuning strategies can name them.

    from common.models.smallcnn import SmallCNN
    logits = SmallCNN(in_channels=1, num_outputs=2)(images)   # (B, 2)
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


def conv_bn_relu(in_channels: int, out_channels: int) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True)]


class SmallCNN(nn.Module):
    """VGG-style stages of two 3x3 convs, global average pool, dropout, linear head."""

    def __init__(self, in_channels: int = 1, num_outputs: int = 2, width: int = 16, stages: int = 4,
                 dropout: float = 0.0, attention: Callable[[int], nn.Module] | None = None):
        super().__init__()
        if in_channels < 1 or num_outputs < 1 or width < 1 or stages < 1 or not 0 <= dropout < 1:
            raise ValueError(f"SmallCNN needs positive sizes and 0 <= dropout < 1, got in_channels={in_channels}, "
                             f"num_outputs={num_outputs}, width={width}, stages={stages}, dropout={dropout}")
        layers, channels = [], in_channels
        for k in range(stages):
            out = width * 2 ** k
            block = conv_bn_relu(channels, out) + conv_bn_relu(out, out)
            if attention is not None:
                block.append(attention(out))
            if k < stages - 1:
                block.append(nn.MaxPool2d(2))
            layers.append(nn.Sequential(*block))
            channels = out
        self.in_channels, self.num_outputs = in_channels, num_outputs
        self.stages = nn.Sequential(*layers)
        self.relu = nn.ReLU(inplace=False)  # hooked by CAM methods; not in-place so the hooked map keeps its values
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(channels, num_outputs)
        self.num_features = channels

    def features(self, x: Tensor) -> Tensor:
        """(B, in_channels, H, W) -> the last stage's map (B, C, H / 2**(stages-1), W / 2**(stages-1))."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.relu(self.stages(x))

    def embed(self, x: Tensor) -> Tensor:
        """The pooled features (B, C) the linear head reads."""
        return self.pool(self.features(x)).flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.dropout(self.embed(x)))  # (B, num_outputs)

    def cam_layers(self) -> dict[int, nn.Module]:
        """Stage k (1..stages) -> the module whose output is that stage's map (the last one: the hooked ReLU)."""
        layers = {k + 1: stage for k, stage in enumerate(self.stages)}
        layers[len(self.stages)] = self.relu
        return layers


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


if __name__ == "__main__":  # pragma: no cover - a quick shape check
    print(SmallCNN()(torch.zeros(2, 1, 64, 64)).shape, count_parameters(SmallCNN()))
