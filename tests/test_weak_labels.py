"""Weak labels from full masks (Kervadec et al. 2019, arXiv:1805.04628, Sec. 4.1) on hand-drawn masks."""

import numpy as np
import pytest
import torch

from common.errors import InputError
from common.losses import partial_cross_entropy
from common.weak.labels import (
    IGNORE,
    WEAK_LABELS,
    box,
    centroid,
    centroid_pixel,
    check_same_size,
    erosion,
    make_weak_label,
    random_point,
)

U = IGNORE


def square(size, y0, y1, x0, x1):
    m = np.zeros((size, size), dtype=bool)
    m[y0:y1, x0:x1] = True
    return m


def only(shape, fg_pixels, background=None):
    """Expected weak label: all unlabelled (or ``background`` where given), 1 at ``fg_pixels``."""
    out = np.full(shape, U, dtype=np.uint8) if background is None else np.where(background, 0, U).astype(np.uint8)
    for y, x in fg_pixels:
        out[y, x] = 1
    return out


# ------------------------------------------------------------------------------------------ erosion


def test_erosion_backs_off_until_non_empty():
    # A 5x5 square: two 3x3 erosions leave its centre pixel, three leave nothing.
    assert np.array_equal(erosion(square(7, 1, 6, 1, 6)), only((7, 7), [(3, 3)]))


def test_erosion_of_a_rectangle_keeps_its_core_line():
    # 5 rows x 9 cols: two erosions leave row 3, cols 3..7 (5 pixels); three would empty it.
    expected = only((7, 11), [(3, x) for x in range(3, 8)])
    assert np.array_equal(erosion(square(11, 1, 6, 1, 10)[:7]), expected)


def test_erosion_of_a_thin_line_falls_back_to_the_mask():
    m = np.zeros((5, 5), dtype=bool)
    m[2, :] = True
    assert np.array_equal(erosion(m), np.where(m, 1, U).astype(np.uint8))


def test_erosion_treats_the_image_border_as_background():
    assert np.array_equal(erosion(np.ones((5, 5), dtype=bool)), only((5, 5), [(2, 2)]))


def test_erosion_respects_max_iterations():
    # 9x9 square: 4 erosions leave its centre, but with max_iterations=1 the 7x7 core stays.
    res = erosion(square(11, 1, 10, 1, 10), max_iterations=1)
    assert np.array_equal(res == 1, square(11, 2, 9, 2, 9))


# ------------------------------------------------------------------------------------------ centroid


def test_centroid_disk_hand_computed():
    # Square rows/cols 2..6 has centroid (4, 4); a radius-1 disk is the 5-pixel plus sign.
    res = centroid(square(9, 2, 7, 2, 7), radius=1)
    assert np.array_equal(res, only((9, 9), [(3, 4), (4, 3), (4, 4), (4, 5), (5, 4)]))


def test_centroid_disk_is_clipped_to_the_mask():
    m = square(9, 3, 6, 3, 6)                                          # 3x3, well inside a radius-4 disk
    assert np.array_equal(centroid(m, radius=4), np.where(m, 1, U).astype(np.uint8))


def test_centroid_in_a_hole_moves_to_nearest_foreground_pixel():
    ring = square(9, 1, 8, 1, 8) & ~square(9, 3, 6, 3, 6)            # centroid (4, 4) lies in the hole
    # Nearest ring pixels are (2,4), (4,2), (4,6), (6,4) at distance 2; the first in row-major order wins.
    assert centroid_pixel(ring) == (2, 4)
    res = centroid(ring, radius=0)
    assert np.array_equal(res, only((9, 9), [(2, 4)]))


def test_centroid_rounds_half_up():
    m = np.zeros((4, 6), dtype=bool)
    m[1, 2:4] = True                                                   # centroid (1, 2.5) -> pixel (1, 3)
    assert centroid_pixel(m) == (1, 3)


# ------------------------------------------------------------------------------------------ random point


def blob():
    m = square(32, 4, 20, 6, 26)
    m[20:28, 10:14] = True
    return m


def test_random_point_is_deterministic_per_seed():
    m = blob()
    assert np.array_equal(random_point(m, 3), random_point(m, 3))
    assert np.array_equal(random_point(m, np.random.default_rng(5)), random_point(m, 5))
    assert len({random_point(m, s, radius=0).tobytes() for s in range(20)}) > 10


