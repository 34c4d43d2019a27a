"""CAM methods against pytorch-grad-cam (oracle), CAM against its closed form, and the hooks' hygiene.

pytorch-grad-cam normalises each layer's map to [0, 1] *before* resizing with cv2 and again after its
layer aggregation; ours resizes (bilinear, half-pixel centres like cv2's INTER_LINEAR) and normalises
once. Bilinear resizing commutes with the affine min-max step, so the two agree to float precision.
"""

import contextlib
import gc
import tracemalloc
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.cam import CAM, METHODS, EigenCAM, GradCAM, LayerCapture, ScoreCAM, explain, frozen
from common.cam.registry import EXTRA_PASSES
from common.models import block_layers, build_densenet, to_model_input

pg = pytest.importorskip("pytorch_grad_cam")
from pytorch_grad_cam.utils.image import scale_cam_image  # noqa: E402
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget  # noqa: E402
from pytorch_grad_cam.utils.svd_on_activations import get_2d_projection  # noqa: E402

REFERENCE = {"gradcam": pg.GradCAM, "gradcampp": pg.GradCAMPlusPlus, "layercam": pg.LayerCAM,
             "xgradcam": pg.XGradCAM, "scorecam": pg.ScoreCAM, "eigencam": pg.EigenCAM}
TOL = 1e-4


class BinaryTarget:
    """pytorch-grad-cam target for a 1-logit head: class 1 scores the logit, class 0 its negation."""

    def __init__(self, cls):
        self.cls = cls

    def __call__(self, output):
        return output[..., 0] if self.cls == 1 else -output[..., 0]


def ref_targets(targets, num_outputs):
    return [BinaryTarget(t) if num_outputs == 1 else ClassifierOutputTarget(t) for t in targets]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(arch, num_outputs, seed=0):
    torch.manual_seed(seed)
    return build_densenet(arch, num_outputs=num_outputs).eval()


@pytest.fixture(scope="module")
def d169():
    model = make("densenet169", 1)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(1))
    return model, x


def hook_count(model):
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) + len(m._backward_hooks) + len(m._backward_pre_hooks)
               for m in model.modules())


def eigen_reference(model, layer, x):
    """pytorch-grad-cam's Eigen-CAM with the SVD sign fixed to our convention (LAPACK's sign is arbitrary)."""
    acts = []
    handle = layer.register_forward_hook(lambda m, i, o: acts.append(o.detach().numpy()))
    with torch.no_grad():
        model(x)
    handle.remove()
    proj = get_2d_projection(acts[0])  # theirs, (B, h, w)
    sign = np.where((proj * acts[0].sum(1)).sum((1, 2)) < 0, -1.0, 1.0)[:, None, None]
    expected = scale_cam_image(scale_cam_image(np.maximum(proj * sign, 0), tuple(x.shape[-1:-3:-1])))
    with pg.EigenCAM(model, [layer]) as cam:
        direct = cam(x, None)
    agree = sign[:, 0, 0] > 0
    np.testing.assert_allclose(expected[agree], direct[agree], atol=1e-5)  # same pipeline where signs agree
    return expected


@pytest.mark.parametrize("num_outputs,targets", [(1, [1, 0]), (5, [0, 3])])
@pytest.mark.parametrize("method", sorted(REFERENCE))
def test_matches_pytorch_grad_cam_tiny(method, num_outputs, targets):
    model = make("tiny", num_outputs)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(2))
    _, ours = explain(model, x, methods=(method,), layers=block_layers(model), target=targets)
    informative = 0
    for k, layer in block_layers(model).items():
        if method == "eigencam":
            ref = eigen_reference(model, layer, x)
        else:
            with REFERENCE[method](model, [layer]) as cam:
                ref = cam(x, ref_targets(targets, num_outputs))
        mine = ours[method][k].numpy()
        assert mine.shape == ref.shape == (2, 96, 96) and mine.dtype == np.float32
        assert np.abs(mine - ref).max() < TOL, (method, k, np.abs(mine - ref).max())
        informative += int((mine.max((1, 2)) == 1).any())  # guard against comparing all-zero maps only
    assert informative >= 1


