"""Tests of the ACDC-like cardiac cine-MRI phantom (common/data/phantoms/cardiac.py)."""

import cv2
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from common.data.phantoms import cardiac_shapes as sh
from common.data.phantoms.cardiac import (
    LABELS,
    CardiacPhantomSlices,
    CardiacPhantomVolumes,
    draw_n_slices,
    render_cardiac_volume,
)
from common.errors import InputError


def _ventricular(values, meta):
    return np.array([x for x, kind in zip(values, meta["kinds"]) if kind == "ventricle"])


@pytest.fixture(scope="module")
def volumes_256():
    return [render_cardiac_volume([3, i], size=256) for i in range(8)]


def test_deterministic_per_seed_and_index():
    a = render_cardiac_volume([5, 2], size=64)
    b = render_cardiac_volume(np.random.default_rng([5, 2]), size=64)
    c = render_cardiac_volume([5, 3], size=64)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert a[2] == b[2]
    assert a[0].shape != c[0].shape or not np.array_equal(a[0], c[0])


def test_shapes_dtypes_range_and_labels():
    vol, lab, meta = render_cardiac_volume(7, size=96)
    d = meta["n_slices"]
    assert 6 <= d <= 10
    assert vol.shape == lab.shape == (d, 96, 96)
    assert vol.dtype == np.float32 and lab.dtype == np.uint8
    assert vol.min() >= 0.0 and vol.max() <= 1.0 and vol.std() > 0.1
    assert set(np.unique(lab)) <= set(LABELS.values())
    has_lv = (lab == LABELS["lv"]).any(axis=(1, 2))
    np.testing.assert_array_equal(has_lv, [k == "ventricle" for k in meta["kinds"]])
    assert meta["kinds"].count("ventricle") >= 4
    fixed = render_cardiac_volume(7, size=64, n_slices=4, phase="ES")[2]
    assert fixed["n_slices"] == 4 and fixed["phase"] == "ES"


def test_slice_count_is_known_without_rendering():
    for i in range(5):
        assert render_cardiac_volume([11, i], size=32)[0].shape[0] == draw_n_slices(11, i)


def test_lv_area_in_acdc_range_and_shrinks_towards_apex(volumes_256):
    areas = np.concatenate([_ventricular(m["lv_area"], m) for _, _, m in volumes_256])
    assert areas.min() >= 80 and areas.max() <= 1900
    assert np.mean((areas >= 100) & (areas <= 1700)) >= 0.95
    for _, lab, meta in volumes_256:
        np.testing.assert_array_equal(meta["lv_area"], (lab == LABELS["lv"]).sum(axis=(1, 2)))
        a = _ventricular(meta["lv_area"], meta)
        assert np.all(a[1:] <= a[:-1] * 1.05 + 5)  # monotone up to breath-hold jitter
        assert a[-1] < 0.6 * a[0]


def test_geometry_scales_with_resolution():
    big = render_cardiac_volume([4, 1], size=256)
    small = render_cardiac_volume([4, 1], size=64)
    assert big[0].shape[0] == small[0].shape[0]
    ratio = np.array(big[2]["lv_area"]) / (16 * np.array(small[2]["lv_area"]))
    assert np.all(np.abs(ratio - 1) < 0.25) and abs(np.median(ratio) - 1) < 0.08


def test_myocardium_surrounds_lv_and_separates_it_from_rv(volumes_256):
    kernel = np.ones((3, 3), np.uint8)
    fractions = []
    for _, lab, meta in volumes_256:
        for j, sl in enumerate(lab):
            lv = (sl == LABELS["lv"]).astype(np.uint8)
            ring = (cv2.dilate(lv, kernel) > 0) & (lv == 0)
            frac = np.mean(sl[ring] == LABELS["myo"]) if ring.any() else 0.0
            if meta["kinds"][j] != "ventricle":
                assert not lv.any()
                continue
            first = meta["kinds"].index("ventricle")
            assert frac > (0.6 if j == first and meta["has_lvot"] else 0.95)
            fractions.append(frac)
            assert not np.any(sl[ring] == LABELS["rv"])  # septum always between the cavities
    assert np.mean(fractions) > 0.95


def test_rv_present_at_base_and_beside_the_septum(volumes_256):
    for _, lab, meta in volumes_256:
        first = meta["kinds"].index("ventricle")
        assert meta["has_rv"][first] == 1 and (lab[first] == LABELS["rv"]).sum() > 150
        lv_rv = [(lab[j] == LABELS["rv"]).sum() / (lab[j] == LABELS["lv"]).sum() for j in (first, first + 1)]
        assert 0.2 < np.mean(lv_rv) < 2.5


def _best_threshold_dice(image, mask):
    thresholds = np.linspace(0, 1, 101, dtype=np.float32)
    above = image[..., None] > thresholds
    inter = (above & mask[..., None]).reshape(-1, thresholds.size).sum(0)
    total = above.reshape(-1, thresholds.size).sum(0) + mask.sum()
    return float((2 * inter / np.maximum(total, 1)).max())


