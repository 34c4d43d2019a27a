"""Tests of the two-camera fundus phantom (common/data/phantoms/fundus.py): labels, determinism, domain shift."""

import numpy as np
import pytest
import torch
from scipy import ndimage, stats
from torch.utils.data import DataLoader
from torch.utils.data._utils.collate import default_collate

from common.data.phantoms.fundus import (
    CAMERAS,
    DOMAINS,
    FOV_FRACTION,
    FundusPhantom,
    disc_cup_channels,
    fundus_mask,
    refuge_to_seg,
    render_fundus,
    seg_to_refuge,
    vertical_cdr,
)
from common.data.phantoms.fundus_shapes import CUP_INSIDE_MARGIN, Ellipse, sample_anatomy
from common.errors import InputError


def _fov(size):
    c = (np.arange(size) + 0.5 - size / 2) / (FOV_FRACTION * size / 2)
    return c[None, :] ** 2 + c[:, None] ** 2 <= 1.0


def _refuge_vcdr_by_hand(mask):
    """REFUGE's definition written as plain loops: the tallest column of cup over that of disc."""
    disc_h = max(int(sum(mask[r, c] != 255 for r in range(mask.shape[0]))) for c in range(mask.shape[1]))
    cup_h = max(int(sum(mask[r, c] == 0 for r in range(mask.shape[0]))) for c in range(mask.shape[1]))
    return cup_h / disc_h


@pytest.mark.parametrize("domain", DOMAINS)
def test_render_shapes_range_and_black_outside_fov(domain):
    image, mask, meta = render_fundus(0, size=64, domain=domain)
    assert image.shape == (64, 64, 3) and image.dtype == np.float32
    assert mask.shape == (64, 64) and mask.dtype == np.uint8
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert set(np.unique(mask)) == {0, 128, 255}
    assert np.all(image[~_fov(64)] == 0.0)
    assert image[_fov(64)].mean() > 0.1
    assert meta["domain"] == domain and meta["eye"] in ("left", "right")


def test_dataset_item_layout_and_determinism():
    ds = FundusPhantom(n=6, size=48, domain="B", seed=5)
    item = ds[2]
    assert item["image"].shape == (3, 48, 48) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (48, 48) and item["mask"].dtype == torch.uint8
    assert item["seg"].dtype == torch.int64 and item["cdr"].dtype == torch.float32 and item["cdr"].ndim == 0
    again = FundusPhantom(n=6, size=48, domain="B", seed=5)[2]
    for key in ("image", "mask", "seg", "cdr"):
        assert torch.equal(item[key], again[key])
    assert item["meta"] == again["meta"]
    assert not torch.equal(item["image"], ds[3]["image"])
    assert not torch.equal(item["image"], FundusPhantom(n=6, size=48, domain="B", seed=6)[2]["image"])
    assert torch.equal(ds[-1]["image"], ds[5]["image"])
    with pytest.raises(IndexError):
        ds[6]
    image, mask, _ = render_fundus(np.random.default_rng(9), size=48)
    image2, mask2, _ = render_fundus(9, size=48)
    assert np.array_equal(image, image2) and np.array_equal(mask, mask2)


def test_cup_lies_inside_disc_with_rim_all_around():
    ds = FundusPhantom(n=16, size=96, domain="A", seed=1)
    for i in range(len(ds)):
        mask = ds[i]["mask"].numpy()
        cup, disc = mask == 0, mask != 255
        assert cup.sum() > 0 and np.all(disc[cup])
        assert ndimage.label(disc)[1] == 1 and ndimage.label(cup)[1] == 1
    for seed in range(40):
        anat = sample_anatomy(np.random.default_rng(seed))
        edge = anat.cup.boundary(256)
        assert anat.disc.radius(edge[:, 0], edge[:, 1]).max() <= CUP_INSIDE_MARGIN + 1e-9
        # At a resolution where the 6 % margin exceeds a pixel, a dilated cup stays inside the disc.
        mask = fundus_mask(anat, 384)
        assert np.all(mask[ndimage.binary_dilation(mask == 0)] != 255)


