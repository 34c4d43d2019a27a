"""Initialising a DenseNet's stem with oriented Gaussian-derivative filters instead of random ones.

A probe of why the from-scratch demo classifier finds the bone phantom's fractures late
(benchmarks/cam_recipes.py, recipes "ridge_e6" / "ridge_e7"): fractures and lytic lesions are *dark* structures in
bright bone, and torchvision's stem (7x7 convolution, BN, ReLU, 3x3 max-pool) passes a dark line only through a
filter that already answers it with a positive response. Second derivatives of a Gaussian across a line are the
classic ridge / valley detectors (Lindeberg, "Edge detection and ridge detection with automatic scale selection",
IJCV 1998, https://doi.org/10.1023/A:1008097225773); first derivatives are edge detectors. Every filter stays
trainable: this only sets where training starts.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def gaussian_derivative_bank(n_filters: int, size: int = 7, sigma: float = 1.0) -> torch.Tensor:
    """(n_filters, size, size) filters, in groups of four per orientation (n_filters // 4 orientations in [0, pi)).

    Per orientation theta (the line runs along theta): a valley filter (answers a dark line positively), a ridge
    filter (a bright line), and the edge filter in both signs. The second-derivative filters are zero-mean, so a
    flat patch answers 0 to them. Unnormalised: the caller scales the bank.
    """
    if n_filters < 4 or n_filters % 4:
        raise ValueError(f"n_filters must be a positive multiple of 4, got {n_filters}")
    r = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    yy, xx = torch.meshgrid(r, r, indexing="ij")
    g = torch.exp(-(xx ** 2 + yy ** 2) / (2 * sigma ** 2))
    bank = []
    for i in range(n_filters // 4):
        theta = math.pi * i / (n_filters // 4)
        u = -xx * math.sin(theta) + yy * math.cos(theta)  # signed distance across the line
        d2 = (u ** 2 / sigma ** 4 - 1 / sigma ** 2) * g  # d^2 G / du^2: negative on the line, so dark line -> +
        d2 = d2 - d2.mean()
        d1 = -u / sigma ** 2 * g
        bank += [d2, -d2, d1, -d1]
    return torch.stack(bank)  # (n_filters, size, size)


@torch.no_grad()
def init_stem_gaussian_derivatives(conv: nn.Conv2d, sigma: float = 1.0) -> None:
    """Overwrite a stem convolution's weights (C_out, C_in, k, k) with the bank, at the random weights' scale.

    The input channels carry the same gray image (common.models.to_model_input), so a filter acts on it through the
    sum over its C_in channels; each channel gets bank / sqrt(C_in), which makes that sum's spread the same as for
    the Kaiming-random weights it replaces (sqrt(C_in) x their standard deviation).
    """
    c_out, c_in, k, k2 = conv.weight.shape
    assert k == k2, f"square kernels only, got {tuple(conv.weight.shape)}"
    bank = gaussian_derivative_bank(c_out, k, sigma)  # (C_out, k, k)
    bank = bank / bank.std() * conv.weight.std()
    conv.weight.copy_(bank[:, None].expand(-1, c_in, -1, -1) / math.sqrt(c_in))
