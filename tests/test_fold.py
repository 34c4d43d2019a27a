"""common.models.fold: conv -> BN folding for Score-CAM's masked passes, checked against the unfolded network."""

import pytest
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


def test_faithfulness_scores_through_the_folded_copy_equal_the_model_s():
    """score_dataset's deletion / insertion curves run through the folded channels-last copy: same probabilities as
    the model itself (the oracle), for either class of a 1-output head; a training model is used as it is."""
    from common.cam.context import class_probabilities
    from common.cam.scoring import target_probability
    from common.models import to_model_input

    model = _model()
    x = torch.rand(5, 1, 64, 64)
    with torch.no_grad():
        want = class_probabilities(model(to_model_input(x)))
    for target in (0, 1):
        torch.testing.assert_close(target_probability(model, target, torch.device("cpu"))(x), want[:, target],
                                   rtol=1e-5, atol=1e-6)
    model.train()
    assert target_probability(model, 1, torch.device("cpu"))(x).shape == (5,)
    assert model.training  # not switched to eval behind the caller's back


def test_image_curves_score_shared_steps_once_and_equal_maps_once_with_the_metric_s_aucs():
    """Oracle: common.metrics.faithfulness.deletion_insertion with the plain score function."""
    from common.cam.scoring import ImageCurves
    from common.metrics.faithfulness import deletion_insertion

    scored = {"plain": 0, "curves": 0}

    def scorer(name):
        def score_fn(batch):  # a stand-in classifier: the mean intensity of the top-left quarter
            scored[name] += len(batch)
            return batch[:, :, :8, :8].flatten(1).mean(1)
        return score_fn

    image = torch.rand(1, 16, 16)
    maps = [torch.rand(16, 16), torch.rand(16, 16)]
    curves = ImageCurves(scorer("curves"), image)
    for sal in maps:
        want = deletion_insertion(scorer("plain"), image, sal, steps=4)
        got = curves.aucs(sal, steps=4)
        assert got["deletion_auc"] == pytest.approx(want["deletion_auc"], abs=1e-6)
        assert got["insertion_auc"] == pytest.approx(want["insertion_auc"], abs=1e-6)
    # each 5-step curve starts or ends at the image or the baseline: per map 2 x 3 inner steps, the 2 shared inputs
    # once for the image
    assert scored == {"plain": 2 * 10, "curves": 2 * 6 + 2}
    assert curves.aucs(maps[0] + 1e-7, steps=4) is curves.done[0][1] and scored["curves"] == 14  # an equal map
