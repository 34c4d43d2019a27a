"""Full fp32 arithmetic for the length of a block; every process-wide precision setting restored exactly after.

TF32 (Ampere and later GPUs) and, since torch 2.9, bf16 or TF32 through oneDNN on CPUs can stand in for fp32 in
convolutions and matrix products. On an H100 TF32 changed Layer-CAM maps of an untrained DenseNet by up to 0.1 (of
the [0, 1] range) against the CPU; with fp32 they were equal. The settings are process-global, so they are read
before and written back after, exactly as found: with torch's per-backend API (``torch.backends.<backend>.<op>.
fp32_precision``, torch >= 2.9) each setting's own value, "none" (inherit) included -- writing the legacy
``allow_tf32`` flags back instead turned "none" into "ieee" and left ``torch.get_float32_matmul_precision()``
raising after a ``torch.set_float32_matmul_precision("medium")``; on older torch the legacy flags, the matmul
precision restored by name ("medium" stays "medium", not "high").
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import torch

# (backend, operation) pairs of torch's per-backend fp32 precision settings
PRECISION_SETTINGS = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"), ("mkldnn", "matmul"),
                      ("mkldnn", "conv"), ("mkldnn", "rnn"))


def precision_settings() -> dict:
    """{"cuda.matmul": setting object, ...}: those of PRECISION_SETTINGS this torch has (none before torch 2.9)."""
    found = {}
    for backend, op in PRECISION_SETTINGS:
        obj = getattr(getattr(torch.backends, backend, None), op, None)
        if obj is not None and hasattr(obj, "fp32_precision"):
            found[f"{backend}.{op}"] = obj
    return found


def precision_state() -> dict:
    """Every fp32 precision setting by name, as :func:`full_fp32` saves and restores it."""
    settings = precision_settings()
    if settings:
        return {name: obj.fp32_precision for name, obj in settings.items()}
    return {"cudnn.allow_tf32": torch.backends.cudnn.allow_tf32, "matmul": torch.get_float32_matmul_precision()}


@contextmanager
def full_fp32() -> Iterator[None]:
    """fp32 ("ieee") convolutions and matrix products inside, on every backend; the settings as found after."""
    settings = precision_settings()
    if settings:
        saved = {name: obj.fp32_precision for name, obj in settings.items()}
        try:
            for obj in settings.values():
                obj.fp32_precision = "ieee"
            yield
        finally:
            for name, obj in settings.items():
                obj.fp32_precision = saved[name]
        return
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.get_float32_matmul_precision()
    try:
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")  # also clears torch.backends.cuda.matmul.allow_tf32
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.set_float32_matmul_precision(matmul)
