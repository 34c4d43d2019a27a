"""HiResCAM, Grad-CAM element-wise, Eigen-Grad-CAM, Ablation-CAM and FullGrad against pytorch-grad-cam (the oracle);
a token model (a tiny torchvision ViT, random weights) through reshape_transform; raw maps in the API."""

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from common.cam import AblationCAM, FullGrad, explain
from common.cam.fullgrad import bias_layers
from common.models import block_layers, build_densenet

pg = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

TOL = 1e-4


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    model = build_densenet("tiny", num_outputs=5).eval()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    return model, x


def targets(classes):
    return [ClassifierOutputTarget(c) for c in classes]


@pytest.mark.parametrize("method,reference", [("hirescam", pg.HiResCAM),
                                              ("gradcam_elementwise", pg.GradCAMElementWise)])
def test_elementwise_methods_match_pytorch_grad_cam(tiny, method, reference):
    model, x = tiny
    _, ours = explain(model, x, (method,), block_layers(model), target=[1, 3])
    informative = 0
    for k, layer in block_layers(model).items():
        with reference(model, [layer]) as cam:
            ref = cam(x, targets([1, 3]))
        diff = np.abs(ours[method][k].numpy() - ref).max()
        assert diff < TOL, (method, k, diff)
        informative += int(ours[method][k].amax() == 1)
    assert informative >= 2  # not only all-zero maps compared


def test_eigengradcam_matches_pytorch_grad_cam_up_to_the_svd_sign(tiny):
    model, x = tiny
    layers = block_layers(model)
    _, ours = explain(model, x, ("eigengradcam",), layers, target=[1, 3])
    for k, layer in layers.items():
        with pg.EigenGradCAM(model, [layer]) as cam:
            direct = cam(x, targets([1, 3]))
            a = cam.activations_and_grads.activations[0].numpy()
            g = cam.activations_and_grads.gradients[0].numpy()
        proj = get_2d_projection(g * a)  # theirs, LAPACK's sign
        sign = np.where((proj * (g * a).sum(1)).sum((1, 2)) < 0, -1.0, 1.0)[:, None, None]  # our convention
        expected = scale_cam_image(scale_cam_image(np.maximum(proj * sign, 0), (64, 64)))
        agree = sign[:, 0, 0] > 0
        np.testing.assert_allclose(expected[agree], direct[agree], atol=1e-5)  # same pipeline where signs agree
        diff = np.abs(ours["eigengradcam"][k].numpy() - expected).max()
        assert diff < TOL, (k, diff)


def test_ablationcam_matches_pytorch_grad_cam(tiny):
    model, x = tiny
    _, ours = explain(model, x, {"abl": AblationCAM(batch_size=16)}, {4: model.relu}, target=[1, 3])
    with pg.AblationCAM(model, [model.relu], batch_size=16) as cam:
        ref = cam(x, targets([1, 3]))
    assert np.abs(ours["abl"][4].numpy() - ref).max() < TOL
    assert isinstance(model.relu, nn.ReLU)  # the layer put back after the ablated passes


class SmallCNN(nn.Module):
    """Convolutions with biases and batch norms (the terms FullGrad sums), an in-place ReLU after a batch norm."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(inplace=True),
                                      nn.MaxPool2d(2), nn.Conv2d(8, 12, 3, padding=1), nn.BatchNorm2d(12), nn.ReLU())
        self.fc = nn.Linear(12, 4)

    def forward(self, x):
        return self.fc(self.features(x).mean((2, 3)))


def test_fullgrad_matches_pytorch_grad_cam():
    torch.manual_seed(1)
    model = SmallCNN().eval()
    for m in model.modules():  # non-trivial running statistics: the batch norms' effective biases matter
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(4))
    assert len(bias_layers(model)) == 4
    ours = FullGrad()(model, x, target=[2, 0])
    assert all(p.grad is None and p.requires_grad for p in model.parameters())  # one backward, no weight gradients
    with pg.FullGrad(model, []) as cam:
        ref = cam(x, targets([2, 0]))
    assert ours.shape == (2, 32, 32)
    assert np.abs(ours.numpy() - ref).max() < TOL


def tiny_vit():
    torch.manual_seed(0)
    return torchvision.models.VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=2,
                                                hidden_dim=16, mlp_dim=32, num_classes=3).eval()


def tokens_to_grid(t):
    """(B, 1 + 16, C) ViT tokens -> (B, C, 4, 4): the class token dropped, the patches back on their grid."""
    return t[:, 1:].reshape(t.shape[0], 4, 4, t.shape[2]).permute(0, 3, 1, 2)


@pytest.mark.parametrize("method,reference", [("gradcam", pg.GradCAM), ("hirescam", pg.HiResCAM),
                                              ("layercam", pg.LayerCAM)])
def test_token_model_through_reshape_transform_matches_pytorch_grad_cam(method, reference):
    model = tiny_vit()
    layer = model.encoder.layers[-1].ln_1
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    _, ours, raw = explain(model, x, (method,), {"last": layer}, target=[0, 2], reshape_transform=tokens_to_grid,
                           raw=True)
    with reference(model, [layer], reshape_transform=tokens_to_grid) as cam:
        ref = cam(x, targets([0, 2]))
    assert raw[method]["last"].shape == (2, 4, 4)
    assert np.abs(ours[method]["last"].numpy() - ref).max() < TOL
    with pytest.raises(AssertionError, match="reshape_transform"):
        explain(model, x, (method,), {"last": layer}, target=0)


def test_raw_maps_are_the_maps_before_relu_upsampling_and_minmax(tiny):
    """The raw Grad-CAM map by hand (weights = mean gradient) and the drawn map = its ReLU, upsampled, min-max."""
    model, x = tiny
    logits, maps, raw = explain(model, x, ("gradcam",), block_layers(model), target=None, raw=True)
    acts = []
    handle = model.relu.register_forward_hook(lambda m, i, o: acts.append(o))
    out = model(x)
    handle.remove()
    g = torch.autograd.grad(out[[0, 1], logits.argmax(1)].sum(), acts[0])[0]
    by_hand = torch.einsum("bc,bchw->bhw", g.mean((2, 3)), acts[0]).detach()
    torch.testing.assert_close(raw["gradcam"][4], by_hand, rtol=1e-4, atol=1e-6)
    up = torch.nn.functional.interpolate(by_hand.clamp_min(0)[:, None], size=(64, 64), mode="bilinear")[:, 0]
    lo, hi = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
    torch.testing.assert_close(maps["gradcam"][4], (up - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
    assert set(raw["gradcam"]) == {1, 2, 3, 4} and (by_hand.amax((1, 2)) > 0).all()
    model.zero_grad(set_to_none=True)
