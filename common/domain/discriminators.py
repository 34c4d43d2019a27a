"""Domain discriminators: a fully convolutional patch discriminator for output maps and a classifier for features.

``PatchDiscriminator`` follows AdaptSegNet (Tsai et al., CVPR 2018, https://arxiv.org/abs/1802.10349) and pOSAL
(Wang et al., IEEE TMI 2019, https://arxiv.org/abs/1902.07519): stride-2 4x4 convolutions with leaky ReLU and no
normalisation, one logit per patch ("source" = 1). ``DomainClassifier`` is DANN's domain head (Ganin et al. 2016)
on encoder features: a 1x1 convolution, global average pooling and a small MLP, one logit per image.

    d = PatchDiscriminator(in_channels=3)(softmax_maps)   # (B, 1, H / 2**depth, W / 2**depth)
    d = DomainClassifier(in_channels=128)(bottleneck)     # (B, 1)
"""

from __future__ import annotations

from torch import Tensor, nn


class PatchDiscriminator(nn.Module):
    """Fully convolutional source / target discriminator on (B, C, H, W) maps -> (B, 1, H', W') logits."""

    def __init__(self, in_channels: int, width: int = 16, depth: int = 4, slope: float = 0.2):
        super().__init__()
        if in_channels < 1 or width < 1 or depth < 1:
            raise ValueError(f"PatchDiscriminator needs positive sizes, got {in_channels}, {width}, {depth}")
        layers, c = [], in_channels
        for k in range(depth):
            layers += [nn.Conv2d(c, width * 2 ** k, 4, stride=2, padding=1), nn.LeakyReLU(slope, inplace=True)]
            c = width * 2 ** k
        layers.append(nn.Conv2d(c, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.in_channels = in_channels

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.net(x)


class DomainClassifier(nn.Module):
    """DANN's domain head on (B, C, h, w) features -> (B, 1) logits."""

    def __init__(self, in_channels: int, hidden: int = 64):
        super().__init__()
        self.in_channels = in_channels
        self.net = nn.Sequential(nn.Conv2d(in_channels, hidden, 1), nn.ReLU(inplace=True),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"expected (B, {self.in_channels}, h, w), got {tuple(x.shape)}")
        return self.net(x)
