"""3D: 5-D activations, maps as volumes, against pytorch-grad-cam's 3D support (the oracle); SEG-Grad-CAM on a 3D
segmenter; no hook or tensor left behind over 100 calls; a NIfTI volume's map written with the input's affine."""

import gc
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from common.cam import SegmentationTarget, explain
from common.cam.volume import save_map_nifti, slice_panel
from common.io.nifti import read_nifti_volume, write_nifti

pg = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget  # noqa: E402

TOL = 1e-4
REFERENCE = {"gradcam": pg.GradCAM, "gradcampp": pg.GradCAMPlusPlus, "xgradcam": pg.XGradCAM, "layercam": pg.LayerCAM,
             "hirescam": pg.HiResCAM, "gradcam_elementwise": pg.GradCAMElementWise}


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


class Small3D(nn.Module):
    """A 3D CNN classifier (segmenter with ``seg=True``): full-resolution block c1, half-resolution block c2."""

    def __init__(self, classes=3, seg=False):
        super().__init__()
        self.seg = seg
        self.c1 = nn.Sequential(nn.Conv3d(1, 4, 3, padding=1), nn.BatchNorm3d(4), nn.ReLU())
        self.c2 = nn.Sequential(nn.MaxPool3d(2), nn.Conv3d(4, 8, 3, padding=1), nn.ReLU())
        self.out = nn.Conv3d(8, classes, 1) if seg else nn.Linear(8, classes)

    def forward(self, x):
        f = self.c2(self.c1(x))
        if self.seg:
            return nn.functional.interpolate(self.out(f), size=x.shape[2:], mode="trilinear")  # (B, K, D, H, W)
        return self.out(f.mean((2, 3, 4)))


def make(seg=False, seed=0):
    torch.manual_seed(seed)
    return Small3D(seg=seg).eval()


def volume(seed=1, shape=(2, 1, 8, 12, 10)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) for m in model.modules())


@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_3d_maps_match_pytorch_grad_cam(method):
    """At the full-resolution layer the final maps agree; at the half-resolution one the raw maps do (pytorch-grad-cam
    resizes 3D maps with a cubic spline, ours trilinearly; both are exact at feature resolution)."""
    model, x = make(), volume()
    _, ours, raw = explain(model, x, (method,), {"c1": model.c1, "c2": model.c2}, target=[0, 2], raw=True)
    assert ours[method]["c1"].shape == ours[method]["c2"].shape == (2, 8, 12, 10)
    with REFERENCE[method](model, [model.c1]) as cam:
        ref = cam(x, [ClassifierOutputTarget(0), ClassifierOutputTarget(2)])
    assert ref.shape == (2, 8, 12, 10)
    assert np.abs(ours[method]["c1"].numpy() - ref).max() < TOL
    with REFERENCE[method](model, [model.c2]) as cam:
        cam(x, [ClassifierOutputTarget(0), ClassifierOutputTarget(2)])
        a = cam.activations_and_grads.activations[0].numpy()
        g = cam.activations_and_grads.gradients[0].numpy()
        ref_raw = cam.get_cam_image(x, model.c2, None, a, g, False)  # (B, 4, 6, 5) before ReLU and resizing
    assert raw[method]["c2"].shape == ref_raw.shape == (2, 4, 6, 5)
    np.testing.assert_allclose(raw[method]["c2"].numpy(), ref_raw, rtol=1e-4, atol=1e-6)
    assert ours[method]["c1"].amax() == 1 or ours[method]["c2"].amax() == 1  # not only empty maps compared


def test_3d_segmentation_target_matches_pytorch_grad_cam():
    model, x = make(seg=True), volume()
    mask = np.zeros((8, 12, 10), np.float32)
    mask[2:6, 3:9, 2:7] = 1
    _, ours = explain(model, x, ("gradcam", "layercam"), {"c1": model.c1}, target=SegmentationTarget(1, mask))
    for method in ("gradcam", "layercam"):
        with REFERENCE[method](model, [model.c1]) as cam:
            ref = cam(x, [SemanticSegmentationTarget(1, mask)] * 2)
        assert np.abs(ours[method]["c1"].numpy() - ref).max() < TOL, method


def test_3d_hooks_leave_nothing_behind():
    model, x = make(), volume()
    layers = {"c1": model.c1, "c2": model.c2}
    methods = ("gradcam", "layercam", "hirescam", "eigencam")

    def live_tensors():
        gc.collect()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    for _ in range(5):
        explain(model, x, methods, layers, target=1)
    tensors = live_tensors()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        explain(model, x, methods, layers, target=1)
        assert hook_count(model) == 0
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert live_tensors() == tensors
    assert grown < 100_000, grown
    assert all(p.grad is None and p.requires_grad for p in model.parameters())


def test_nifti_volume_in_map_out_with_the_same_affine(tmp_path):
    affine = np.array([[0, 0, 1.5, -10.0], [0, -1.25, 0, 20.0], [2.0, 0, 0, 5.0], [0, 0, 0, 1]])
    data = volume(seed=3, shape=(8, 12, 10)).numpy()
    write_nifti(tmp_path / "in.nii.gz", data, affine)
    vol, got_affine = read_nifti_volume(tmp_path / "in.nii.gz")
    np.testing.assert_allclose(vol, data, atol=1e-6)
    model = make()
    _, maps = explain(model, torch.from_numpy(vol)[None, None], ("gradcam",), {"c1": model.c1}, target=0)
    save_map_nifti(tmp_path / "map.nii.gz", maps["gradcam"]["c1"][0], got_affine)
    back, back_affine = read_nifti_volume(tmp_path / "map.nii.gz")
    np.testing.assert_allclose(back_affine, affine)
    np.testing.assert_allclose(back, maps["gradcam"]["c1"][0].numpy(), atol=1e-6)
    assert back.shape == vol.shape
    png = slice_panel(vol, {"Grad-CAM": maps["gradcam"]["c1"][0]}, tmp_path / "slices.png", axis=2, n=4)
    assert png.stat().st_size > 0
    with pytest.raises(ValueError, match="3 dimensions"):
        save_map_nifti(tmp_path / "bad.nii.gz", maps["gradcam"]["c1"])
    assert not (tmp_path / "bad.nii.gz").exists()
