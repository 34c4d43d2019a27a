"""Monte-Carlo dropout without T times the memory (Gal & Ghahramani 2016, https://arxiv.org/abs/1506.02142).

The usual way (baal's ``ModelWrapper.predict_on_batch``) stacks the batch T times and runs the whole network on
(T * B) images: T times the activations and T times the convolutions. In a network whose only dropout sits before
the linear head (:class:`common.models.smallcnn.SmallCNN`), every pass shares the trunk, so :func:`head_passes`
runs the trunk once on the B images and resamples only dropout + head T times on the (T * B, D) embeddings. It
draws the same dropout masks, in the same order, as the stacked version seeded alike, so its probabilities
equal that version's to float rounding (tests/test_active.py checks it against baal). Models with dropout inside
the trunk use :func:`loop_passes`: T ordinary forward passes of the batch, one at a time (1x memory, T x time).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DROPOUTS = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)


def has_dropout_head(model: nn.Module) -> bool:
    """Whether ``model`` has ``embed``, ``dropout`` (nn.Dropout) and ``classifier`` with dropout nowhere else."""
    if not (hasattr(model, "embed") and isinstance(getattr(model, "dropout", None), nn.Dropout)
            and isinstance(getattr(model, "classifier", None), nn.Linear)):
        return False
    others = [m for m in model.modules() if isinstance(m, DROPOUTS) and m is not model.dropout]
    return not others


def head_passes(model: nn.Module, embeddings: Tensor, passes: int) -> Tensor:
    """T dropout + head passes over trunk embeddings (B, D) -> softmax probabilities (B, C, T).

    Pass t of item b reads row t * B + b of one (T * B, D) dropout draw: the order baal's stacked input uses."""
    assert embeddings.ndim == 2, tuple(embeddings.shape)
    b, d = embeddings.shape
    stacked = embeddings.unsqueeze(0).expand(passes, b, d).reshape(passes * b, d)       # (T * B, D)
    logits = model.classifier(F.dropout(stacked, model.dropout.p, training=True))     # (T * B, C)
    return torch.softmax(logits.float(), 1).view(passes, b, -1).permute(1, 2, 0)      # (B, C, T)


@contextlib.contextmanager
def dropout_on(model: nn.Module):
    """Inside: the model in eval mode (batch norm uses its running statistics) but its dropout layers sampling."""
    was = model.training
    model.eval()
    drops = [m for m in model.modules() if isinstance(m, DROPOUTS)]
    for m in drops:
        m.train()
    try:
        yield model
    finally:
        model.train(was)
        for m in drops:
            m.train(was)


def loop_passes(model: nn.Module, x: Tensor, passes: int) -> Tensor:
    """T full forward passes with dropout sampling, one after another: (B, ...) -> probabilities (B, C, T)."""
    with dropout_on(model):
        return torch.stack([torch.softmax(model(x).float(), 1) for _ in range(passes)], dim=2)


def naive_passes(model: nn.Module, x: Tensor, passes: int) -> Tensor:
    """The reference: the batch stacked T times through the whole network (T x memory), (B, ...) -> (B, C, T)."""
    with dropout_on(model):
        out = model(x.unsqueeze(0).expand(passes, *x.shape).reshape(passes * x.shape[0], *x.shape[1:]))
    return torch.softmax(out.float(), 1).view(passes, x.shape[0], -1).permute(1, 2, 0)
