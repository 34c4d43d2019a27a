"""Attention blocks (common.models.attention): shapes, parameter counts by the papers' formulas, outputs against
hand-written forms of the papers' equations and, for the gate, MONAI's AttentionBlock; the map capture."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.models.attention import (
    ATTENTION,
    CBAM,
    AttentionGate,
    attention_factory,
    attention_maps,
    map_modules,
    squeeze_excitation,
)
from common.models.smallcnn import SmallCNN, count_parameters
from common.models.unet import UNet


def randomize_bn(module: nn.Module, seed: int = 0) -> None:
    """Batch-norm affine parameters and running statistics away from identity, so eval-mode checks see them."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.weight.data = 0.5 + torch.rand(c, generator=g)
            m.bias.data = torch.randn(c, generator=g) * 0.3
            m.running_mean = torch.randn(c, generator=g) * 0.2
            m.running_var = 0.5 + torch.rand(c, generator=g)


@pytest.mark.parametrize("channels, reduction", [(16, 4), (8, 16), (32, 16)])
def test_squeeze_excitation_by_hand(channels, reduction):
    se = squeeze_excitation(channels, reduction)
    hidden = max(1, channels // reduction)
    assert count_parameters(se) == 2 * channels * hidden + hidden + channels  # Hu et al.: W1, W2 and biases
    x = torch.randn(3, channels, 7, 5)
    w1, b1 = se.fc1.weight.flatten(1), se.fc1.bias
    w2, b2 = se.fc2.weight.flatten(1), se.fc2.bias
    scale = torch.sigmoid(F.linear(F.relu(F.linear(x.mean((2, 3)), w1, b1)), w2, b2))  # (B, C)
    torch.testing.assert_close(se(x), x * scale[:, :, None, None])


@pytest.mark.parametrize("channels, reduction, kernel", [(16, 4, 7), (8, 16, 3)])
def test_cbam_parameters_shapes_and_equations(channels, reduction, kernel):
    block = CBAM(channels, reduction, kernel)
    hidden = max(1, channels // reduction)
    # Woo et al.: shared MLP (C -> C/r -> C, biases) + k x k conv 2 -> 1 (no bias) + its batch norm (2)
    assert count_parameters(block) == 2 * channels * hidden + hidden + channels + 2 * kernel * kernel + 2
    randomize_bn(block)
    block.eval()
    x = torch.randn(2, channels, 12, 10)
    out = block(x)
    assert out.shape == x.shape

    mlp = block.channel.mlp
    w0, b0 = mlp[0].weight.flatten(1), mlp[0].bias
    w1, b1 = mlp[2].weight.flatten(1), mlp[2].bias

    def shared(v):  # (B, C) -> (B, C)
        return F.linear(F.relu(F.linear(v, w0, b0)), w1, b1)

    mc = torch.sigmoid(shared(x.mean((2, 3))) + shared(x.amax((2, 3))))  # eq. 2
    f1 = x * mc[:, :, None, None]
    pooled = torch.stack([f1.mean(1), f1.amax(1)], 1)
    bn = block.spatial.bn
    z = F.conv2d(pooled, block.spatial.conv.weight, padding=kernel // 2)
    z = (z - bn.running_mean) / torch.sqrt(bn.running_var + bn.eps) * bn.weight + bn.bias
    ms = torch.sigmoid(z)  # eq. 3, (B, 1, H, W)
    torch.testing.assert_close(out, f1 * ms)
    _, maps = attention_maps(nn.Sequential(block), x)
    torch.testing.assert_close(maps["cbam1"], ms[:, 0])


def test_cbam_rejects_wrong_channels():
    with pytest.raises(ValueError, match=r"CBAM\(8\) expected \(B, 8, H, W\)"):
        CBAM(8)(torch.zeros(1, 4, 5, 5))


@pytest.mark.parametrize("skip, gating, inter", [(8, 16, None), (4, 8, 3)])
def test_gate_parameters_and_paper_equation(skip, gating, inter):
    gate = AttentionGate(skip, gating, inter)
    f_int = inter or skip // 2
    # Oktay et al. eq. 1 with 1x1 convs: W_x (no bias), W_g + b_g, psi + b_psi
    assert count_parameters(gate) == f_int * (skip + gating) + f_int + f_int + 1
    bn = AttentionGate(skip, gating, inter, batch_norm=True)
    assert count_parameters(bn) == f_int * (skip + gating + 5) + 2
    x, g = torch.randn(2, skip, 8, 8), torch.randn(2, gating, 4, 4)
    out = gate(x, g)
    assert out.shape == x.shape
    wg = F.interpolate(F.conv2d(g, gate.W_g.weight, gate.W_g.bias), size=(8, 8), mode="bilinear",
                       align_corners=False)
    q = F.conv2d(F.relu(F.conv2d(x, gate.W_x.weight) + wg), gate.psi.weight, gate.psi.bias)
    alpha = torch.sigmoid(q)  # eq. 2
    torch.testing.assert_close(out, x * alpha)


def _load_from_monai(mine: AttentionGate, theirs: nn.Module) -> None:
    """Copy MONAI's AttentionBlock weights into our batch-norm gate; its conv biases are zeroed (ours have none,
    and batch norm makes them redundant)."""
    for name in ("W_x", "W_g", "psi"):
        their_conv, their_bn = getattr(theirs, name)[0].conv, getattr(theirs, name)[1]
        their_conv.bias.data.zero_()
        ours = getattr(mine, name)
        ours[0].weight.data.copy_(their_conv.weight.data)
        ours[1].load_state_dict(their_bn.state_dict())


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_gate_matches_monai_attention_block(mode):
    attentionunet = pytest.importorskip("monai.networks.nets.attentionunet")
    torch.manual_seed(0)
    skip, gating, f_int = 6, 10, 4
    theirs = attentionunet.AttentionBlock(spatial_dims=2, f_int=f_int, f_g=gating, f_l=skip)
    mine = AttentionGate(skip, gating, f_int, batch_norm=True)
    randomize_bn(theirs)
    _load_from_monai(mine, theirs)
    theirs.train(mode == "train")
    mine.train(mode == "train")
    x, g = torch.randn(3, skip, 8, 8), torch.randn(3, gating, 8, 8)  # MONAI gates on the skip's grid
    torch.testing.assert_close(mine(x, g), theirs(g=g, x=x))


def test_gate_on_the_coarse_grid_equals_monai_on_the_resampled_signal():
    # In eval mode W_g (1x1 conv + per-channel affine batch norm) commutes with bilinear resampling, so gating with
    # the coarse g equals MONAI's block given g resampled onto the skip's grid.
    attentionunet = pytest.importorskip("monai.networks.nets.attentionunet")
    torch.manual_seed(1)
    theirs = attentionunet.AttentionBlock(spatial_dims=2, f_int=3, f_g=8, f_l=4).eval()
    mine = AttentionGate(4, 8, 3, batch_norm=True).eval()
    randomize_bn(theirs, seed=3)
    _load_from_monai(mine, theirs)
    x, g = torch.randn(2, 4, 16, 16), torch.randn(2, 8, 8, 8)
    fine = F.interpolate(g, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(mine(x, g), theirs(g=fine, x=x))


def test_gate_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="expected skip"):
        AttentionGate(4, 8)(torch.zeros(1, 4, 8, 8), torch.zeros(1, 6, 4, 4))


@pytest.mark.parametrize("name", ["se", "cbam"])
def test_smallcnn_with_blocks_adds_their_parameters(name):
    width, stages, reduction = 4, 3, 2
    plain = count_parameters(SmallCNN(width=width, stages=stages))
    blocks = sum(count_parameters(attention_factory(name, reduction)(width * 2 ** k)) for k in range(stages))
    net = SmallCNN(width=width, stages=stages, attention=attention_factory(name, reduction))
    assert count_parameters(net) == plain + blocks
    assert net(torch.randn(2, 1, 32, 32)).shape == (2, 2)


def test_attention_factory_registry():
    assert attention_factory("none") is None and set(ATTENTION) == {"none", "se", "cbam"}
    with pytest.raises(ValueError, match="unknown attention block 'sa'"):
        attention_factory("sa")


def test_unet_gate_maps_are_the_gates_coefficients_finest_first():
    torch.manual_seed(0)
    net = UNet(1, 2, width=4, depth=3, gate=AttentionGate).eval()
    modules = map_modules(net)
    assert list(modules) == ["gate1", "gate2", "gate3"]
    x = torch.randn(2, 1, 32, 32)
    seen = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: seen.__setitem__(k, o)) for k, m in modules.items()]
    with torch.no_grad():
        expected = net(x)
    for h in hooks:
        h.remove()
    assert [tuple(seen[k].shape) for k in modules] == [(2, 1, 32, 32), (2, 1, 16, 16), (2, 1, 8, 8)]
    for _ in range(3):  # the hooks go away every time: no growth, same answer
        out, maps = attention_maps(net, x)
        assert all(not m._forward_hooks for m in net.modules())
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(maps["gate1"], seen["gate1"][:, 0])
    coarse = F.interpolate(seen["gate3"], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(maps["gate3"], coarse)
    assert all(m.shape == (2, 32, 32) and 0 <= m.min() and m.max() <= 1 for m in maps.values())


def test_attention_maps_of_a_model_without_blocks():
    net = SmallCNN(width=4, stages=2).eval()
    out, maps = attention_maps(net, torch.randn(1, 1, 32, 32))
    assert maps == {} and out.shape == (1, 2)
