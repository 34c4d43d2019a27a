"""ENet (Paszke et al. 2016, arXiv:1606.02147): size, shapes, receptive fields of the bottleneck kinds."""

import pytest
import torch

from common.models.enet import Bottleneck, DownsamplingBottleneck, ENet, UpsamplingBottleneck


def n_params(model):
    return sum(p.numel() for p in model.parameters())


def test_parameter_count_matches_paper():
    # The paper reports 0.37 M parameters (3 channels in, 12 classes out); 1 channel and 2 classes is slightly less.
    assert 330_000 <= n_params(ENet(in_channels=1, num_classes=2)) <= 380_000
    assert 330_000 <= n_params(ENet(in_channels=3, num_classes=12)) <= 380_000


@pytest.mark.parametrize("in_channels,num_classes,h,w", [(1, 2, 32, 32), (1, 2, 64, 40), (3, 4, 24, 32)])
def test_output_shape(in_channels, num_classes, h, w):
    torch.manual_seed(0)
    net = ENet(in_channels, num_classes)
    out = net(torch.randn(2, in_channels, h, w))
    assert out.shape == (2, num_classes, h, w)
    assert torch.isfinite(out).all()


def test_every_parameter_gets_a_gradient():
    torch.manual_seed(0)
    net = ENet(1, 2)
    net(torch.randn(2, 1, 32, 32)).logsumexp(dim=1).sum().backward()
    missing = [name for name, p in net.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not missing, missing


def test_eval_mode_is_deterministic_and_train_mode_drops_out():
    torch.manual_seed(0)
    net = ENet(1, 2)
    x = torch.randn(2, 1, 32, 32)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))
    net.train()
    with torch.no_grad():
        assert not torch.equal(net(x), net(x))  # spatial dropout and batch statistics


def test_rejects_sizes_not_divisible_by_8_and_bad_channels():
    with pytest.raises(ValueError, match="divisible by 8"):
        ENet(1, 2)(torch.randn(1, 1, 36, 32))
    with pytest.raises(ValueError, match="in_channels"):
        ENet(in_channels=16)
    with pytest.raises(AssertionError):
        ENet(in_channels=1)(torch.randn(1, 3, 32, 32))


def _support(block, size=15):
    """Input pixels that influence the centre output pixel of one bottleneck (its receptive field)."""
    torch.manual_seed(0)
    block.eval()
    x = torch.randn(1, block_channels(block), size, size, requires_grad=True)
    block(x)[0, :, size // 2, size // 2].sum().backward()
    return (x.grad.abs().sum(dim=(0, 1)) > 0)


def block_channels(block):
    return block.branch[0].in_channels


def _expected(offsets, size=15):
    out = torch.zeros(size, size, dtype=torch.bool)
    c = size // 2
    for dy, dx in offsets:
        out[c + dy, c + dx] = True
    return out


@pytest.mark.parametrize("kind,dilation,offsets", [
    ("regular", 1, [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]),
    ("dilated", 2, [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)]),
    ("asymmetric", 1, [(dy, dx) for dy in range(-2, 3) for dx in range(-2, 3)]),
])
def test_bottleneck_receptive_field(kind, dilation, offsets):
    # Hand-derived fields: 1x1 convs add nothing, so the main conv alone sets the support of one output pixel.
    assert torch.equal(_support(Bottleneck(16, kind, dilation)), _expected(offsets))


def test_down_and_up_sampling_bottlenecks_pair_through_pool_indices():
    torch.manual_seed(0)
    down, up = DownsamplingBottleneck(16, 64).eval(), UpsamplingBottleneck(64, 16).eval()
    x = torch.randn(2, 16, 8, 8)
    y, idx = down(x)
    assert y.shape == (2, 64, 4, 4) and idx.shape == (2, 16, 4, 4)
    assert up(y, idx).shape == (2, 16, 8, 8)
