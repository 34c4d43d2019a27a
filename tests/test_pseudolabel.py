"""Oracle tests of the pseudo-label stages: region growing, k-means, DenseCRF and the graph methods (common.weak)."""

import itertools
import sys

import numpy as np
import pytest

from common.errors import InputError, cli_main
from common.losses import IGNORE_INDEX
from common.metrics import dice
from common.tasks.lv_pseudolabel import with_ignore_band
from common.weak.crf import CRFParams, crf_masks, dense_crf, grey_levels, import_densecrf
from common.weak.graph import (
    GrabCutParams,
    PolarParams,
    _closed_path,
    grabcut_refine,
    lv_centre,
    polar_boundary,
)
from common.weak.labels import make_weak_label
from common.weak.pseudo import PseudoConfig, kmeans_mask, pseudo_masks, region_grow, seed_stats, seeds_from_weak


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return np.hypot(yy - cy, xx - cx)


def _textured(seed, size=48):
    """A smooth random image with noise: region growing follows its level sets in irregular shapes."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    smooth = ndimage.gaussian_filter(rng.standard_normal((size, size)), 4)
    return (smooth - smooth.min()) / np.ptp(smooth) + rng.normal(0, 0.02, (size, size))


# ------------------------------------------------------------------------------------------------ region growing


@pytest.mark.parametrize("seed,k", list(itertools.product(range(3), (0.5, 1.0, 3.0))))
def test_region_grow_equals_flood_fill(seed, k):
    """Oracle: scikit-image's flood fill of |I - mean| (seeds set to 0) with tolerance k std, from every seed."""
    from skimage.segmentation import flood

    image = _textured(seed)
    seeds = (_disk(image.shape, 20 + seed, 24, 0) <= 2.5) | (_disk(image.shape, 38, 10 + 3 * seed, 0) <= 1)
    mean, std = seed_stats(image, seeds)
    distance = np.abs(image - mean)
    distance[seeds] = 0.0
    expected = np.zeros(image.shape, bool)
    for point in map(tuple, np.argwhere(seeds)):
        if not expected[point]:
            expected |= flood(distance, point, tolerance=k * std, connectivity=1)
    got = region_grow(image, seeds, k)
    assert got.sum() > seeds.sum()  # it grew
    np.testing.assert_array_equal(got, expected)


def test_region_grow_pooled_stats_and_reach():
    """A one-pixel seed grows with given (pooled) statistics; ``allowed`` stops the growth."""
    image = np.where(_disk((32, 32), 16, 16, 0) <= 6, 0.9, 0.2) + np.random.default_rng(0).normal(0, 0.01, (32, 32))
    seeds = np.zeros((32, 32), bool)
    seeds[16, 16] = True
    assert region_grow(image, seeds, 3.0).sum() == 1  # std 0 of a single pixel: nothing joins
    grown = region_grow(image, seeds, 3.0, stats=(0.9, 0.05))
    np.testing.assert_array_equal(grown, image > 0.5)
    half = np.zeros((32, 32), bool)
    half[:, :17] = True
    np.testing.assert_array_equal(region_grow(image, seeds, 3.0, (0.9, 0.05), allowed=half), (image > 0.5) & half)


def test_pseudo_masks_of_a_volume():
    """Volume statistics grow a tiny apical seed; a slice without seed stays background; boxes seed at the centre."""
    rng = np.random.default_rng(0)
    truth = np.stack([_disk((40, 40), 20, 20, 0) <= r for r in (9, 4, 6)])
    truth[2] = False  # no LV on the last slice
    volume = np.where(truth, 0.85, 0.2) + rng.normal(0, 0.02, truth.shape)
    weak = np.full(truth.shape, IGNORE_INDEX, np.uint8)
    weak[0][_disk((40, 40), 20, 20, 0) <= 5] = 1
    weak[1, 20, 20] = 1
    masks = pseudo_masks(volume, weak, PseudoConfig("region", k=3.0))
    np.testing.assert_array_equal(masks, truth)
    boxes = np.stack([make_weak_label("box", m) if m.any() else np.zeros_like(weak[0]) for m in truth])
    seeds, reach = seeds_from_weak(boxes[0])
    assert seeds[20, 20] and not (seeds & ~reach).any() and reach.sum() == 19 * 19
    np.testing.assert_array_equal(pseudo_masks(volume, boxes, PseudoConfig("region")), truth)


