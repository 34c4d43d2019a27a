"""Loading a DenseNet classifier from a checkpoint file whose architecture and head are read from the file itself.

A project checkpoint records its settings (``args``: CAM stride, pooling); a torchvision-style state dict does not,
and gets torchvision's network (stride 32, average pool). The architecture comes from the weights' layer counts
(:func:`common.models.densenet.guess_arch`) unless given.
"""

from __future__ import annotations

from pathlib import Path

from common.errors import InputError
from common.models.densenet import ARCHS, build_densenet, guess_arch, load_weights, read_checkpoint, state_from


def load_densenet_classifier(path, arch: str | None = None):
    """(model on the CPU in eval mode, info: arch, size it was trained at or None, cam_stride, pooling, source,
    outputs) from ``path``; a non-DenseNet file or an unknown layout is one InputError naming it."""
    obj = read_checkpoint(Path(path))
    state = state_from(obj, path)
    if arch is None:
        arch = guess_arch(state.keys())
        if arch not in ARCHS:
            raise InputError(f"checkpoint is {arch}", path=path, hint="pass a DenseNet checkpoint or --arch")
    n_out = state["classifier.weight"].shape[0] if "classifier.weight" in state else 1
    saved = obj.get("args", {}) if isinstance(obj, dict) else {}
    saved = saved if isinstance(saved, dict) else {}
    stride = int(saved.get("cam_stride") or 32)  # not visible in the weights: pools have no parameters
    pooling, lse_r = saved.get("pooling") or "avg", float(saved.get("lse_r") or 1.0)  # nor is the global pool
    model = build_densenet(arch, num_outputs=n_out, cam_stride=stride, pooling=pooling, lse_r=lse_r)
    load_weights(model, state)
    return model.eval(), {"arch": arch, "size": saved.get("size"), "cam_stride": stride, "pooling": pooling,
                          "source": str(path), "outputs": n_out}
