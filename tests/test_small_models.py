"""The small CNN classifier and U-Net shared by the 02-04 studies: shapes, parameter counts, the attention hooks."""

import pytest
import torch
from torch import nn

from common.models.smallcnn import SmallCNN, count_parameters
from common.models.unet import UNet


def test_smallcnn_shapes_and_embedding():
    net = SmallCNN(in_channels=1, num_outputs=3, width=4, stages=3).eval()
    x = torch.randn(2, 1, 32, 32)
    assert net(x).shape == (2, 3)
    assert net.features(x).shape == (2, 16, 8, 8)  # width * 2**(stages-1) channels at /2**(stages-1)
    emb = net.embed(x)
    assert emb.shape == (2, 16)
    torch.testing.assert_close(net.classifier(emb), net(x))  # dropout 0: the head reads exactly the embedding
    assert set(net.cam_layers()) == {1, 2, 3} and net.cam_layers()[3] is net.relu


def test_smallcnn_parameter_count_by_hand():
    # conv3x3 without bias + BN (2 per channel), two per stage; linear head with bias
    w, cin, k = 4, 1, 2
    expected, c = 0, cin
    for s in range(2):
        out = w * 2 ** s
        expected += 9 * c * out + 2 * out + 9 * out * out + 2 * out
        c = out
    expected += c * k + k
    assert count_parameters(SmallCNN(in_channels=cin, num_outputs=k, width=w, stages=2)) == expected


def test_smallcnn_attention_factory_is_called_per_stage():
    seen = []

    def factory(channels):
        seen.append(channels)
        return nn.Identity()

    SmallCNN(width=4, stages=3, attention=factory)
    assert seen == [4, 8, 16]


def test_smallcnn_rejects_bad_input():
    with pytest.raises(ValueError, match=r"expected \(B, 1, H, W\)"):
        SmallCNN()(torch.zeros(1, 3, 32, 32))
    with pytest.raises(ValueError, match="dropout"):
        SmallCNN(dropout=1.0)


def test_unet_shapes_features_and_gates():
    net = UNet(in_channels=3, num_classes=3, width=4, depth=3)
    logits, bottom = net(torch.randn(2, 3, 32, 32), features=True)
    assert logits.shape == (2, 3, 32, 32) and bottom.shape == (2, 32, 4, 4)

    calls = []

    class Recorder(nn.Module):
        def __init__(self, skip_ch, gating_ch):
            super().__init__()
            self.skip_ch, self.gating_ch = skip_ch, gating_ch

        def forward(self, skip, gating):
            calls.append((tuple(skip.shape), tuple(gating.shape)))
            assert skip.shape[1] == self.skip_ch and gating.shape[1] == self.gating_ch
            return torch.zeros_like(skip)  # closes every skip: the decoder sees only the upsampled path

    gated = UNet(3, 2, width=4, depth=2, gate=Recorder)
    assert gated(torch.randn(1, 3, 16, 16)).shape == (1, 2, 16, 16)
    # coarse first: skip at H/2 gated by the bottleneck at H/4, then skip at H by the decoder at H/2
    assert calls == [((1, 8, 8, 8), (1, 16, 4, 4)), ((1, 4, 16, 16), (1, 8, 8, 8))]


def test_unet_rejects_sizes_it_cannot_halve():
    with pytest.raises(ValueError, match="multiples of 16"):
        UNet(depth=4)(torch.zeros(1, 3, 40, 40))
