"""Log-sum-exp pooling of the DenseNet head (the demo model's): closed forms, limits, CAM, oracle, checkpoints."""

import numpy as np
import pytest
import torch

from common.cam import explain
from common.engine import checkpoint
from common.errors import InputError
from common.models import block_layers, build_densenet

pg = pytest.importorskip("pytorch_grad_cam")


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def make(num_outputs=1, pooling="lse", lse_r=1.0, seed=0):
    torch.manual_seed(seed)
    return build_densenet("tiny", num_outputs=num_outputs, cam_stride=8, pooling=pooling, lse_r=lse_r).eval()


def block4(model, x):
    with torch.no_grad():
        return model.relu(model.features(x))  # (B, C, h, w)


@pytest.mark.parametrize("num_outputs", [1, 3])
def test_lse_logits_by_hand(num_outputs):
    model = make(num_outputs, lse_r=2.5)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    f = block4(model, x).double().numpy()
    w = model.classifier.weight.detach().double().numpy()
    b = model.classifier.bias.detach().double().numpy()
    s = np.einsum("kc,bchw->bkhw", w, f).reshape(2, num_outputs, -1)  # class map without the bias
    expected = np.log(np.exp(2.5 * s).mean(2)) / 2.5 + b
    with torch.no_grad():
        got = model(x).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


def test_lse_limits_are_mean_and_max():
    """In float64: r -> 0 gives the average pool (LSE = mean + r var / 2 + ...), r -> inf the maximum."""
    avg = make(pooling="avg").double()
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    f = block4(avg, x)
    w, b = avg.classifier.weight.detach(), avg.classifier.bias.detach()
    s = torch.einsum("kc,bchw->bkhw", w, f).flatten(2)
    flat = make(lse_r=1e-6).double()
    sharp = make(lse_r=1e4).double()
    for m in (flat, sharp):  # same seed: same weights as `avg`
        torch.testing.assert_close(m.state_dict()["classifier.weight"], w)
    with torch.no_grad():
        torch.testing.assert_close(flat(x), avg(x), rtol=0, atol=1e-5)
        assert not torch.allclose(make(lse_r=1.0).double()(x), avg(x), rtol=0, atol=1e-3)  # r = 1 is not the mean
        # log(hw) / r is 4e-4 here
        torch.testing.assert_close(sharp(x), s.amax(2) + b, rtol=0, atol=1e-3)


@pytest.mark.parametrize("num_outputs,targets", [(1, [1, 0]), (4, [3, 0])])
def test_cam_closed_form_and_equals_gradcam_under_lse(num_outputs, targets):
    model = make(num_outputs, lse_r=3.0, seed=5)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(3))
    _, maps = explain(model, x, methods=("cam", "gradcam"), layers={4: model.relu}, target=targets)
    f = block4(model, x)
    w = model.classifier.weight.detach()
    coef = torch.tensor([(2.0 * t - 1.0) if num_outputs == 1 else 1.0 for t in targets])
    rows = torch.stack([coef[i] * w[0 if num_outputs == 1 else t] for i, t in enumerate(targets)])
    raw = torch.einsum("bc,bchw->bhw", rows, f).clamp_min(0)
    up = torch.nn.functional.interpolate(raw[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    lo, hi = up.amin((1, 2), keepdim=True), up.amax((1, 2), keepdim=True)
    by_hand = torch.where(hi > lo, (up - lo) / (hi - lo), torch.zeros_like(up))
    torch.testing.assert_close(maps["cam"][4], by_hand, rtol=0, atol=1e-5)
    torch.testing.assert_close(maps["gradcam"][4], maps["cam"][4], rtol=0, atol=1e-5)


class BinaryTarget:
    def __init__(self, cls):
        self.cls = cls

    def __call__(self, output):
        return output[..., 0] if self.cls == 1 else -output[..., 0]


@pytest.mark.parametrize("method,reference", [("gradcam", "GradCAM"), ("layercam", "LayerCAM"),
                                              ("gradcampp", "GradCAMPlusPlus")])
def test_gradient_methods_match_pytorch_grad_cam_under_lse(method, reference):
    """Layer-CAM and Grad-CAM++ use the positional gradients, which LSE pooling makes non-uniform."""
    model = make(lse_r=4.0, seed=7)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(4))
    layers = block_layers(model)
    _, ours = explain(model, x, methods=(method,), layers=layers, target=[1, 0])
    for k, layer in layers.items():
        with getattr(pg, reference)(model, [layer]) as cam:
            ref = cam(x, [BinaryTarget(1), BinaryTarget(0)])
        assert np.abs(ours[method][k].numpy() - ref).max() < 1e-4, (method, k)


def test_checkpoint_keeps_the_pooling(tmp_path):
    from common.tasks.bone_demo import load_classifier

    model = make(lse_r=2.0, seed=9)
    path = tmp_path / "best.pt"
    checkpoint.save(path, model=model.state_dict(), args={"cam_stride": 8, "pooling": "lse", "lse_r": 2.0, "size": 64})
    loaded, info = load_classifier(path, torch.device("cpu"), arch="tiny")
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
        assert not torch.allclose(make(pooling="avg", seed=9)(x), model(x))  # the pooling matters
    assert info["pooling"] == "lse" and loaded.lse_r == 2.0


@pytest.mark.parametrize("pooling,r", [("max", 1.0), ("lse", 0.0)])
def test_bad_pooling_is_an_input_error(pooling, r):
    with pytest.raises(InputError, match="pooling"):
        build_densenet("tiny", pooling=pooling, lse_r=r)


def test_sharpness_ramp_is_geometric_steps_the_lr_and_resumes():
    from common.engine.schedules import SharpnessRamp

    model = make(lse_r=3.0)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, factor=0.5, patience=0)
    ramp = SharpnessRamp(model, plateau, 0.25, 4.0, epochs=5)
    assert ramp.wants_metric and model.lse_r == 0.25
    seen = [model.lse_r]
    for loss in (1.0, 2.0, 3.0, 4.0):  # rising validation loss: the plateau halves the lr each epoch after the first
        ramp.step(loss)
        seen.append(model.lse_r)
    np.testing.assert_allclose(seen, [0.25, 0.5, 1.0, 2.0, 4.0])  # 0.25 * 16 ** (e / 4)
    assert opt.param_groups[0]["lr"] == 0.125
    state = ramp.state_dict()
    other = make(lse_r=3.0)
    resumed = SharpnessRamp(other, torch.optim.lr_scheduler.ReduceLROnPlateau(
        torch.optim.SGD(other.parameters(), lr=1.0)), 0.25, 4.0, epochs=5)
    resumed.load_state_dict(state)
    assert other.lse_r == 4.0 and resumed.lr_scheduler.num_bad_epochs == plateau.num_bad_epochs
    ramp.step(5.0)
    assert model.lse_r == 4.0  # held at r1 after the last epoch


