"""common.models.fold: conv -> BN folding for Score-CAM's masked passes, checked against the unfolded network."""

import torch
from torch import nn

from common.cam import ScoreCAM, explain
from common.models import build_densenet
from common.models.fold import cached_folded_copy, folded_copy


def _model():
    torch.manual_seed(0)
    model = build_densenet("tiny", num_outputs=1, cam_stride=8)
    with torch.no_grad():  # non-trivial running statistics and affine terms, as after training
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval()


def test_folded_copy_equals_original_and_leaves_it_alone():
    model = _model()
    n_bn = sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    net, n = folded_copy(model)
    # tiny DenseNet: the stem's norm0 and one bottleneck BN (norm2) per dense layer, 8 layers
    assert n == 1 + 8
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == n_bn - n
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == n_bn  # original untouched
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(net(x), model(x), rtol=1e-5, atol=1e-5)


def test_cache_is_rebuilt_when_weights_change():
    model = _model()
    a, _ = cached_folded_copy(model)
    assert cached_folded_copy(model)[0] is a
    with torch.no_grad():
        model.features.conv0.weight.mul_(2.0)  # in place, as an optimizer step
    b, _ = cached_folded_copy(model)
    assert b is not a
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(b(x), model(x), rtol=1e-5, atol=1e-5)


def test_scorecam_with_and_without_folding_agree():
    model = _model()
    x = torch.randn(2, 3, 64, 64)
    _, maps = explain(model, x, methods={"fold": ScoreCAM(top_k=12), "plain": ScoreCAM(top_k=12, fold_bn=False)},
                      layers={4: model.relu}, target=1)
    torch.testing.assert_close(maps["fold"][4], maps["plain"][4], rtol=0, atol=1e-5)