def test_matches_pytorch_grad_cam_densenet169(d169):
    """All four blocks of DenseNet169 for every gradient method and Eigen-CAM, from one call of ours."""
    model, x = d169
    layers = block_layers(model)
    targets = [1, 0]
    methods = ("gradcam", "gradcampp", "layercam", "xgradcam", "eigencam")
    _, ours = explain(model, x, methods=methods, layers=layers, target=targets)

    for method in methods[:-1]:
        class PerLayer(REFERENCE[method]):
            # Their single-layer aggregation, applied to each layer of one multi-layer call (saves 3 passes).
            def aggregate_multi_layers(self, cams):
                return [scale_cam_image(np.maximum(c[:, 0], 0)) for c in cams]

        with PerLayer(model, list(layers.values())) as cam:
            refs = cam(x, ref_targets(targets, 1))
        for (k, _), ref in zip(layers.items(), refs, strict=True):
            diff = np.abs(ours[method][k].numpy() - ref).max()
            assert diff < TOL, (method, k, diff)
    ref = eigen_reference(model, layers[4], x)
    assert np.abs(ours["eigencam"][4].numpy() - ref).max() < TOL


def test_scorecam_channel_subset_matches_reference_densenet169(d169):
    model, x = d169
    channels = [3, 100, 700, 1500]

    class SubsetScoreCAM(pg.ScoreCAM):
        def get_cam_image(self, input_tensor, layer, targets, activations, grads, eigen_smooth):
            return super().get_cam_image(input_tensor, layer, targets, activations[:, channels], None, eigen_smooth)

    with SubsetScoreCAM(model, [model.relu]) as cam:
        ref = cam(x[:1], [BinaryTarget(1)])
    mine = ScoreCAM(channels=channels)(model, x[:1], model.relu, target=1)
    assert np.abs(mine.numpy() - ref).max() < TOL


def _cam_by_hand(model, x, targets):
    """CAM's closed form: sum_k w_(target, k) A_k at the pooled features, ReLU, upsample, min-max."""
    with torch.no_grad():
        feats = torch.relu(model.features(x))  # (B, C, h, w)
    w = model.classifier.weight  # (K, C)
    rows = [w[0] * (1 if t == 1 else -1) if w.shape[0] == 1 else w[t] for t in targets]
    raw = torch.stack([(r[:, None, None] * f).sum(0) for r, f in zip(rows, feats, strict=True)])
    up = F.interpolate(raw.clamp_min(0)[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
    return torch.where(hi > lo, (up - lo) / (hi - lo), torch.zeros_like(up))  # all-negative CAM -> zeros


@pytest.mark.parametrize("num_outputs,targets", [(1, [1, 0]), (5, [4, 0])])
def test_cam_closed_form_and_gradcam_at_block4(num_outputs, targets):
    model = make("tiny", num_outputs, seed=3)
    x = torch.randn(2, 3, 128, 128, generator=torch.Generator().manual_seed(4))
    _, maps = explain(model, x, methods=("cam", "gradcam"), layers=block_layers(model), target=targets)
    assert set(maps["cam"]) == {4} and set(maps["gradcam"]) == {1, 2, 3, 4}  # CAM only where the head pools
    torch.testing.assert_close(maps["cam"][4], _cam_by_hand(model, x, targets), rtol=0, atol=1e-5)
    torch.testing.assert_close(maps["cam"][4], maps["gradcam"][4], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="no hooked layer qualifies"):
        explain(model, x, methods=("cam",), layers={3: block_layers(model)[3]})


def test_cam_equals_gradcam_densenet169(d169):
    model, x = d169
    _, maps = explain(model, x, methods=("cam", "gradcam"), layers={4: model.relu})
    torch.testing.assert_close(maps["cam"][4], maps["gradcam"][4], rtol=0, atol=1e-5)


def test_one_forward_one_backward_no_parameter_grads():
    model = make("tiny", 1)
    x = torch.randn(2, 3, 64, 64)
    calls = {"forward": 0, "backward": 0, "param_grad_on": []}

    def on_forward(m, inputs):
        calls["forward"] += 1
        calls["param_grad_on"].append(any(p.requires_grad for p in model.parameters()))

    def on_backward(m, grad_in, grad_out):
        calls["backward"] += 1

    handles = [model.register_forward_pre_hook(on_forward),
               model.features.denseblock4.register_full_backward_hook(on_backward)]
    methods = [m for m in METHODS if m not in EXTRA_PASSES]  # Score-CAM, Ablation-CAM: a forward pass per channel
    _, maps = explain(model, x, methods=methods, layers=block_layers(model))
    for h in handles:
        h.remove()
    assert calls == {"forward": 1, "backward": 1, "param_grad_on": [False]}
    assert all(p.grad is None for p in model.parameters())
    assert all(p.requires_grad for p in model.parameters())
    assert sum(len(v) for v in maps.values()) == 1 + 4 * (len(methods) - 1)


def test_flags_restored_also_after_errors():
    model = make("tiny", 1)
    model.train()
    model.features.norm0.eval()  # a deliberately frozen part of a training model
    model.features.conv0.weight.requires_grad_(False)
    before = ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])
    x = torch.randn(2, 3, 64, 64)
    explain(model, x, methods=("gradcam", "scorecam"), layers={4: model.relu})
    with pytest.raises(ValueError, match="target"):
        explain(model, x, methods=("gradcam",), layers=block_layers(model), target=[0, 7])
    after = ([m.training for m in model.modules()], [p.requires_grad for p in model.parameters()])
    assert before == after and hook_count(model) == 0


