"""Partial cross-entropy and size penalty (Kervadec et al. 2019, arXiv:1805.04628) against hand-computed cases."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.autograd import gradcheck

from common.losses import (
    IGNORE_INDEX,
    PartialCrossEntropy,
    SizePenalty,
    bounds_from_masks,
    common_bounds,
    interval_penalty,
    labelled_fraction,
    loose_bounds,
    mask_sizes,
    object_region,
    partial_cross_entropy,
    precise_bounds,
    scale_to_shape,
    size_penalty,
    soft_size,
    tag_bounds,
    upper_bounds,
    volume_size_penalty,
)

U = IGNORE_INDEX


def close(actual, expected):
    torch.testing.assert_close(actual, torch.tensor(expected))


# ------------------------------------------------------------------------------------------ partial CE


def test_partial_ce_hand_computed():
    # One image, 1x3 pixels. Pixel 0: p1 = 1/2; pixel 1: p1 = 3/4 (logit ln 3); pixel 2 unlabelled.
    logits = torch.tensor([[[[0.0, 0.0, 5.0]], [[0.0, math.log(3), -5.0]]]])
    weak = torch.tensor([[[1, 0, U]]])
    expected = (-math.log(1 / 2) - math.log(1 / 4)) / 2
    assert partial_cross_entropy(logits, weak).item() == pytest.approx(expected, rel=1e-6)
    assert PartialCrossEntropy()(logits, weak).item() == pytest.approx(expected, rel=1e-6)


def test_partial_ce_matches_torch_ignore_index_mean():
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 5, 6)
    weak = torch.randint(0, 4, (3, 5, 6))
    weak[torch.rand(3, 5, 6) < 0.7] = U
    weak[1] = U  # one image with nothing labelled: the batch pools pixels, it is simply absent
    ref = F.cross_entropy(logits, weak, ignore_index=U)
    assert partial_cross_entropy(logits, weak).item() == pytest.approx(ref.item(), rel=1e-6)


def test_partial_ce_ignores_unlabelled_pixels():
    torch.manual_seed(0)
    logits = torch.randn(1, 2, 4, 4)
    weak = torch.full((1, 4, 4), U)
    weak[0, 1, 1] = 1
    changed = logits.clone()
    changed[:, :, 2:, 2:] += 10.0
    assert partial_cross_entropy(logits, weak) == partial_cross_entropy(changed, weak)


def test_partial_ce_zero_not_nan_when_nothing_labelled():
    logits = torch.randn(2, 2, 4, 4, requires_grad=True)
    loss = partial_cross_entropy(logits, torch.full((2, 4, 4), U))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.equal(logits.grad, torch.zeros_like(logits))


def test_partial_ce_gradcheck():
    torch.manual_seed(0)
    logits = torch.randn(2, 3, 3, 4, dtype=torch.double, requires_grad=True)
    weak = torch.tensor([[[0, U, 2, U], [U, 1, U, U], [U, U, U, 0]]] * 2)
    assert gradcheck(lambda z: partial_cross_entropy(z, weak), (logits,))


def test_partial_ce_checks_inputs():
    logits = torch.zeros(1, 2, 2, 2)
    with pytest.raises(AssertionError, match="weak label must be"):
        partial_cross_entropy(logits, torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(AssertionError, match="outside"):
        partial_cross_entropy(logits, torch.full((1, 2, 2), 2))


def test_labelled_fraction():
    weak = torch.tensor([[[0, U], [U, U]], [[1, 1], [0, U]]])
    assert labelled_fraction(weak).tolist() == [0.25, 0.75]


# ------------------------------------------------------------------------------------------ size penalty


def test_interval_penalty_every_branch():
    size = torch.tensor([5.0, 1.0, 3.0, 2.0, 4.0, 10.0])
    bounds = torch.tensor([[2.0, 4.0]] * 6)
    # above b: (5-4)^2; below a: (1-2)^2; inside and on either edge: 0; far above: (10-4)^2
    assert interval_penalty(size, bounds).tolist() == [1.0, 1.0, 0.0, 0.0, 0.0, 36.0]


def test_interval_penalty_rejects_inverted_bounds():
    with pytest.raises(AssertionError, match="low <= high"):
        interval_penalty(torch.tensor([1.0]), torch.tensor([[3.0, 2.0]]))


def test_size_penalty_hand_computed():
    # Zero logits, 2 classes: p = 1/2 everywhere, so V = 16 / 2 = 8 on a 4x4 image.
    logits = torch.zeros(3, 2, 4, 4)
    assert soft_size(logits).tolist() == [8.0, 8.0, 8.0]
    bounds = torch.tensor([[10.0, 12.0], [2.0, 4.0], [0.0, 16.0]])    # below, above, inside
    expected = ((8 - 10) ** 2 / 16 + (8 - 4) ** 2 / 16 + 0) / 3
    assert size_penalty(logits, bounds).item() == pytest.approx(expected)
    assert SizePenalty(cls=1)(logits, bounds).item() == pytest.approx(expected)


def test_size_penalty_absent_class_pushes_size_to_zero():
    logits = torch.zeros(1, 2, 4, 4)
    bounds = tag_bounds(torch.tensor([False]), 60, 2000)
    assert size_penalty(logits, bounds).item() == pytest.approx(8.0 ** 2 / 16)


def test_size_penalty_matches_reference_formula():
    # The reference's NaivePenalty written out: too_big * (V - b)^2 + too_small * (V - a)^2, / (w h), mean.
    torch.manual_seed(0)
    logits = torch.randn(6, 3, 8, 8)
    bounds = torch.sort(torch.rand(6, 2) * 40, dim=1).values
    v = torch.softmax(logits, 1)[:, 2].sum(dim=(1, 2))
    a, b = bounds[:, 0], bounds[:, 1]
    ref = ((v > b).float() * (v - b) ** 2 + (v < a).float() * (v - a) ** 2) / 64
    assert size_penalty(logits, bounds, cls=2).item() == pytest.approx(ref.mean().item(), rel=1e-6)


def test_size_penalty_gradcheck_all_branches():
    torch.manual_seed(0)
    logits = (0.3 * torch.randn(3, 2, 3, 3)).double().requires_grad_()
    v = soft_size(logits.detach())
    bounds = torch.stack([torch.stack([v[0] - 3, v[0] - 2]),           # above: V > b
                          torch.stack([v[1] + 2, v[1] + 3]),           # below: V < a
                          torch.stack([v[2] - 1, v[2] + 1])]).double()  # inside
    assert gradcheck(lambda z: size_penalty(z, bounds), (logits,))


def test_size_penalty_drives_free_logits_into_bounds():
    logits = torch.zeros(1, 2, 16, 16, requires_grad=True)            # V starts at 128
    bounds = torch.tensor([[20.0, 30.0]])
    opt = torch.optim.Adam([logits], lr=0.1)
    for _ in range(150):
        opt.zero_grad()
        size_penalty(logits, bounds).backward()
        opt.step()
    assert 19.0 <= soft_size(logits.detach()).item() <= 31.0


def test_volume_size_penalty_hand_computed():
    logits = torch.zeros(3, 2, 2, 2)                                   # V = 2 per slice
    ids = torch.tensor([7, 7, 3])
    sizes = torch.tensor([1.0, 1.0, 4.0])
    # volume 3: V = 2, T = 4, bounds [2, 6] -> 0; volume 7: V = 4, T = 2, bounds [1, 3] -> (4 - 3)^2 = 1
    assert volume_size_penalty(logits, ids, sizes, margin=0.5).item() == pytest.approx((0 + 1 / 4) / 2)
    # margin 0: volume 3 -> (2 - 4)^2 = 4, volume 7 -> (4 - 2)^2 = 4
    assert volume_size_penalty(logits, ids, sizes, margin=0.0).item() == pytest.approx(1.0)


def test_volume_size_penalty_gradcheck():
    torch.manual_seed(0)
    logits = (0.3 * torch.randn(4, 2, 3, 3)).double().requires_grad_()
    ids = torch.tensor([0, 1, 0, 1])
    sizes = torch.tensor([1.0, 6.0, 1.0, 6.0]).double()                # vol 0 too big, vol 1 too small
    assert gradcheck(lambda z: volume_size_penalty(z, ids, sizes, margin=0.1), (logits,))


def test_object_region_is_everything_but_labelled_background():
    weak = torch.tensor([[[0, U, 1], [U, 1, 0]]], dtype=torch.uint8)   # (1, 2, 3)
    assert object_region(weak).tolist() == [[[False, True, True], [True, True, False]]]
    seeds = torch.full((2, 4, 4), U, dtype=torch.uint8)
    seeds[:, 1, 1] = 1
    assert object_region(seeds).all()  # a seed label marks no background: sizes are unchanged


def test_region_limits_the_soft_size_hand_computed():
    logits = torch.zeros(2, 2, 4, 4)                                   # p = 1/2 everywhere
    region = torch.zeros(2, 4, 4, dtype=torch.bool)
    region[0, :2, :2] = True                                           # 4 pixels -> V = 2
    region[1] = True                                                   # whole image -> V = 8
    assert soft_size(logits, region=region).tolist() == [2.0, 8.0]
    bounds = torch.tensor([[4.0, 6.0], [4.0, 6.0]])
    expected = ((2 - 4) ** 2 / 16 + (8 - 6) ** 2 / 16) / 2
    assert size_penalty(logits, bounds, region=region).item() == pytest.approx(expected)
    # per volume: both slices in one volume, V = 2 + 8 = 10, T = 3 + 3 = 6, margin 0 -> (10 - 6)^2 / 16
    got = volume_size_penalty(logits, torch.tensor([0, 0]), torch.tensor([3.0, 3.0]), margin=0.0, region=region)
    assert got.item() == pytest.approx(16 / 16)
    assert soft_size(logits, region=torch.ones(2, 4, 4, dtype=torch.bool)).tolist() == soft_size(logits).tolist()


def test_box_size_cannot_be_met_by_a_haze_outside_the_box():
    """Background pixels labelled by a box carry a faint foreground haze: it must not count as object size."""
    logits = torch.zeros(1, 2, 16, 16)
    logits[:, 1] = -2.2                                                # p(fg) ~ 0.1 everywhere
    weak = torch.zeros(1, 16, 16, dtype=torch.uint8)
    weak[:, 4:8, 4:8] = U                                              # a 4x4 box, unlabelled inside
    bounds = torch.tensor([[22.0, 28.0]])                              # V over the image: 256 x 0.0998 = 25.5
    whole, boxed = soft_size(logits), soft_size(logits, region=object_region(weak))
    assert 22.0 <= whole.item() <= 28.0 and size_penalty(logits, bounds).item() == 0.0   # the loophole
    assert boxed.item() == pytest.approx(16 * torch.sigmoid(torch.tensor(-2.2)).item(), rel=1e-5)
    assert size_penalty(logits, bounds, region=object_region(weak)).item() > 0.5


# ------------------------------------------------------------------------------------------ bounds


def test_tag_and_common_bounds():
    present = torch.tensor([True, False])
    assert tag_bounds(present, 5, 9).tolist() == [[5.0, 9.0], [0.0, 0.0]]
    assert common_bounds(present, (256, 256)).tolist() == [[60.0, 2000.0], [0.0, 0.0]]
    assert common_bounds(present, (128, 128)).tolist() == [[15.0, 500.0], [0.0, 0.0]]
    assert scale_to_shape(100, (64, 32)) == pytest.approx(100 * 2048 / 65536)


def test_precise_upper_loose_bounds():
    sizes = torch.tensor([100.0, 0.0])
    close(precise_bounds(sizes), [[90.0, 110.0], [0.0, 0.0]])
    close(upper_bounds(sizes), [[0.0, 110.0], [0.0, 0.0]])
    assert loose_bounds(sizes > 0, (8, 4)).tolist() == [[1.0, 32.0], [0.0, 0.0]]


def test_bounds_from_masks():
    masks = torch.zeros(2, 16, 16, dtype=torch.bool)
    masks[0, 2:7, 3:7] = True                                          # 20 pixels; image 1 empty
    assert mask_sizes(masks).tolist() == [20.0, 0.0]
    assert bounds_from_masks("precise", masks, margin=0.5).tolist() == [[10.0, 30.0], [0.0, 0.0]]
    close(bounds_from_masks("upper", masks), [[0.0, 22.0], [0.0, 0.0]])
    assert bounds_from_masks("loose", masks).tolist() == [[1.0, 256.0], [0.0, 0.0]]
    close(bounds_from_masks("common", masks), [[60 / 256, 2000 / 256], [0.0, 0.0]])
    with pytest.raises(ValueError, match="unknown bound kind"):
        bounds_from_masks("tight", masks)