def test_bad_inputs_are_one_line(capsys):
    image = np.zeros((16, 16))
    with pytest.raises(InputError, match="no seed pixel"):
        region_grow(image, np.zeros((16, 16), bool))
    with pytest.raises(InputError, match="16x16 but its mask is 16x12"):
        region_grow(image, np.ones((16, 12), bool))
    with pytest.raises(InputError, match="unknown pseudo-mask method"):
        pseudo_masks(np.zeros((2, 16, 16)), np.ones((2, 16, 16), np.uint8), PseudoConfig("watershed"))
    with pytest.raises(SystemExit) as stop:  # what a script prints for it
        cli_main(lambda _: pseudo_masks(np.zeros((2, 8, 8)), np.full((2, 8, 8), IGNORE_INDEX, np.uint8)), None)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: no slice of the volume has a seed") and err.count("\n") == 1


# ------------------------------------------------------------------------------------------------ k-means


def test_kmeans_separates_two_intensities_exactly():
    rng = np.random.default_rng(1)
    bright = np.zeros((40, 40), bool)
    bright[5:15, 5:20] = True
    bright[25:35, 22:38] = True                                   # a second bright region, not touching the seeds
    image = np.where(bright, 0.8, 0.3) + rng.uniform(-0.01, 0.01, bright.shape)
    seeds = np.zeros_like(bright)
    seeds[8:10, 8:12] = True
    np.testing.assert_array_equal(kmeans_mask(image, seeds, n_clusters=2, connected=False), bright)
    first = np.zeros_like(bright)
    first[5:15, 5:20] = True
    np.testing.assert_array_equal(kmeans_mask(image, seeds, n_clusters=2), first)
    # with position: the second bright region is far from the seeds' cluster centre, yet intensity still decides
    assert dice(kmeans_mask(image, seeds, 2, position_weight=0.1), first) == 1.0


# ------------------------------------------------------------------------------------------------ DenseCRF


def _crf_case(seed=0, size=40):
    rng = np.random.default_rng(seed)
    truth = _disk((size, size), size / 2, size / 2 - 2, 0) <= size / 4
    image = np.clip(np.where(truth, 0.85, 0.25) + rng.normal(0, 0.03, truth.shape), 0, 1)
    p = np.clip(np.where(_disk(truth.shape, size / 2 + 2, size / 2, 0) <= size / 4 + 2, 0.7, 0.3)
                + rng.normal(0, 0.2, truth.shape), 0.01, 0.99).astype(np.float32)
    return image, truth, np.stack([1 - p, p])


@pytest.mark.parametrize("params", [CRFParams(), CRFParams(sxy=5, schan=20, compat=4, gauss_compat=0, iters=3),
                                    CRFParams(sxy=1.5, schan=7, compat=10, gauss_sxy=2, gauss_compat=5, iters=8)])
def test_dense_crf_equals_direct_pydensecrf(params):
    """The wrapper = pydensecrf driven by hand with its own helpers (unary_from_softmax, create_pairwise_bilateral)."""
    dcrf = import_densecrf()
    from pydensecrf.utils import create_pairwise_bilateral, unary_from_softmax

    image, _, probs = _crf_case()
    d = dcrf.DenseCRF2D(image.shape[1], image.shape[0], 2)
    d.setUnaryEnergy(unary_from_softmax(probs, clip=1e-5))
    if params.gauss_compat:
        d.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    grey = np.round(image * 255).astype(np.uint8)
    d.addPairwiseEnergy(create_pairwise_bilateral((params.sxy, params.sxy), (params.schan,), grey, chdim=-1),
                        compat=params.compat)
    expected = np.array(d.inference(params.iters)).reshape(probs.shape)
    np.testing.assert_array_equal(dense_crf(image, probs, params), expected)


def test_dense_crf_matches_rgb_bilateral_and_helps():
    """Same kernel as addPairwiseBilateral on the grey image in 3 channels (srgb = sqrt(3) schan), up to the
    permutohedral lattice's rounding; and it cleans a noisy prediction on a clean image."""
    dcrf = import_densecrf()
    image, truth, probs = _crf_case(1)
    params = CRFParams()
    d = dcrf.DenseCRF2D(image.shape[1], image.shape[0], 2)
    d.setUnaryEnergy(np.ascontiguousarray(-np.log(np.clip(probs, 1e-5, 1)).reshape(2, -1)))
    d.addPairwiseGaussian(sxy=params.gauss_sxy, compat=params.gauss_compat)
    rgb = np.ascontiguousarray(np.dstack([grey_levels(image).astype(np.uint8)] * 3))
    d.addPairwiseBilateral(sxy=params.sxy, srgb=params.schan * np.sqrt(3), rgbim=rgb, compat=params.compat)
    rgb_mask = np.array(d.inference(params.iters)).reshape(probs.shape).argmax(0)
    ours = crf_masks(image[None], probs[1][None], params)[0]
    assert (ours == rgb_mask).mean() > 0.99
    assert dice(ours, truth) > dice(probs[1] > 0.5, truth) + 0.1