def test_random_point_seed_inside_mask_and_disk_clipped():
    m = blob()
    for seed in range(30):
        centre = random_point(m, seed, radius=0)
        (cy,), (cx,) = np.nonzero(centre == 1)                        # exactly one pixel at radius 0
        assert m[cy, cx]
        disk = random_point(m, seed, radius=4)
        yy, xx = np.mgrid[:32, :32]
        within = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
        assert np.array_equal(disk == 1, within & m)                   # same centre, disk clipped to the mask
        assert set(np.unique(disk)) <= {1, U}


def test_random_point_covers_the_whole_mask():
    m = np.zeros((6, 6), dtype=bool)
    m[[0, 5, 2], [0, 5, 3]] = True
    picked = {tuple(np.argwhere(random_point(m, s, radius=0) == 1)[0]) for s in range(60)}
    assert picked == {(0, 0), (5, 5), (2, 3)}


# ------------------------------------------------------------------------------------------ box


def test_box_semantics():
    m = np.zeros((8, 8), dtype=bool)
    m[2, 3] = m[4, 6] = True
    res = box(m)
    expected = np.zeros((8, 8), dtype=np.uint8)
    expected[2:5, 3:7] = U                                             # rows 2..4, cols 3..6 unlabelled
    assert np.array_equal(res, expected)
    assert not (res == 1).any()                                        # a box labels no foreground pixel


def test_box_margin_is_clipped_to_the_image():
    m = np.zeros((8, 8), dtype=bool)
    m[0, 1] = m[3, 6] = True
    expected = np.zeros((8, 8), dtype=np.uint8)
    expected[0:6, 0:8] = U                                             # rows 0..5, cols 0..7 with margin 2
    assert np.array_equal(box(m, margin=2), expected)
    with pytest.raises(ValueError):
        box(m, background_margin=1)


# ------------------------------------------------------------------------------------------ background option


def test_default_labels_no_background():
    for kind in ("erosion", "point", "centroid"):
        assert not (make_weak_label(kind, blob()) == 0).any()


def test_background_margin_labels_pixels_far_from_the_mask():
    m = square(9, 2, 7, 2, 7)
    res = centroid(m, radius=0, background_margin=1)
    assert np.array_equal(res, only((9, 9), [(4, 4)], background=~square(9, 1, 8, 1, 8)))
    res0 = centroid(m, radius=0, background_margin=0)
    assert np.array_equal(res0, only((9, 9), [(4, 4)], background=~m))


# ------------------------------------------------------------------------------------------ registry, errors


@pytest.mark.parametrize("kind", sorted(WEAK_LABELS))
def test_registry_output_contract(kind):
    m = blob()
    res = make_weak_label(kind, m.astype(np.uint8), seed=1)
    assert res.shape == m.shape and res.dtype == np.uint8
    assert set(np.unique(res)) <= {0, 1, U}
    assert not ((res == 1) & ~m).any()                                 # foreground labels never leave the mask
    assert not ((res == 0) & m).any()                                  # background labels never cover it
    if kind != "box":
        assert (res == 1).any()


@pytest.mark.parametrize("kind", sorted(WEAK_LABELS))
def test_empty_mask_is_an_input_error(kind):
    with pytest.raises(InputError, match="no foreground"):
        make_weak_label(kind, np.zeros((8, 8), dtype=bool))


def test_bad_masks_are_input_errors():
    with pytest.raises(InputError, match="binary"):
        erosion(np.full((4, 4), 3))
    with pytest.raises(InputError, match="2D"):
        erosion(np.ones((2, 4, 4), dtype=bool))
    with pytest.raises(ValueError, match="unknown weak label kind"):
        make_weak_label("scribble", np.ones((4, 4), dtype=bool))


def test_check_same_size():
    check_same_size(np.zeros((8, 6, 3)), np.zeros((8, 6)))
    with pytest.raises(InputError, match="8x6 but its mask is 8x7") as info:
        check_same_size(np.zeros((8, 6)), np.zeros((8, 7)), path="case01.png")
    assert "case01.png" in str(info.value)


def test_weak_label_feeds_partial_ce():
    # Only the seed pixels count: the loss equals -log p1 averaged over the seed.
    m = square(16, 4, 12, 4, 12)
    weak = torch.from_numpy(make_weak_label("erosion", m).astype(np.int64))[None]     # (1, H, W)
    logits = torch.zeros(1, 2, 16, 16)
    logits[0, 1] = torch.linspace(-2, 2, 256).reshape(16, 16)
    seed = weak[0] == 1
    expected = -torch.log_softmax(logits, 1)[0, 1][seed].mean()
    assert partial_cross_entropy(logits, weak).item() == pytest.approx(expected.item(), rel=1e-6)
