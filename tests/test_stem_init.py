"""The Gaussian-derivative stem initialisation (common.models.stem_init), checked on hand-made line images."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from common.models import build_densenet, to_model_input
from common.models.stem_init import gaussian_derivative_bank, init_stem_gaussian_derivatives


def line_image(theta: float, dark: bool, size: int = 31) -> torch.Tensor:
    """(1, 1, size, size) gray 0.5 background with a 1-px line through the centre along angle theta."""
    r = np.arange(size) - (size - 1) / 2
    yy, xx = np.meshgrid(r, r, indexing="ij")
    dist = np.abs(-xx * math.sin(theta) + yy * math.cos(theta))
    img = np.full((size, size), 0.5) + (-0.4 if dark else 0.4) * np.exp(-0.5 * (dist / 0.6) ** 2)
    return torch.tensor(img, dtype=torch.float32)[None, None]


def centre_responses(bank: torch.Tensor, img: torch.Tensor) -> torch.Tensor:
    out = F.conv2d(img, bank[:, None], padding=bank.shape[-1] // 2)  # (1, C, H, W)
    return out[0, :, img.shape[-2] // 2, img.shape[-1] // 2]  # (C,)


@pytest.mark.parametrize("orientation", range(4))
@pytest.mark.parametrize("dark", [True, False])
def test_bank_answers_lines_of_its_orientation_and_polarity(orientation, dark):
    bank = gaussian_derivative_bank(16)
    resp = centre_responses(bank, line_image(math.pi * orientation / 4, dark))
    lines = resp.view(4, 4)[:, 0 if dark else 1]  # the valley (dark) or ridge (bright) filter of each orientation
    assert int(lines.argmax()) == orientation
    assert lines[orientation] > 0 > resp.view(4, 4)[orientation, 1 if dark else 0]  # the other polarity: negative
    # a flat image: the line filters answer ~0 (zero-mean), the edge filters exactly 0 by antisymmetry
    flat = centre_responses(bank, torch.full((1, 1, 31, 31), 0.7))
    assert torch.allclose(flat, torch.zeros(16), atol=1e-5)


def test_bank_size_must_be_a_multiple_of_four():
    with pytest.raises(ValueError, match="multiple of 4"):
        gaussian_derivative_bank(6)


def test_init_keeps_the_random_weights_scale_on_gray_input():
    torch.manual_seed(0)
    model = build_densenet("mini", num_outputs=1, cam_stride=4)
    conv = model.features.conv0
    before = conv.weight.detach().clone()  # (16, 3, 7, 7)
    init_stem_gaussian_derivatives(conv)
    after = conv.weight.detach()
    assert after.shape == before.shape and not torch.equal(after, before)
    assert torch.allclose(after.sum(1).std(), math.sqrt(3) * before.std(), rtol=1e-4)
    # every input channel carries the same filter: the gray image's three copies act as one
    assert torch.equal(after[:, 0], after[:, 1]) and torch.equal(after[:, 0], after[:, 2])
    # a dark line through a gray image excites the first valley filter through the whole stem convolution
    x = to_model_input(line_image(0.0, dark=True, size=32))
    out = F.conv2d(x, after, stride=2, padding=3)[0, :, 8, 8]
    assert out[0] > 0 > out[1]
