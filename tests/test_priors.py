"""Domain-knowledge priors (common/priors) on hand-made masks, against closed forms and reference libraries."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from common.errors import InputError
from common.io.reader import WINDOW_PRESETS
from common.losses.size import interval_penalty
from common.priors.fundus import cup_inside_disc, disc_centre
from common.priors.polar import from_polar, to_polar
from common.priors.shape import compactness, compactness_loss, convex_hull, soft_compactness, soft_perimeter
from common.priors.size import size_bounds, size_prior_loss, size_range
from common.priors.topology import fill_holes, inside_ring, largest_component, lv_prior, n_components, ring_interior


def disc(shape, cx, cy, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (xx - cx) ** 2 + (yy - cy) ** 2 <= r ** 2


def ring_slice(size=48, c=24, r_in=7, r_out=11):
    """A myocardium ring around a cavity: (lv, myo)."""
    lv = disc((size, size), c, c, r_in)
    return lv, disc((size, size), c, c, r_out) & ~lv


# ------------------------------------------------------------------------------------------------ topology


def test_two_component_lv_is_kept_to_one():
    lv, myo = ring_slice()
    blob = disc(lv.shape, 5, 5, 2)                   # a bright structure elsewhere (RV, aorta) taken for LV
    pred = lv | blob
    assert n_components(pred) == 2
    out = lv_prior(pred, myo)
    assert n_components(out) == 1 and np.array_equal(out, lv)
    assert np.array_equal(largest_component(pred), lv)


def test_holes_filled_and_cavity_cut_to_the_ring():
    lv, myo = ring_slice()
    holed = lv & ~disc(lv.shape, 22, 24, 2)           # a dark papillary muscle left out
    assert np.array_equal(fill_holes(holed), lv)
    bar = np.zeros_like(lv)
    bar[23:26, 24:44] = True                          # the cavity leaks out through the wall
    leak = lv | bar
    assert n_components(leak) == 1 and leak.sum() > lv.sum()
    assert np.array_equal(inside_ring(leak, myo), lv)
    assert np.array_equal(ring_interior(myo), lv)


def test_open_ring_or_foreign_ring_leaves_the_cavity():
    lv, myo = ring_slice()
    open_myo = myo & ~(np.arange(48)[None, :] > 30)    # the ring opened (outflow tract, or a gap)
    assert not ring_interior(open_myo).any()
    assert np.array_equal(inside_ring(lv, open_myo), lv)
    other = disc(lv.shape, 8, 8, 5) & ~disc(lv.shape, 8, 8, 3)   # a closed ring that is not around the cavity
    assert np.array_equal(inside_ring(lv, other), lv)
    assert np.array_equal(inside_ring(lv, np.zeros_like(lv)), lv)


def test_volume_rules_apply_slice_by_slice():
    lv, myo = ring_slice()
    vol = np.stack([lv | disc(lv.shape, 5, 5, 2), np.zeros_like(lv), lv])   # a missed slice in between
    out = lv_prior(vol, np.stack([myo, myo, myo]))
    assert np.array_equal(out, np.stack([lv, np.zeros_like(lv), lv]))          # both parts of the cavity kept
    three_d = largest_component(vol)                 # in 3D the missed slice splits the cavity: half of it is lost
    assert three_d.sum() == lv.sum()
    # oracle: scipy's labelling of the 3D volume, one label per face-connected piece
    assert n_components(vol) == ndimage.label(vol)[1] == 3


# ------------------------------------------------------------------------------------------------ shape


def test_compactness_closed_forms():
    square = np.zeros((64, 64), bool)
    square[10:40, 10:40] = True
    prob = torch.tensor(np.stack([square, disc((64, 64), 32, 32, 20)]).astype(np.float32))
    soft = soft_compactness(prob)
    assert soft[0].item() == pytest.approx(4 / math.pi, rel=0.03)            # P^2 / (4 pi A) of a square
    assert 1.0 <= soft[1].item() < 1.15                                      # of a (digital) disc
    assert soft_perimeter(prob)[0].item() == pytest.approx(4 * 30, rel=0.03)
    half = soft_compactness(prob * 0.5)                                       # the same shape at half height
    assert torch.allclose(half, soft, rtol=2e-3)
    assert compactness(disc((64, 64), 32, 32, 20)) < compactness(square) < compactness(square | disc((64, 64), 55, 55,
                                                                                                      4))
    assert math.isinf(compactness(np.zeros((8, 8), bool)))


def test_compactness_loss_prefers_a_disc_and_ignores_absent_class():
    ragged = disc((48, 48), 24, 24, 10) & ~(np.indices((48, 48)).sum(0) % 4 == 0)
    logits = torch.tensor(np.stack([ragged, disc((48, 48), 24, 24, 10)]), dtype=torch.float32) * 10
    two = torch.stack([-logits, logits], 1)                                  # (2, 2, H, W): class 1 = the shape
    per = [compactness_loss(two[i:i + 1], 1).item() for i in range(2)]
    assert per[0] > per[1] >= 0
    absent = torch.stack([torch.full((2, 48, 48), 10.0), torch.full((2, 48, 48), -10.0)], 1)
    assert compactness_loss(absent, 1).item() == 0.0                          # class 1 absent everywhere
    x = two.clone().requires_grad_(True)
    compactness_loss(x, 1).backward()
    assert torch.isfinite(x.grad).all()


def test_convex_hull_fills_a_notch():
    square = np.zeros((32, 32), bool)
    square[8:24, 8:24] = True
    notched = square.copy()
    notched[8:16, 14:18] = False                     # a notch cut from the top edge
    assert np.array_equal(convex_hull(notched), square)
    vol = convex_hull(np.stack([notched, np.zeros_like(notched)]))
    assert np.array_equal(vol[0], square) and not vol[1].any()
    blob = np.zeros_like(square)
    blob[28:31, 2:5] = True                          # a second component: hulled on its own, not bridged
    assert np.array_equal(convex_hull(notched | blob), square | blob)


# ------------------------------------------------------------------------------------------------ size


def test_size_range_and_penalty_by_hand():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :2, :5] = True                          # area 10
    masks[2, :5, :6] = True                          # area 30; slice 1 has no cavity
    assert size_range(masks, 0.2) == pytest.approx((8.0, 36.0))
    with pytest.raises(ValueError):
        size_range(np.zeros((2, 4, 4), bool))
    assert size_bounds(None, 2, 8, 36).tolist() == [[0, 36], [0, 36]]
    assert size_bounds(torch.tensor([True, False]), 2, 8, 36).tolist() == [[8, 36], [0, 0]]
    # hard logits: the soft size is the pixel count of class 1 (50 pixels) -> (50 - 36)^2 / 100 for image 0
    fg = torch.zeros(1, 10, 10)
    fg[0, :5] = 1
    logits = torch.cat([-20 * fg + 10, 20 * fg - 10], 0)[None]               # (1, 2, 10, 10)
    assert size_prior_loss(logits, 1, 8, 36).item() == pytest.approx((50 - 36) ** 2 / 100, rel=1e-4)
    assert size_prior_loss(logits, 1, 60, 80, present=torch.tensor([True])).item() == pytest.approx(1.0, rel=1e-4)
    assert interval_penalty(torch.tensor([50.0]), torch.tensor([[8.0, 36.0]])).item() == pytest.approx(196.0)


# ------------------------------------------------------------------------------------------------ fundus


def test_cup_leaking_out_of_the_disc_is_cut_back():
    d = disc((48, 48), 24, 24, 10)
    cup = disc((48, 48), 30, 24, 7)                   # reaches beyond the disc's right edge
    stray = disc((48, 48), 5, 5, 2)                   # and a stray blob of cup far away
    assert (cup & ~d).any()
    new_disc, new_cup = cup_inside_disc(d | stray, cup | stray)
    assert np.array_equal(new_disc, d)
    assert np.array_equal(new_cup, cup & d) and not (new_cup & ~new_disc).any()


def test_disc_centre_is_the_brightest_blob():
    image = np.full((64, 64, 3), 0.3, np.float32)
    image[disc((64, 64), 45, 20, 5)] = 0.9
    x, y = disc_centre(image)
    assert abs(x - 45) <= 1 and abs(y - 20) <= 1


# ------------------------------------------------------------------------------------------------ polar


def test_polar_transform_matches_closed_form():
    """polar[i, j] = f(centre + rho_j (cos t_i, sin t_i)), t_i = 2 pi i / n_angles, rho_j = j R / n_radii."""
    cx, cy, radius = 30.3, 33.7, 20.0
    yy, xx = np.mgrid[:64, :64].astype(np.float32)
    r, t = np.hypot(xx - cx, yy - cy), np.arctan2(yy - cy, xx - cx)
    image = (np.cos(r / 4) * (1 + 0.3 * np.sin(t))).astype(np.float32)     # sin: pins the angle's direction
    polar = to_polar(image, (cx, cy), radius, (128, 64))
    ti, rj = np.arange(128) * 2 * np.pi / 128, np.arange(64) * radius / 64
    expect = np.cos(rj[None] / 4) * (1 + 0.3 * np.sin(ti[:, None]))
    assert polar.shape == (128, 64)
    assert np.abs(polar - expect)[:, 7:60].max() < 0.05      # off the centre, where f has no limit, and the rim


def test_polar_inverse_recovers_the_image():
    rng = np.random.default_rng(0)
    image = ndimage.gaussian_filter(rng.random((64, 64, 3)), (3, 3, 0)).astype(np.float32)
    centre, radius = (31.0, 29.5), 24.0
    back = from_polar(to_polar(image, centre, radius, (256, 128)), centre, radius, (64, 64))
    yy, xx = np.mgrid[:64, :64]
    inside = np.hypot(xx - centre[0], yy - centre[1]) < radius - 2
    assert back.shape == image.shape
    assert np.abs(back - image)[inside].max() < 0.02
    assert np.abs(back[np.hypot(xx - centre[0], yy - centre[1]) > radius + 1]).max() == 0
    mask = disc((64, 64), 31, 29, 9)
    polar_mask = to_polar(mask, centre, radius, (256, 128), "nearest")
    assert polar_mask.dtype == bool
    assert (polar_mask[:, :40].all(1)).all() and not polar_mask[:, 60:].any()   # the disc is a layer: rho < 9
    assert (from_polar(polar_mask, centre, radius, (64, 64), "nearest") != mask).sum() <= 0.05 * mask.sum()


def test_polar_many_channels():
    image = np.random.default_rng(1).random((32, 32, 6)).astype(np.float32)
    polar = to_polar(image, (16, 16), 12, (64, 32))
    assert polar.shape == (64, 32, 6)
    assert np.allclose(polar[..., 5], to_polar(image[..., 5], (16, 16), 12, (64, 32)))


# ------------------------------------------------------------------------------------------------ windowing


def test_window_channels_by_hand():
    from common.priors.windowing import window_channels

    hu = np.array([[-1000.0, -160.0, 40.0], [240.0, 400.0, 1300.0]])
    out = window_channels(hu, ("soft_tissue", "bone", (0.0, 2000.0)))
    assert out.shape == (3, 2, 3) and out.dtype == np.float32
    c, w = WINDOW_PRESETS["soft_tissue"]                                    # (40, 400): -160 -> 0, 240 -> 1
    assert np.allclose(out[0], np.clip((hu - (c - w / 2)) / w, 0, 1))
    assert out[0, 0, 1] == 0 and out[0, 0, 2] == pytest.approx(0.5) and out[0, 1, 0] == 1
    assert out[1, 1, 1] == pytest.approx(0.5)                               # bone window centred at 400
    assert out[2, 0, 0] == 0 and out[2, 1, 1] == pytest.approx(0.7) and out[2, 1, 2] == 1   # (0, 2000): -1000..1000
    with pytest.raises(InputError, match="unknown window preset"):
        window_channels(hu, ("liver",))