def test_fit_hands_the_metric_to_the_ramp_and_the_model_ends_at_r1(tmp_path):
    from dataclasses import replace

    from common.tasks.bone_classifier import train_classifier
    from common.tasks.bone_demo import DEMO

    args = replace(DEMO, n_train=16, n_val=8, size=48, epochs=3, batch_size=8, schedule="plateau")
    model, result = train_classifier(args, torch.device("cpu"), tmp_path)
    assert model.pooling == "lse" and model.lse_r == DEMO.lse_r
    assert len(result["fit"]["history"]) == 3


def test_onecycle_batch_steps_the_lr_after_every_batch_and_through_the_ramp(tmp_path):
    from dataclasses import replace

    from common.engine.schedules import BatchStepped, make_scheduler
    from common.tasks.bone_classifier import train_classifier
    from common.tasks.bone_demo import DEMO

    opt = torch.optim.SGD(make().parameters(), lr=1.0)
    with pytest.raises(InputError, match="steps per epoch"):
        make_scheduler("onecycle-batch", opt, epochs=2)
    sched = make_scheduler("onecycle-batch", opt, epochs=2, steps_per_epoch=3)
    assert isinstance(sched, BatchStepped) and sched.scheduler.total_steps == 7
    sched.step()  # the engine's per-epoch call leaves the lr alone
    assert sched.scheduler.last_epoch == 0
    # 20 images in batches of 8: 3 steps an epoch, 2 epochs -> 6 lr steps, ending near the cycle's floor
    args = replace(DEMO, n_train=20, n_val=8, size=48, epochs=2, batch_size=8, schedule="onecycle-batch")
    model, result = train_classifier(args, torch.device("cpu"), tmp_path)
    state = torch.load(tmp_path / "last.pt", weights_only=False)["scheduler"]
    assert state["epoch"] == 2 and state["lr"]["last_epoch"] == 6 and state["lr"]["total_steps"] == 7
    lrs = [h["lr"] for h in result["fit"]["history"]]  # the lr at the end of each epoch
    assert lrs[0] > DEMO.lr / 2 and lrs[1] < DEMO.lr / 1000  # near the peak, then near the floor


@pytest.mark.parametrize("schedule", ["onecycle", "onecycle-batch"])
@pytest.mark.parametrize("steps_per_epoch", [1, 2, 3, 4])
def test_onecycle_survives_runs_of_a_few_steps(schedule, steps_per_epoch):
    # OneCycleLR alone divides by zero when pct_start * total_steps == 1 (4 steps): a 1-epoch smoke run of 3 batches
    from common.engine.schedules import make_scheduler

    opt = torch.optim.SGD(make().parameters(), lr=1.0)
    sched = make_scheduler(schedule, opt, epochs=1, steps_per_epoch=steps_per_epoch)
    for _ in range(steps_per_epoch if schedule == "onecycle-batch" else 1):
        opt.step()
        getattr(sched, "step_batch", sched.step)()
    assert 0 < opt.param_groups[0]["lr"] <= 1.0