def test_cdr_matches_masks_and_design():
    ds = FundusPhantom(n=12, size=128, domain="A", seed=2)
    for i in range(len(ds)):
        item = ds[i]
        mask = item["mask"].numpy()
        assert float(item["cdr"]) == pytest.approx(_refuge_vcdr_by_hand(mask), abs=1e-6)
        # Pixel masks reproduce the sampled ratio up to one pixel on each of the two diameters.
        tol = 2.0 / item["meta"]["disc_diameter_px"] + 0.01
        assert abs(float(item["cdr"]) - item["meta"]["vcdr_design"]) < tol
    batch = np.stack([ds[i]["mask"].numpy() for i in range(3)])
    assert np.allclose(vertical_cdr(batch), [float(ds[i]["cdr"]) for i in range(3)])


def test_cdr_of_hand_built_concentric_circles():
    anat = sample_anatomy(np.random.default_rng(0))
    anat.disc = Ellipse(0.0, 0.0, 0.3, 0.3, 0.0)
    anat.cup = Ellipse(0.0, 0.0, 0.15, 0.15, 0.0)
    mask = fundus_mask(anat, 200)
    radius_px = FOV_FRACTION * 200 / 2
    assert abs((mask != 255).sum() - np.pi * (0.3 * radius_px) ** 2) < 0.02 * np.pi * (0.3 * radius_px) ** 2
    assert vertical_cdr(mask) == pytest.approx(0.5, abs=2 / (0.6 * radius_px))


def test_design_ratio_covers_spec_range():
    vcdr = np.array([sample_anatomy(np.random.default_rng(s)).vcdr_design for s in range(200)])
    assert vcdr.min() >= 0.3 - 1e-9 and vcdr.max() <= 0.8 + 1e-9
    assert vcdr.min() < 0.35 and vcdr.max() > 0.75


def test_seg_encoding_round_trip_and_channels():
    mask = FundusPhantom(n=1, size=64, seed=3)[0]["mask"].numpy()
    seg = refuge_to_seg(mask)
    assert seg.dtype == np.int64 and set(np.unique(seg)) == {0, 1, 2}
    assert np.array_equal(seg == 2, mask == 0) and np.array_equal(seg == 1, mask == 128)
    assert np.array_equal(seg_to_refuge(seg), mask)
    ch = disc_cup_channels(mask)
    assert ch.shape == (2, 64, 64)
    assert np.array_equal(ch[0] > 0, seg >= 1) and np.array_equal(ch[1] > 0, seg == 2)
    with pytest.raises(InputError, match="nearest"):
        refuge_to_seg(np.full((4, 4), 127, np.uint8))


def test_eyes_place_the_disc_on_either_side_and_anatomy_is_visible():
    ds = FundusPhantom(n=24, size=96, domain="B", seed=4)
    eyes = set()
    for i in range(len(ds)):
        item = ds[i]
        meta, image = item["meta"], item["image"].numpy().mean(0)
        eyes.add(meta["eye"])
        assert (meta["disc_x"] > 48) == (meta["eye"] == "right")
        assert (meta["macula_x"] < meta["disc_x"]) == (meta["eye"] == "right")
        disc = item["mask"].numpy() != 255
        background = _fov(96) & ~ndimage.binary_dilation(disc, iterations=4)
        assert image[disc].mean() > image[background].mean() + 0.1  # the disc is bright
        cup = item["mask"].numpy() == 0
        rim_mean = image[disc & ~cup].mean()
        assert image[cup].mean() > rim_mean  # the cup is paler than the rim
    assert eyes == {"left", "right"}


