"""Test-time augmentation of CAMs (common.cam.tta): pytorch-grad-cam's aug_smooth as the oracle, and the
flip equivariance the average must have."""

import numpy as np
import pytest
import torch

from common.cam import explain
from common.cam.tta import TTA, explain_tta
from common.models import block_layers, build_densenet

pg = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402

from tests.test_cam import BinaryTarget  # noqa: E402


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    model = build_densenet("tiny", num_outputs=1).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    yield model, x
    torch.set_num_threads(before)


def test_hflip_intensity_matches_pytorch_grad_cam_aug_smooth(tiny):
    """Our "hflip-intensity" views are pytorch-grad-cam's aug_smooth (ttach: hflip x multiply 0.9/1/1.1)."""
    model, x = tiny
    targets = [1, 0]
    _, ours = explain_tta(model, x, ("gradcam",), block_layers(model), target=targets, tta="hflip-intensity")
    informative = 0
    for k, layer in block_layers(model).items():
        with pg.GradCAM(model, [layer]) as cam:
            ref = cam(x, [BinaryTarget(t) for t in targets], aug_smooth=True)  # mean of the views, not rescaled
        ref = scale_cam_image(ref)
        mine = ours["gradcam"][k].numpy()
        assert mine.shape == ref.shape == (2, 64, 64)
        assert np.abs(mine - ref).max() < 1e-4, (k, np.abs(mine - ref).max())
        informative += int((mine.max((1, 2)) == 1).any())
    assert informative >= 1


def test_flips_average_is_flip_equivariant(tiny):
    """Explaining a flipped image must give the flipped map: a view mapped back wrongly breaks this."""
    model, x = tiny
    layers = block_layers(model)
    _, plain = explain_tta(model, x, ("cam", "gradcam"), layers, target=1, tta="flips")
    for dims in ((-1,), (-2,), (-2, -1)):
        _, flipped = explain_tta(model, x.flip(dims), ("cam", "gradcam"), layers, target=1, tta="flips")
        for method in ("cam", "gradcam"):
            for k, m in plain[method].items():
                np.testing.assert_allclose(flipped[method][k].numpy(), m.flip(dims).numpy(), atol=1e-5)
    # a single view is not equivariant for this random network, so the test above can fail
    _, one = explain(model, x, ("gradcam",), layers, target=1)
    _, one_f = explain(model, x.flip(-1), ("gradcam",), layers, target=1)
    assert max(float((one_f["gradcam"][k] - one["gradcam"][k].flip(-1)).abs().max()) for k in layers) > 1e-3


def test_none_is_explain_and_targets_fixed_by_the_image(tiny):
    model, x = tiny
    layers = block_layers(model)
    logits, ref = explain(model, x, ("gradcam",), layers)
    logits_t, same = explain_tta(model, x, ("gradcam",), layers, tta="none")
    assert torch.equal(logits, logits_t)
    for k in layers:
        assert torch.equal(ref["gradcam"][k], same["gradcam"][k])
    # target=None is resolved once, on the unaugmented image, so it equals passing that class explicitly
    predicted = (logits[:, 0] > 0).long()
    _, a = explain_tta(model, x, ("gradcam",), layers, target=None, tta="flips")
    _, b = explain_tta(model, x, ("gradcam",), layers, target=predicted, tta="flips")
    for k in layers:
        assert torch.equal(a["gradcam"][k], b["gradcam"][k])


def test_unknown_tta_and_registry():
    assert all(views[0] == ((), 1.0) for views in TTA.values())
    with pytest.raises(ValueError, match="unknown test-time augmentation"):
        explain_tta(torch.nn.Identity(), torch.zeros(1, 3, 8, 8), tta="rotate")
