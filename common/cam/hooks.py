"""The one place where CAM methods touch a model: forward hooks on several layers, and model freezing.

Two context managers, both restoring everything on exit (exceptions included, never swallowed):

* :func:`frozen` -- eval mode, full fp32 precision (:mod:`common.cam.precision`) and ``requires_grad=False`` on
  every parameter for the duration, then each module's ``training`` flag, each parameter's flag and the precision
  settings back as they were. With no parameter needing a gradient, backward never computes weight gradients and
  the stem before the first hooked layer builds no graph at all.
* :class:`LayerCapture` -- forward hooks on any number of layers at once. They keep each layer's output;
  with ``track_grad`` an output that does not yet carry grad is swapped for a detached leaf that does, so
  one ``torch.autograd.grad`` call (:meth:`LayerCapture.gradients`) returns the gradients of a score with
  respect to all hooked layers -- one forward, one backward, nothing accumulated in ``.grad``, no tensor
  hooks or retained graphs left behind. The hooks are removed on exit.
* :func:`replaced_output` -- one layer's output replaced by a function of it for the duration (Ablation-CAM's
  ablated copies), the hook removed on exit.

The pattern follows pytorch-grad-cam's ``ActivationsAndGradients`` (https://github.com/jacobgil/pytorch-grad-cam),
made into context managers with removal guaranteed.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Hashable, Iterator, Mapping

import torch
from torch import nn

from common.cam.precision import full_fp32


@contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """Eval mode, no parameter gradients and full fp32 precision inside; every flag restored after.

    The precision settings (TF32 on GPUs, bf16 / TF32 through oneDNN on CPUs) are process-global: see
    :func:`common.cam.precision.full_fp32`, which restores each exactly as it was.
    """
    modes = [(m, m.training) for m in model.modules()]
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        with full_fp32():
            model.eval()
            for p, _ in flags:
                p.requires_grad_(False)
            yield model
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)
        # Per module, not model.train(mode): a training model may hold deliberately frozen eval-mode parts.
        for m, mode in modes:
            m.training = mode


@contextmanager
def replaced_output(module: nn.Module, fn) -> Iterator[nn.Module]:
    """Inside, ``module``'s output is ``fn(output)``; the forward hook is removed on exit (exceptions re-raised)."""
    handle = module.register_forward_hook(lambda m, inputs, output: fn(output))
    try:
        yield module
    finally:
        handle.remove()


class LayerCapture:
    """Forward hooks on several layers at once; activations kept, gradients from one backward pass."""

    def __init__(self, layers: Mapping[Hashable, nn.Module], track_grad: bool = False, clone: bool = False):
        if not layers:
            raise ValueError("LayerCapture needs at least one layer")
        self.layers = dict(layers)
        self.track_grad = track_grad
        # clone: the model continues from a copy of each output, so an in-place op after the layer (a BatchNorm's
        # ReLU(inplace=True)) cannot overwrite what was captured; the gradient w.r.t. the copy is the same.
        self.clone = clone
        self.activations: dict[Hashable, torch.Tensor] = {}
        self._versions: dict[Hashable, int] = {}
        self._handles: list = []

    def __enter__(self) -> "LayerCapture":
        try:
            for name, module in self.layers.items():
                self._handles.append(module.register_forward_hook(self._make_hook(name)))
        except BaseException:
            self._remove()
            raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self._remove()
        return False  # never swallow the exception

    def _remove(self) -> None:
        while self._handles:
            self._handles.pop().remove()

    def _make_hook(self, name: Hashable):
        def hook(module: nn.Module, inputs, output):
            if not torch.is_tensor(output):
                raise TypeError(f"layer {name!r} returns {type(output).__name__}; CAM needs one output tensor")
            if name in self.activations:
                raise RuntimeError(f"layer {name!r} ran twice in one forward pass; hook a module that runs once")
            if self.track_grad and torch.is_grad_enabled() and not output.requires_grad:
                # Parameters are frozen, so nothing upstream carries grad: make this output the leaf the
                # backward pass stops at. Later hooked layers depend on it and carry grad on their own.
                output = output.detach().requires_grad_(True)
            self.activations[name] = output
            self._versions[name] = output._version
            return output.clone() if self.clone else output

        return hook

    def check_unmodified(self) -> None:
        """Raise if an in-place op overwrote a captured output after the hook saw it."""
        for name, act in self.activations.items():
            if act._version != self._versions[name]:
                raise RuntimeError(f"layer {name!r}'s output was modified in place after the hook; hook a later module")

    def gradients(self, score: torch.Tensor) -> dict[Hashable, torch.Tensor]:
        """d score / d activation for every hooked layer, from ONE backward pass; score is a scalar."""
        assert score.ndim == 0, f"score must be a scalar, got shape {tuple(score.shape)}"
        missing = [n for n in self.layers if n not in self.activations]
        if missing:
            raise RuntimeError(f"layers {missing} did not run in the forward pass")
        self.check_unmodified()
        names = list(self.activations)
        grads = torch.autograd.grad(score, [self.activations[n] for n in names], allow_unused=True)
        unused = [n for n, g in zip(names, grads, strict=True) if g is None]
        if unused:
            raise ValueError(f"the target score does not depend on layers {unused}")
        return dict(zip(names, grads, strict=True))