def test_hooks_leave_nothing_behind():
    model = make("tiny", 1)
    x = torch.randn(2, 3, 32, 32)
    layers = block_layers(model)

    def live_tensors():
        gc.collect()
        with warnings.catch_warnings():  # isinstance on torch's deprecated module proxies warns
            warnings.simplefilter("ignore")
            return sum(1 for o in gc.get_objects() if isinstance(o, torch.Tensor))

    for _ in range(5):  # warm-up: lazy caches inside torch
        explain(model, x, methods=("cam", "gradcam", "layercam"), layers=layers)
    tensors = live_tensors()
    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    for _ in range(100):
        explain(model, x, methods=("cam", "gradcam", "layercam"), layers=layers)
        assert hook_count(model) == 0
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - start
    tracemalloc.stop()
    assert live_tensors() == tensors
    assert grown < 100_000, grown


def test_capture_removes_hooks_on_exception_and_reraises():
    model = make("tiny", 1)
    layers = block_layers(model)
    with pytest.raises(ZeroDivisionError):
        with LayerCapture(layers, track_grad=True) as capture:
            model(torch.randn(1, 3, 32, 32))
            assert hook_count(model) == 4 and set(capture.activations) == {1, 2, 3, 4}
            raise ZeroDivisionError("inside the capture")
    assert hook_count(model) == 0
    with pytest.raises(RuntimeError, match="ran twice"):
        with frozen(model), LayerCapture(layers) as capture:
            model(torch.randn(1, 3, 32, 32))
            model(torch.randn(1, 3, 32, 32))
    assert hook_count(model) == 0 and model.training is False  # make() set eval; frozen restored it


def test_batched_equals_per_image():
    model = make("tiny", 5)
    x = torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    methods = {"gradcam": "gradcam", "gradcampp": "gradcampp", "xgradcam": "xgradcam", "eigencam": EigenCAM(),
               "score_top8": ScoreCAM(top_k=8, batch_size=5)}
    _, batch = explain(model, x, methods=methods, layers=block_layers(model))
    for i in range(3):
        _, one = explain(model, x[i:i + 1], methods=methods, layers=block_layers(model))
        for key in methods:
            for k in one[key]:
                torch.testing.assert_close(batch[key][k][i:i + 1], one[key][k], rtol=0, atol=1e-5)


def test_scorecam_top_k_all_channels_is_exact_and_gradient_ranking_runs():
    model = make("tiny", 1)
    x = torch.randn(2, 3, 64, 64)
    C = model.num_features
    _, maps = explain(model, x, methods={"exact": ScoreCAM(batch_size=7), "all": ScoreCAM(top_k=C),
                                         "grad": ScoreCAM(top_k=5, rank_by="gradient")}, layers={4: model.relu})
    torch.testing.assert_close(maps["exact"][4], maps["all"][4], rtol=0, atol=1e-6)
    assert maps["grad"][4].shape == (2, 64, 64)


