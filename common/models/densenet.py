"""DenseNet classifiers for the interpretability demos, with the hooks CAM methods need.

Huang et al., "Densely Connected Convolutional Networks", CVPR 2017, https://arxiv.org/abs/1608.06993.
The survey's interpretability example (Rajpurkar et al., CheXNet, https://arxiv.org/abs/1711.05225)
fine-tunes an ImageNet DenseNet and shows class activation maps on its last dense block.

The backbone is torchvision's ``DenseNet.features``; the head is an explicit ``ReLU -> global average
pool -> Linear`` so that CAM can hook the exact tensor the classifier pools. The ReLU and the pool carry
no parameters, so ``state_dict`` keys are those of torchvision's DenseNet and its checkpoints load as
they are. ``pooling="lse"`` swaps the average pool for log-sum-exp pooling of the class map (the linear
head applied at every position): same parameters, see :meth:`DenseNetClassifier.head_logits`. The
models take 3-channel input (ImageNet weights); grayscale images go through :func:`to_model_input`, which
repeats the channel and applies ImageNet normalisation.

Usage::

    model = build_densenet("densenet169", num_outputs=1, weights="imagenet")
    logits = model(to_model_input(gray))   # gray (B, 1, H, W) in [0, 1] -> logits (B, 1)
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, Mapping

import torch
import torchvision
from torch import nn

from common.engine import checkpoint
from common.errors import InputError

# Registry: name -> torchvision DenseNet constructor arguments (argparse choices come from its keys).
ARCHS: dict[str, dict[str, Any]] = {
    "densenet121": dict(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64),
    "densenet169": dict(growth_rate=32, block_config=(6, 12, 32, 32), num_init_features=64),
    "densenet201": dict(growth_rate=32, block_config=(6, 12, 48, 32), num_init_features=64),
    # Small enough for CPU smoke tests: 47 channels after block 4, a few thousand parameters.
    "tiny": dict(growth_rate=12, block_config=(2, 2, 2, 2), num_init_features=16),
    # The demo model (common/tasks/bone_demo.py): one dense layer per block, so with cam_stride 4 the block-4
    # features see 43 px (tiny: 75 px) and cannot carry a lesion's evidence far from it; see 00_Interpretability.
    "mini": dict(growth_rate=16, block_config=(1, 1, 1, 1), num_init_features=16),
}
# torchvision weight enums; the file name comes from each enum's URL, never typed by hand.
_IMAGENET_ENUMS = {
    "densenet121": "DenseNet121_Weights",
    "densenet169": "DenseNet169_Weights",
    "densenet201": "DenseNet201_Weights",
}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# Checkpoints saved before torchvision 0.3 name layers "denselayer1.norm.1.weight"; today it is "norm1".
_OLD_KEY = re.compile(r"^(.*denselayer\d+\.(?:norm|relu|conv))\.([12]\.(?:weight|bias|running_mean|running_var))$")
_LAYER_KEY = re.compile(r"denseblock(\d+)\.denselayer(\d+)\.")


POOLINGS = ("avg", "lse")


class DenseNetClassifier(nn.Module):
    """DenseNet (Huang et al. 2017) backbone + ReLU + global pool (average, or log-sum-exp) + linear head."""

    def __init__(self, arch: str = "densenet169", num_outputs: int = 1, pooling: str = "avg", lse_r: float = 1.0):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"unknown DenseNet arch {arch!r}; choose one of {sorted(ARCHS)}")
        if pooling not in POOLINGS or not lse_r > 0:
            raise ValueError(f"pooling must be one of {POOLINGS} and lse_r > 0, got {pooling!r}, {lse_r}")
        self.pooling, self.lse_r = pooling, float(lse_r)
        net = torchvision.models.DenseNet(**ARCHS[arch], num_classes=num_outputs)
        self.arch = arch
        self.num_outputs = num_outputs
        self.features = net.features
        # A module (not F.relu) so CAM methods can hook the map the classifier pools; not in-place, so
        # the hooked tensor keeps its values after the pool runs.
        self.relu = nn.ReLU(inplace=False)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier: nn.Linear = net.classifier
        self.num_features = net.classifier.in_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W), got {tuple(x.shape)}; pass grayscale through to_model_input")
        f = self.relu(self.features(x))  # (B, C, H/32, W/32)
        return self.head_logits(f)  # (B, num_outputs)

    def head_logits(self, f: torch.Tensor) -> torch.Tensor:
        """Logits (B, K) from the block-4 features f (B, C, h, w) the CAM methods hook (``self.relu``'s output).

        "avg": ``Linear(mean_hw f)``, torchvision's head. "lse": log-sum-exp pooling of the class map
        s = W f + b (the linear head at every position; s is CAM's map plus the bias),
        ``(1/r) log(mean_hw exp(r s))``: between the mean (r -> 0) and the maximum (r -> inf) of s.
        Pinheiro & Collobert, CVPR 2015 (https://arxiv.org/abs/1411.6228); the ChestX-ray8 baseline
        (Wang et al., CVPR 2017, https://arxiv.org/abs/1705.02315) pooled its disease maps so. The gradient
        goes to the positions that score highest (softmax(r s) instead of 1/hw): on normal images every high
        position is pushed down, so the surviving features sit on what they detect and the CAM peaks there
        rather than beside it; but a lesion the model does not score yet gets little gradient, which is why
        the demo model ramps r up during training (common.engine.schedules.SharpnessRamp; both measured:
        docs/demo_model_history.md). With either pooling the mean over positions of d logit / d f is W / hw,
        so Grad-CAM at block 4 still equals CAM after the ReLU and rescaling.
        """
        if self.pooling == "avg":
            return self.classifier(self.pool(f).flatten(1))
        s = torch.einsum("kc,bchw->bkhw", self.classifier.weight.to(f.dtype), f).flatten(2)  # (B, K, hw), no bias
        if s.dtype in (torch.float16, torch.bfloat16):  # under autocast: exp and log in float32
            s = s.float()
        r = self.lse_r
        pooled = (torch.logsumexp(r * s, dim=2) - math.log(s.shape[2])) / r
        return pooled + self.classifier.bias.to(s.dtype)

    def cam_layers(self) -> dict[int, nn.Module]:
        """The four dense-block layers CAM methods look at by default (see :func:`block_layers`)."""
        return block_layers(self)


def to_model_input(images: torch.Tensor, imagenet_norm: bool = True) -> torch.Tensor:
    """Grayscale (B, 1, H, W) or RGB (B, 3, H, W) in [0, 1] -> (B, 3, H, W) for an ImageNet DenseNet."""
    assert images.ndim == 4 and images.shape[1] in (1, 3), f"expected (B, 1|3, H, W), got {tuple(images.shape)}"
    x = images.float().expand(-1, 3, -1, -1)  # gray repeated: the ImageNet stem expects three channels
    if imagenet_norm:
        mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
        x = (x - mean) / std
    return x.contiguous()  # (B, 3, H, W)


def block_layers(model: DenseNetClassifier) -> dict[int, nn.Module]:
    """Dense block k (1..4) -> the module whose OUTPUT is that block's feature map.

    Blocks 1-3: ``features.denseblock{k}``, i.e. the concatenated block output *before* the transition
    layer (BN-ReLU-conv-pool) that halves channels and resolution. Block 4: ``model.relu``, whose output
    is ReLU(norm5(denseblock4(...))) -- exactly the features the classifier average-pools, so CAM and
    Grad-CAM coincide (up to scale) there. Resolutions are input/4, /8, /16, /32 (blocks 2-4 finer with
    ``cam_stride`` 16, 8 or 4, see :func:`set_cam_stride`).
    """
    f = model.features
    return {1: f.denseblock1, 2: f.denseblock2, 3: f.denseblock3, 4: model.relu}


def imagenet_weights_path(arch: str) -> tuple[Path, str]:
    """Where torch's hub cache keeps torchvision's ImageNet file for ``arch``, and its download URL."""
    if arch not in _IMAGENET_ENUMS:
        raise InputError(f"no ImageNet weights exist for arch {arch!r}", hint=f"use one of {sorted(_IMAGENET_ENUMS)}")
    url = getattr(torchvision.models, _IMAGENET_ENUMS[arch]).IMAGENET1K_V1.url
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url), url


CAM_STRIDES = (32, 16, 8, 4)
# a DenseNet downsamples by 32: a smaller input leaves its last block no pixels
MIN_INPUT_SIZE = 32


def set_cam_stride(model: DenseNetClassifier, stride: int) -> DenseNetClassifier:
    """Make the last dense blocks run at input/``stride`` by dropping transition average-pools.

    Zhou et al. (CAM, 2016) removed the last pooling layers of their networks for the same reason: a
    finer final feature map gives a finer class activation map (DenseNet's /32 gives 4x4 at 128 px).
    The pools carry no parameters, so the state_dict and torchvision checkpoints are unchanged;
    16 drops transition3's pool, 8 also transition2's, 4 also transition1's (blocks 2-4 at input/4).
    """
    if stride not in CAM_STRIDES:
        raise InputError(f"cam stride must be one of {CAM_STRIDES}, got {stride}")
    f = model.features
    f.transition3.pool = nn.Identity() if stride <= 16 else nn.AvgPool2d(kernel_size=2, stride=2)
    f.transition2.pool = nn.Identity() if stride <= 8 else nn.AvgPool2d(kernel_size=2, stride=2)
    f.transition1.pool = nn.Identity() if stride <= 4 else nn.AvgPool2d(kernel_size=2, stride=2)
    model.cam_stride = stride
    return model


def build_densenet(arch: str = "densenet169", num_outputs: int = 1, weights: str | os.PathLike | None = None,
                   cam_stride: int = 32, pooling: str = "avg", lse_r: float = 1.0):
    """DenseNet classifier (Huang et al. 2017); weights None | "imagenet" | path to a torchvision-style .pth.

    ImageNet / backbone files initialise the features; their classifier is kept only when its shape fits
    ``num_outputs`` (e.g. 1000). Nothing is downloaded: a missing file is an InputError naming where to put it.
    cam_stride: 32 (torchvision's network) or 16 / 8 / 4 for finer block-3/4 maps (see :func:`set_cam_stride`).
    pooling: "avg" (torchvision's head) or "lse" with sharpness ``lse_r`` (see :meth:`DenseNetClassifier.head_logits`).
    """
    if arch not in ARCHS:
        raise InputError(f"unknown DenseNet arch {arch!r}", hint=f"choose one of {sorted(ARCHS)}")
    if pooling not in POOLINGS or not lse_r > 0:
        raise InputError(f"pooling must be one of {POOLINGS} with lse_r > 0, got {pooling!r} (r={lse_r})")
    model = set_cam_stride(DenseNetClassifier(arch, num_outputs, pooling, lse_r), cam_stride)
    if weights is None:
        return model
    if str(weights) == "imagenet":
        path, url = imagenet_weights_path(arch)
        if not path.is_file():
            raise InputError(
                f"ImageNet weights for {arch} not found (no download at run time)",
                path=path,
                hint=f"download {url} and save it as {path}",
            )
    else:
        path = Path(weights)
    state = state_from(read_checkpoint(path))
    own = model.state_dict()
    if any(k.startswith("classifier.") and k in own and own[k].shape != v.shape for k, v in state.items()):
        state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
        _load_strict(model, state, source=path, ignore_prefix="classifier.")
    else:
        _load_strict(model, state, source=path)
    return model


def load_weights(model: DenseNetClassifier, path_or_state: str | os.PathLike | Mapping[str, Any]) -> DenseNetClassifier:
    """Load a project checkpoint (state dict under "model") or a torchvision-style state dict, strictly.

    Errors name the file: the path given, or the one a dict from :func:`read_checkpoint` / :func:`state_from` was
    read from; only a dict built in memory is called "state dict".
    """
    if isinstance(path_or_state, (str, os.PathLike)):
        source, obj = path_or_state, read_checkpoint(Path(path_or_state))
    else:
        source, obj = getattr(path_or_state, "source", None) or "state dict", path_or_state
    _load_strict(model, state_from(obj, source), source=source)
    return model


class _FromFile(dict):
    """A checkpoint dict that remembers the file it was read from, so later errors can name it.

    Pickled (``torch.save``, ``copy.deepcopy``) it becomes an OrderedDict, as state_dicts are, so that files saved
    from it still load with ``weights_only=True``, which refuses unknown classes.
    """

    def __init__(self, data: Mapping, source: Any):
        super().__init__(data)
        self.source = source

    def __reduce__(self):
        return OrderedDict, (), None, None, iter(self.items())


def read_checkpoint(path: Path) -> dict:
    """The project's checkpoint reader (tensors and plain values only; bad files are one-line InputErrors)."""
    return _FromFile(checkpoint.load(path), source=path)


def state_from(obj: Any, source: Any = None) -> dict[str, torch.Tensor]:
    """Pull the state dict out of a checkpoint dict; strip DDP / torch.compile prefixes; remap old keys."""
    source = source if source is not None else getattr(obj, "source", None)
    obj = checkpoint.model_state(dict(obj)) if isinstance(obj, Mapping) else obj  # "model" / "state_dict" / "module."
    if not isinstance(obj, Mapping) or not obj or not all(torch.is_tensor(v) for v in obj.values()):
        raise InputError("checkpoint holds no state dict (expected tensors, or a dict with key 'model')", path=source)
    state = {}
    for key, value in obj.items():
        key = key.removeprefix("_orig_mod.")  # torch.compile wrapper
        old = _OLD_KEY.match(key)
        state[old.group(1) + old.group(2) if old else key] = value
    return _FromFile(state, source) if source is not None else state


def guess_arch(keys) -> str:
    """Name the DenseNet a state dict's keys describe, from the number of dense layers per block."""
    per_block: Counter = Counter()
    for key in keys:
        m = _LAYER_KEY.search(key)
        if m:
            block, layer = int(m.group(1)), int(m.group(2))
            per_block[block] = max(per_block[block], layer)
    if not per_block:
        return "not a DenseNet (no denseblock/denselayer keys)"
    config = tuple(per_block[b] for b in sorted(per_block))
    for name, spec in ARCHS.items():
        if tuple(spec["block_config"]) == config:
            return name
    return f"an unknown DenseNet with block config {config}"


def _load_strict(model: nn.Module, state: Mapping[str, torch.Tensor], source: Any, ignore_prefix: str | None = None):
    own = model.state_dict()
    expected = {k for k in own if not (ignore_prefix and k.startswith(ignore_prefix))}
    # BatchNorm fills in num_batches_tracked itself; files saved before torch 0.4.1 (the ImageNet ones) lack it.
    missing = sorted(k for k in expected - state.keys() if not k.endswith("num_batches_tracked"))
    unexpected = sorted(state.keys() - own.keys())
    wrong_shape = sorted(k for k in expected & state.keys() if own[k].shape != state[k].shape)
    if missing or unexpected or wrong_shape:
        arch = getattr(model, "arch", type(model).__name__)
        looks = guess_arch(state.keys())
        detail = f"{len(missing)} missing, {len(unexpected)} unexpected, {len(wrong_shape)} wrong-shape keys"
        if looks == arch and wrong_shape and all(k.startswith("classifier.") for k in wrong_shape):
            n_out = state["classifier.weight"].shape[0]
            hint = f"the checkpoint's head has {n_out} outputs; build the model with that many"
        elif looks == arch:
            hint = "same architecture but different layers; was it saved from another model class?"
        elif looks.startswith("not "):
            hint = f"the checkpoint is {looks}"
        elif looks in ARCHS:
            hint = f"the checkpoint looks like {looks}: pass --arch {looks}"
        else:
            hint = f"the checkpoint is {looks}, which no --arch choice builds"
        raise InputError(f"checkpoint does not match {arch} ({detail})", path=source, hint=hint)
    model.load_state_dict(state, strict=ignore_prefix is None)
