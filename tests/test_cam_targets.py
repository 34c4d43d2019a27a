"""Targets as callables: SEG-Grad-CAM regions, the predicted mask, one pixel, per-image callables -- against
pytorch-grad-cam's SemanticSegmentationTarget (the oracle), by hand, and the one clear error of a wrong shape."""

import numpy as np
import pytest
import torch

from common.cam import PixelTarget, SegmentationTarget, explain
from common.cam.targets import Scorer
from common.models.enet import ENet

pg = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import SemanticSegmentationTarget  # noqa: E402

TOL = 1e-4
SIZE = 32
REFERENCE = {"gradcam": pg.GradCAM, "gradcampp": pg.GradCAMPlusPlus, "layercam": pg.LayerCAM,
             "xgradcam": pg.XGradCAM, "hirescam": pg.HiResCAM}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def enet():
    torch.manual_seed(0)
    model = ENet(in_channels=1, num_classes=2).eval()
    x = torch.randn(2, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(3))
    return model, x


def layers_of(model):
    return {"stage1": model.stage1, "stage3": model.stage3, "stage4": model.stage4, "stage5": model.stage5}


def square(lo=8, hi=20):
    mask = np.zeros((SIZE, SIZE), np.float32)
    mask[lo:hi, lo:hi] = 1
    return mask


def reference(method, model, layer, x, targets):
    with REFERENCE[method](model, [layer]) as cam:
        return cam(x, targets)


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_segmentation_target_matches_pytorch_grad_cam(enet, method):
    model, x = enet
    mask = square()
    _, ours = explain(model, x, (method,), layers_of(model), target=SegmentationTarget(1, mask))
    informative = 0
    for name, layer in layers_of(model).items():
        ref = reference(method, model, layer, x, [SemanticSegmentationTarget(1, mask)] * 2)
        mine = ours[method][name].numpy()
        assert mine.shape == ref.shape == (2, SIZE, SIZE)
        assert np.abs(mine - ref).max() < TOL, (method, name, np.abs(mine - ref).max())
        informative += int((mine.max((1, 2)) == 1).any())
    assert informative >= 2


def test_predicted_mask_per_image_masks_and_the_short_form(enet):
    """A class index on a segmentation output = SEG-Grad-CAM over the pixels predicted as the class, per image;
    the reference gets each image's predicted mask explicitly."""
    model, x = enet
    with torch.no_grad():
        pred = model(x).argmax(1).numpy()  # (B, H, W)
    cls = int(np.bincount(pred.ravel(), minlength=2).argmin())  # the rarer class: a real region, not everything
    assert 0 < (pred == cls).sum() < pred.size
    layers = layers_of(model)
    _, short = explain(model, x, ("gradcam",), layers, target=cls)
    _, given = explain(model, x, ("gradcam",), layers, target=SegmentationTarget(cls, torch.as_tensor(pred == cls)))
    refs = [SemanticSegmentationTarget(cls, np.float32(pred[b] == cls)) for b in range(2)]
    for name, layer in layers.items():
        ref = reference("gradcam", model, layer, x, refs)
        assert np.abs(short["gradcam"][name].numpy() - ref).max() < TOL, name
        torch.testing.assert_close(short["gradcam"][name], given["gradcam"][name])


def test_pixel_target_and_callables_by_hand(enet):
    """One pixel's logit, a lambda over the batch and B per-image callables (pytorch-grad-cam's form) all give the
    Grad-CAM of the same score; HiResCAM's raw map sums to d score / d A . A (its defining identity)."""
    model, x = enet
    layers = {"stage5": model.stage5}
    _, pixel, raw = explain(model, x, ("gradcam", "hirescam"), layers, target=PixelTarget(1, (10, 12)), raw=True)
    _, lam = explain(model, x, ("gradcam",), layers, target=lambda out: out[:, 1, 10, 12])
    _, each = explain(model, x, ("gradcam",), layers, target=[lambda o: o[1, 10, 12]] * 2)
    torch.testing.assert_close(pixel["gradcam"]["stage5"], lam["gradcam"]["stage5"])
    torch.testing.assert_close(pixel["gradcam"]["stage5"], each["gradcam"]["stage5"])
    # by hand: Grad-CAM weights = spatial mean of d out[:, 1, 10, 12] / d A at stage5
    acts = []
    handle = model.stage5.register_forward_hook(lambda m, i, o: acts.append(o))
    out = model(x)
    handle.remove()
    g = torch.autograd.grad(out[:, 1, 10, 12].sum(), acts[0])[0]
    by_hand = (g * acts[0]).sum(1).detach()  # HiResCAM raw (B, h, w)
    torch.testing.assert_close(raw["hirescam"]["stage5"], by_hand, rtol=1e-4, atol=1e-6)
    ref = reference("gradcam", model, model.stage5, x, [lambda o: o[1, 10, 12]] * 2)
    assert np.abs(pixel["gradcam"]["stage5"].numpy() - ref).max() < TOL


@pytest.mark.parametrize("target,message", [
    (lambda out: out[:, 1].sum(), r"must return one score per image, shape \(2,\)"),
    (lambda out: out[:, 1], r"returned \(2, 32, 32\)"),
    ([lambda o: o[1]] * 2, "per-image target returned"),
    ([lambda o: o[1].sum()] * 3, "3 per-image targets for a batch of 2"),
    (SegmentationTarget(1, np.ones((16, 16))), "fits neither"),
    (SegmentationTarget(5), "out of range for 2 classes"),
    (PixelTarget(1, (3,)), "needs an output"),
])
def test_wrong_target_is_one_clear_error(enet, target, message):
    model, x = enet
    with pytest.raises(ValueError, match=message):
        explain(model, x, ("gradcam",), {"stage5": model.stage5}, target=target)
    assert all(not m._forward_hooks for m in model.modules())


def test_class_targets_keep_their_meaning_and_a_segmenter_needs_a_class():
    scorer = Scorer(lambda out, rows=None: out[:, 0] if rows is None else out[:, 0] + rows)
    assert scorer.rows_arg and torch.equal(scorer(torch.ones(2, 3), torch.tensor([0, 1])), torch.tensor([1.0, 2.0]))
    model = ENet(in_channels=1, num_classes=2).eval()
    with pytest.raises(ValueError, match="not class logits"):
        explain(model, torch.randn(1, 1, SIZE, SIZE), ("gradcam",), {"s": model.stage5}, target=None)