def test_single_layer_call_and_bad_inputs():
    model = make("tiny", 1)
    x = torch.randn(2, 3, 64, 64)
    single = GradCAM()(model, x, model.relu, target=1)
    _, maps = explain(model, x, methods=("gradcam",), layers={"last": model.relu}, target=1)
    torch.testing.assert_close(single, maps["gradcam"]["last"])
    with pytest.raises(ValueError, match="unknown CAM method"):
        explain(model, x, methods=("gradcam", "nope"))
    assert hook_count(model) == 0
    assert isinstance(METHODS["cam"](), CAM)


@pytest.fixture
def precision_restored():
    """Whatever a test does to torch's process-wide fp32 precision settings, the next test finds them as they were."""
    from common.cam.precision import precision_settings, precision_state

    before = precision_state()
    yield
    settings = precision_settings()
    if settings:
        for name, obj in settings.items():
            obj.fp32_precision = before[name]
    else:
        torch.backends.cudnn.allow_tf32 = before["cudnn.allow_tf32"]
        torch.set_float32_matmul_precision(before["matmul"])


@pytest.mark.parametrize("start", ["as found", "medium", "high", "legacy flags on", "per-backend tf32"])
def test_frozen_restores_the_precision_settings_exactly(precision_restored, start):
    """Inside frozen(): fp32 on every backend; after it (also after an exception): each setting as it was, and
    torch's legacy getter still answers. Writing the legacy allow_tf32 flags back, as frozen() once did, turned a
    "medium" matmul precision into an error of torch.get_float32_matmul_precision() and "none" into "ieee"."""
    from common.cam.precision import precision_settings, precision_state

    new_api = bool(precision_settings())
    if start in ("medium", "high"):
        torch.set_float32_matmul_precision(start)
    elif start == "legacy flags on":
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    elif start == "per-backend tf32":
        if not new_api:
            pytest.skip("torch < 2.9 has no per-backend precision settings")
        torch.backends.cuda.matmul.fp32_precision = "tf32"
    before = precision_state()
    legacy = torch.get_float32_matmul_precision() if start != "per-backend tf32" else None
    model = make("tiny", 1)
    for failing in (False, True):
        with pytest.raises(ZeroDivisionError) if failing else contextlib.nullcontext():
            with frozen(model):
                inside = precision_state()
                if new_api:
                    assert set(inside.values()) == {"ieee"}, inside
                else:
                    assert inside == {"cudnn.allow_tf32": False, "matmul": "highest"}
                if failing:
                    raise ZeroDivisionError("inside frozen")
        assert precision_state() == before
        if legacy is not None:
            assert torch.get_float32_matmul_precision() == legacy  # answers, and with the value it had
    explain(model, to_model_input(torch.rand(1, 1, 64, 64)), ("gradcam",))  # explain goes through frozen()
    assert precision_state() == before


def test_no_lazy_imports_and_no_import_cycle_in_common_cam():
    """Every module of common.cam imports at its top (no import inside a function), and the imports between them
    form no cycle: base.py once imported explain inside BaseCAM.__call__ to dodge one."""
    import ast
    from pathlib import Path

    import common.cam

    folder = Path(common.cam.__file__).parent
    graph = {}
    for path in sorted(folder.glob("*.py")):
        tree = ast.parse(path.read_text())
        lazy = [node.lineno for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                for node in ast.walk(fn) if isinstance(node, (ast.Import, ast.ImportFrom))]
        assert not lazy, f"{path.name}: imports inside functions at lines {lazy}"
        graph[path.stem] = {node.module.split(".")[2] for node in tree.body if isinstance(node, ast.ImportFrom)
                            and (node.module or "").startswith("common.cam.")}
    graph.pop("__init__")  # the package re-exports; no module imports the package itself
    assert not any("common.cam" == n.module for path in folder.glob("*.py") if path.stem != "__init__"
                   for n in ast.parse(path.read_text()).body if isinstance(n, ast.ImportFrom))
    done, active = set(), []

    def visit(name):
        assert name not in active, f"import cycle: {' -> '.join(active + [name])}"
        if name in done:
            return
        active.append(name)
        for dep in graph.get(name, ()):
            visit(dep)
        active.pop()
        done.add(name)

    for name in graph:
        visit(name)