def test_lv_is_not_separable_by_a_global_threshold():
    lv = np.zeros((40, 40), bool)
    lv[10:20, 10:20] = True
    assert _best_threshold_dice(lv.astype(np.float32) * 0.9, lv) == 1.0  # the measure can reach 1
    dices = []
    for i in range(6):
        vol, lab, _ = render_cardiac_volume([0, 100 + i], size=96)
        dices.append(_best_threshold_dice(vol, lab == LABELS["lv"]))
    assert np.mean(dices) < 0.6, dices
    # Even without noise and bias the bright RV, fat and vessels defeat a threshold.
    vol, lab, _ = render_cardiac_volume([0, 100], size=96, noise=0.0, bias=0.0)
    assert _best_threshold_dice(vol, lab == LABELS["lv"]) < 0.75


def test_noise_and_bias_switches():
    clean = render_cardiac_volume([2, 0], size=64, noise=0.0, bias=0.0)
    noisy = render_cardiac_volume([2, 0], size=64)
    np.testing.assert_array_equal(clean[1], noisy[1])  # same anatomy
    corner = (slice(None), slice(0, 6), slice(0, 6))  # air outside the body
    assert noisy[0][corner].std() > 5 * clean[0][corner].std()


def test_slices_without_lv_look_like_acdc_stack_ends():
    kinds = [render_cardiac_volume([6, i], size=32)[2]["kinds"] for i in range(40)]
    assert 5 <= sum(k[0] == "atrial" for k in kinds) <= 28 and 2 <= sum(k[-1] == "apical_cap" for k in kinds) <= 24
    vol, lab, meta = next(render_cardiac_volume([6, i], size=96) for i in range(40) if kinds[i][0] == "atrial")
    assert not (lab[0] == LABELS["lv"]).any() and not (lab[0] == LABELS["myo"]).any()
    assert (vol[0] > 0.7).sum() > 100  # the atria and aortic root are bright blood pools
    off = render_cardiac_volume([6, 0], size=32, extra_slices=False)[2]["kinds"]
    assert set(off) == {"ventricle"}


def test_rician_noise_matches_closed_form():
    rng = np.random.default_rng(0)
    sigma = 0.1
    zero = sh.rician(np.zeros((400, 400), np.float32), sigma, rng)
    assert abs(zero.mean() - sigma * np.sqrt(np.pi / 2)) < 2e-3  # Rayleigh mean
    strong = sh.rician(np.full((400, 400), 1.0, np.float32), sigma, rng)
    assert abs(strong.mean() - np.sqrt(1 + sigma**2)) < 2e-3 and abs(strong.std() - sigma) < 3e-3


def test_partial_volume_coverage_preserves_area():
    size = 128
    grid = sh.pixel_grid(size, rotation=0.3, shift=complex(5, -3), scale=1.1)
    k = 1.1 * size / sh.CANONICAL_FOV
    for radius in (6.0, 20.0):
        area_px = sh.coverage(sh.star_distance(grid, 0j, radius), k).sum()
        assert abs(area_px / (np.pi * (radius * k) ** 2) - 1) < 0.02
    ellipse = sh.coverage(sh.star_distance(grid, 10 + 4j, 30.0, 15.0, angle=0.7), k).sum()
    assert abs(ellipse / (np.pi * 30 * 15 * k**2) - 1) < 0.02


def test_datasets_and_default_collate():
    vols = CardiacPhantomVolumes(n_volumes=3, size=48, seed=1)
    item = vols[1]
    d = vols.n_slices(1)
    assert item["image"].shape == (1, d, 48, 48) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (d, 48, 48) and item["mask"].dtype == torch.int64
    slices = CardiacPhantomSlices(n_volumes=3, size=48, seed=1)
    assert len(slices) == sum(vols.n_slices(v) for v in range(3))
    keys = {tuple(sorted(slices[i]["meta"])) for i in range(len(slices))}
    assert len(keys) == 1
    assert all(isinstance(x, (int, float, str)) for x in slices[0]["meta"].values())
    last = slices[len(slices) - 1]
    assert last["meta"]["volume"] == 2 and last["meta"]["slice"] == last["meta"]["n_slices"] - 1
    torch.testing.assert_close(last["image"][0], vols[2]["image"][0, -1])
    batch = next(iter(DataLoader(slices, batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(0))))
    assert batch["image"].shape == (5, 1, 48, 48) and batch["mask"].shape == (5, 48, 48)
    assert batch["meta"]["volume"].shape == (5,) and len(batch["meta"]["phase"]) == 5
    test_split = CardiacPhantomSlices(n_volumes=2, size=48, seed=1, offset=3)
    assert test_split[0]["meta"]["volume"] == 3


@pytest.mark.parametrize("kwargs", [{"size": 16}, {"phase": "diastole"}, {"n_slices": 1}])
def test_bad_arguments_raise_input_error(kwargs):
    with pytest.raises(InputError):
        render_cardiac_volume(0, **{"size": 64, **kwargs})


def test_bad_dataset_count_raises_input_error():
    with pytest.raises(InputError):
        CardiacPhantomSlices(n_volumes=0)