def test_missing_pydensecrf_names_the_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pydensecrf", None)
    monkeypatch.setitem(sys.modules, "pydensecrf.densecrf", None)
    with pytest.raises(InputError, match="pip install pydensecrf2"):
        dense_crf(np.zeros((8, 8)), np.full((2, 8, 8), 0.5, np.float32))


# ------------------------------------------------------------------------------------------------ graph methods


def test_closed_path_is_the_brute_force_optimum():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cost = rng.random((5, 4))
        paths = [p for p in itertools.product(range(4), repeat=5)
                 if all(abs(p[j] - p[j - 1]) <= 1 for j in range(5))]  # j = 0 closes the loop
        best = min(paths, key=lambda p: cost[np.arange(5), p].sum())
        path = _closed_path(cost, 1)
        assert cost[np.arange(5), path].sum() == pytest.approx(cost[np.arange(5), best].sum())


def test_polar_search_recovers_disk_and_ellipse():
    rng = np.random.default_rng(0)
    d = _disk((64, 64), 30, 34, 0)
    disk = d <= 11
    prob = np.clip(1 / (1 + np.exp(d - 11)) + rng.normal(0, 0.3, d.shape), 0, 1)
    got = polar_boundary(prob)
    assert dice(got, disk) > 0.92 and dice(prob > 0.5, disk) < 0.8   # noisy threshold, clean path
    assert lv_centre(prob) == pytest.approx((30, 34), abs=0.5)
    yy, xx = np.mgrid[:64, :64]
    ellipse = ((yy - 28) / 14) ** 2 + ((xx - 30) / 8) ** 2 <= 1
    assert dice(polar_boundary(ellipse.astype(float)), ellipse) > 0.95
    assert not polar_boundary(np.zeros((16, 16))).any()


def test_polar_edge_term_finds_the_inner_ring_boundary():
    """Bright cavity (r < 10), dark ring (10..16), bright outside; ENet-like blur says r ~ 13: the edge term moves the
    boundary to the cavity's edge, the probability alone does not."""
    rng = np.random.default_rng(2)
    d = _disk((64, 64), 32, 30, 0)
    cavity = d < 10
    image = np.where(cavity, 0.9, np.where(d < 16, 0.25, 0.8)) + rng.normal(0, 0.03, d.shape)
    prob = 1 / (1 + np.exp((d - 13) / 2.0))
    assert dice(polar_boundary(prob, image, params=PolarParams(edge_weight=0.0)), cavity) < 0.8
    assert dice(polar_boundary(prob, image, params=PolarParams(edge_weight=1.0)), cavity) > 0.95


def test_grabcut_cleans_a_shifted_noisy_prediction():
    rng = np.random.default_rng(0)
    disk = _disk((64, 64), 30, 34, 0) <= 11
    image = np.where(disk, 0.85, 0.25) + rng.normal(0, 0.03, disk.shape)
    prob = np.clip(1 / (1 + np.exp(_disk((64, 64), 31, 35, 0) - 12.5)) + rng.normal(0, 0.15, disk.shape), 0, 1)
    assert dice(grabcut_refine(image, prob, GrabCutParams()), disk) > max(0.92, dice(prob > 0.5, disk) + 0.05)
    assert not grabcut_refine(image, np.zeros_like(prob)).any()


def test_ignore_band():
    masks = np.zeros((2, 9, 9), bool)
    masks[0, 2:7, 2:7] = True
    target = with_ignore_band(masks, 1, labelled=np.array([True, True]))
    expected = masks.astype(np.int64)
    expected[0, 1:8, 1:8] = IGNORE_INDEX
    expected[0, 3:6, 3:6] = 1
    np.testing.assert_array_equal(target, expected)
    np.testing.assert_array_equal(with_ignore_band(masks, 0), masks.astype(np.int64))
