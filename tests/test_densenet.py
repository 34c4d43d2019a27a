"""DenseNetClassifier: shapes, torchvision compatibility (keys, outputs, old checkpoints), weight loading errors."""

import argparse

import pytest
import torch
import torchvision

from common.errors import InputError
from common.models import ARCHS, block_layers, build_densenet, guess_arch, load_weights, to_model_input
from common.models.densenet import imagenet_weights_path


def _old_style(state):
    """Keys as pre-0.3 torchvision checkpoints (the ImageNet files) spell them, without num_batches_tracked."""
    out = {}
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            continue
        for part in ("norm1", "norm2", "conv1", "conv2", "relu1", "relu2"):
            if f".{part}." in k and "denselayer" in k:
                k = k.replace(f".{part}.", f".{part[:-1]}.{part[-1]}.")
        out[k] = v
    return out


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def tiny_state():
    torch.manual_seed(0)
    return build_densenet("tiny", num_outputs=1).state_dict()


def test_tiny_matches_torchvision_forward():
    torch.manual_seed(0)
    ours = build_densenet("tiny", num_outputs=3).eval()
    ref = torchvision.models.DenseNet(**ARCHS["tiny"], num_classes=3).eval()
    ref.load_state_dict(ours.state_dict())  # identical keys: the ReLU and pool carry no parameters
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=1e-5, atol=1e-5)
    assert ours(x).shape == (2, 3)


def test_densenet169_keys_and_shapes():
    ours = build_densenet("densenet169", num_outputs=1).eval()
    with torch.device("meta"):  # keys and shapes only: skip the slow weight initialisation
        ref = torchvision.models.densenet169(weights=None, num_classes=1)
    assert {k: v.shape for k, v in ours.state_dict().items()} == {k: v.shape for k, v in ref.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: shapes.__setitem__(k, tuple(o.shape)))
             for k, m in block_layers(ours).items()]
    with torch.no_grad():
        out = ours(x)
    for h in hooks:
        h.remove()
    assert out.shape == (1, 1)
    # Blocks 1-4 at input/4../32; channels of densenet169 before each transition and after norm5.
    assert shapes == {1: (1, 256, 16, 16), 2: (1, 512, 8, 8), 3: (1, 1280, 4, 4), 4: (1, 1664, 2, 2)}


def test_to_model_input_repeats_gray_and_normalises():
    gray = torch.rand(2, 1, 8, 8)
    x = to_model_input(gray)
    assert x.shape == (2, 3, 8, 8)
    torch.testing.assert_close(x[:, 1], (gray[:, 0] - 0.456) / 0.224)
    with pytest.raises(ValueError, match="to_model_input"):
        build_densenet("tiny")(gray)


def test_load_weights_round_trip_and_prefixes(tmp_path, tiny_state):
    x = torch.randn(1, 3, 32, 32)
    ref = build_densenet("tiny").eval()
    ref.load_state_dict(tiny_state)
    variants = {
        "project.pt": {"model": tiny_state, "epoch": 3, "args": {"lr": 0.1}},  # common.engine.checkpoint's layout
        "ddp.pt": {"state_dict": {f"module.{k}": v for k, v in tiny_state.items()}},
        "old.pt": _old_style(tiny_state),
    }
    assert any("norm.1" in k for k in variants["old.pt"])
    for name, obj in variants.items():
        torch.save(obj, tmp_path / name)
        model = load_weights(build_densenet("tiny").eval(), tmp_path / name)
        with torch.no_grad():
            torch.testing.assert_close(model(x), ref(x), rtol=0, atol=0)
    load_weights(build_densenet("tiny"), tiny_state)  # an in-memory state dict works too


def test_wrong_architecture_message_names_it(tmp_path, tiny_state):
    with torch.device("meta"):  # the check fails on key names before any tensor is read
        sd121 = torchvision.models.densenet121(weights=None).state_dict()
        resnet = torchvision.models.resnet18(weights=None).state_dict()
    assert guess_arch(sd121) == "densenet121"
    with pytest.raises(InputError, match=r"looks like densenet121") as err:
        load_weights(build_densenet("densenet169"), sd121)
    assert "missing" in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(InputError, match=r"looks like tiny"):
        load_weights(build_densenet("densenet169"), tiny_state)
    with pytest.raises(InputError, match="not a DenseNet"):
        load_weights(build_densenet("tiny"), resnet)
    with pytest.raises(InputError, match="head has 1 outputs"):
        load_weights(build_densenet("tiny", num_outputs=2), tiny_state)


def test_truncated_and_garbage_files(tmp_path, tiny_state):
    path = tmp_path / "ckpt.pt"
    torch.save({"model": tiny_state}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(InputError, match="truncated") as err:
        load_weights(build_densenet("tiny"), path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(InputError):
        load_weights(build_densenet("tiny"), tmp_path / "junk.pt")
    torch.save({"model": tiny_state, "args": argparse.Namespace(lr=0.1)}, tmp_path / "pickled.pt")
    with pytest.raises(InputError):  # arbitrary pickled objects are refused (weights_only loading)
        load_weights(build_densenet("tiny"), tmp_path / "pickled.pt")
    with pytest.raises(InputError, match="not found"):
        load_weights(build_densenet("tiny"), tmp_path / "absent.pt")


def test_imagenet_weights_from_hub_cache(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    path, url = imagenet_weights_path("densenet121")
    assert path == tmp_path / "checkpoints" / "densenet121-a639ec97.pth" and url.endswith("densenet121-a639ec97.pth")
    with pytest.raises(InputError) as err:
        build_densenet("densenet121", weights="imagenet")
    assert str(path) in str(err.value) and url in str(err.value) and "\n" not in str(err.value)

    torch.manual_seed(1)
    imagenet = torchvision.models.densenet121(weights=None).state_dict()
    path.parent.mkdir(parents=True)
    torch.save(_old_style(imagenet), path)  # the real files use the old key names
    model = build_densenet("densenet121", num_outputs=1, weights="imagenet")
    for k, v in model.state_dict().items():
        if k.startswith("features."):
            assert torch.equal(v, imagenet[k]), k
    assert model.classifier.weight.shape == (1, 1024)  # 1000-class head dropped
    full = build_densenet("densenet121", num_outputs=1000, weights=path)
    assert torch.equal(full.classifier.weight, imagenet["classifier.weight"])
    with pytest.raises(InputError, match="no ImageNet weights"):
        build_densenet("tiny", weights="imagenet")


@pytest.mark.parametrize("stride,sizes", [(32, (16, 8, 4, 2)), (16, (16, 8, 4, 4)), (8, (16, 8, 8, 8)),
                                          (4, (16, 16, 16, 16))])
def test_cam_stride_block_resolutions_and_same_weights(stride, sizes, tiny_state):
    """--cam-stride drops transition pools (no parameters): same state_dict, finer block maps at 64 px input."""
    model = build_densenet("tiny", num_outputs=1, cam_stride=stride).eval()
    load_weights(model, tiny_state)  # strict: the keys do not depend on the stride
    shapes = {}
    hooks = [m.register_forward_hook(lambda mod, i, o, k=k: shapes.__setitem__(k, o.shape[-1]))
             for k, m in block_layers(model).items()]
    with torch.no_grad():
        assert model(torch.randn(1, 3, 64, 64)).shape == (1, 1)
    for h in hooks:
        h.remove()
    assert tuple(shapes[k] for k in (1, 2, 3, 4)) == sizes