def test_vessels_and_macula_are_darker_than_background():
    anat = sample_anatomy(np.random.default_rng(11))
    image, mask, meta = render_fundus(1, size=128, domain="B", anatomy=anat)
    green = image[..., 1]
    to_px = FOV_FRACTION * 128 / 2
    # Centre lines of the four main veins, away from the disc and the FOV edge.
    pts = anat.veins.points[:4, 3:10].reshape(-1, 2) * to_px + 63.5
    inside = np.hypot(pts[:, 0] - 63.5, pts[:, 1] - 63.5) < 0.85 * to_px
    cols, rows = np.round(pts[inside]).astype(int).T
    assert green[rows, cols].mean() < 0.85 * np.median(green[_fov(128)])
    yy, xx = np.mgrid[:128, :128]
    r = np.hypot(xx - meta["macula_x"], yy - meta["macula_y"]) / meta["disc_diameter_px"]
    assert green[r < 0.3].mean() < green[(r > 1.2) & (r < 2.0) & _fov(128) & (mask == 255)].mean()


def test_domains_shift_colour_but_not_anatomy():
    n, size = 12, 48
    pair = {d: FundusPhantom(n=n, size=size, domain=d, seed=7, paired=True) for d in DOMAINS}
    fov = _fov(size)
    mean_rgb = {}
    for d, ds in pair.items():
        mean_rgb[d] = np.array([ds[i]["image"].numpy()[:, fov].mean(1) for i in range(n)])  # (n, 3)
    for i in range(n):  # paired: same eye, same labels, different photograph
        a, b = pair["A"][i], pair["B"][i]
        assert torch.equal(a["mask"], b["mask"]) and a["meta"]["eye"] == b["meta"]["eye"]
        assert (a["image"] - b["image"]).abs().mean() > 0.05
    # Colour balance separates the cameras on every single image (green/red ratio).
    ratio = {d: m[:, 1] / m[:, 0] for d, m in mean_rgb.items()}
    assert ratio["A"].max() < ratio["B"].min()
    assert np.abs(mean_rgb["A"].mean(0) - mean_rgb["B"].mean(0)).max() > 0.1


def test_unpaired_domains_draw_labels_from_one_distribution():
    n, size = 64, 48
    stats_by_domain = {}
    for d in DOMAINS:
        ds = FundusPhantom(n=n, size=size, domain=d, seed=8)
        masks = np.stack([ds[i]["mask"].numpy() for i in range(n)])
        stats_by_domain[d] = ((masks != 255).mean((1, 2)), vertical_cdr(masks))
    (area_a, cdr_a), (area_b, cdr_b) = stats_by_domain["A"], stats_by_domain["B"]
    assert not np.array_equal(area_a, area_b)  # unpaired: different eyes
    assert stats.ks_2samp(area_a, area_b).pvalue > 0.01
    assert stats.ks_2samp(cdr_a, cdr_b).pvalue > 0.01


def test_default_collate_and_dataloader():
    ds = FundusPhantom(n=5, size=32, domain="A", seed=0)
    items = [ds[i] for i in range(4)]
    assert all(it["meta"].keys() == items[0]["meta"].keys() for it in items)
    assert all(isinstance(v, (str, int, float)) for v in items[0]["meta"].values())
    batch = default_collate(items)
    assert batch["image"].shape == (4, 3, 32, 32) and batch["seg"].shape == (4, 32, 32)
    assert batch["cdr"].shape == (4,) and batch["meta"]["index"].tolist() == [0, 1, 2, 3]
    assert batch["meta"]["domain"] == ["A"] * 4
    loaded = next(iter(DataLoader(ds, batch_size=5)))
    assert torch.equal(loaded["image"], default_collate([ds[i] for i in range(5)])["image"])


def test_bad_arguments_raise_input_error():
    with pytest.raises(InputError, match="domain"):
        FundusPhantom(n=2, domain="C")
    with pytest.raises(InputError, match="size"):
        render_fundus(0, size=8)
    with pytest.raises(InputError):
        FundusPhantom(n=0)
    assert set(CAMERAS) == set(DOMAINS) == {"A", "B"}
