"""common.data.augment: image / mask alignment under known and random geometry, intensity leaving masks alone,
MONAI reseeded from torch, and mixup / CutMix targets checked against the pixels they mix."""

import pytest
import torch

from common.data.augment import (
    AUGMENTATIONS,
    FAMILIES,
    GEOMETRIC,
    INTENSITY,
    AugmentConfig,
    AugmentedDataset,
    BatchMixer,
    JointAugment,
    MixingCollate,
    resolve,
)
from common.errors import InputError

ALWAYS = AugmentConfig(p=1.0)


def l_shape(size: int = 32) -> torch.Tensor:
    """An asymmetric mask (H, W) int64: every flip and rotation of it differs."""
    m = torch.zeros(size, size, dtype=torch.int64)
    m[4:12, 6:20] = 1
    m[4:24, 6:10] = 1
    return m


def test_rotation_by_90_moves_image_and_mask_as_rot90():
    mask = l_shape()
    image = mask[None].float() * 0.8 + 0.1
    out, out_mask = JointAugment(["rotate"], AugmentConfig(p=1.0, degrees=(90.0, 90.0)))(image, mask)
    expected = torch.rot90(mask, 1, (0, 1))  # torchvision: positive angles turn counter-clockwise
    assert torch.equal(out_mask, expected)
    assert torch.allclose(out[0], expected.float() * 0.8 + 0.1, atol=1e-5)


def test_flip_moves_both_or_neither():
    mask = l_shape()
    flipped = mask.flip(-1)
    seen = set()
    for seed in range(8):
        torch.manual_seed(seed)
        out, out_mask = JointAugment(["flip"])(mask[None].float(), mask)
        assert torch.equal(out[0].long(), out_mask)  # the same geometry for both
        seen.add("flipped" if torch.equal(out_mask, flipped) else "kept" if torch.equal(out_mask, mask) else "?")
    assert seen == {"flipped", "kept"}


@pytest.mark.parametrize("name", [*GEOMETRIC, "geometric"])
def test_random_geometry_keeps_image_and_mask_aligned(name):
    """The image is the mask itself: resampled bilinearly it must still coincide with the nearest-neighbour mask."""
    torch.manual_seed(0)
    mask = l_shape()
    for _ in range(5):
        out, out_mask = JointAugment([name], ALWAYS)(mask[None].float(), mask)
        assert out_mask.dtype == torch.int64 and set(out_mask.unique().tolist()) <= {0, 1}
        agree = ((out[0] > 0.5) == out_mask.bool()).float().mean()
        assert agree > 0.97, (name, float(agree))
        assert out_mask.sum() > 0.6 * mask.sum()


@pytest.mark.parametrize("name", list(INTENSITY))
def test_intensity_changes_the_image_not_the_mask(name):
    torch.manual_seed(1)
    mask = l_shape()
    image = torch.rand(1, 32, 32) * 0.5 + 0.25
    out, out_mask = JointAugment([name], ALWAYS)(image, mask)
    assert torch.equal(out_mask, mask) and out.shape == image.shape and out.dtype == torch.float32
    assert not torch.allclose(out, image)


def test_bias_field_is_smooth_multiplicative_and_seeded_by_torch():
    image = torch.full((1, 32, 32), 0.5)
    aug = JointAugment(["bias_field"], ALWAYS)
    torch.manual_seed(3)
    a, _ = aug(image)
    torch.manual_seed(3)
    b, _ = aug(image)
    c, _ = aug(image)
    assert torch.equal(a, b) and not torch.equal(a, c)  # MONAI's own generator follows torch's
    field = a[0].double() / 0.5
    assert (field > 0).all() and field.std() > 0.01
    # the oracle: the log of the field is a polynomial of degree <= 3 in x and in y (MONAI: a Legendre grid)
    y, x = torch.meshgrid(torch.linspace(-1, 1, 32, dtype=torch.float64), torch.linspace(-1, 1, 32,
                                                                                         dtype=torch.float64),
                          indexing="ij")
    basis = torch.stack([x.ravel() ** i * y.ravel() ** j for i in range(4) for j in range(4)], 1)
    coef = torch.linalg.lstsq(basis, field.log().ravel()[:, None]).solution
    assert (basis @ coef - field.log().ravel()[:, None]).abs().max() < 1e-4


def test_resolve_expands_families_in_order_and_refuses_unknown_names():
    assert resolve(["all"]) == AUGMENTATIONS
    assert resolve(["noise", "geometric"]) == (*GEOMETRIC, "noise")
    assert resolve(["none"]) == () and set(FAMILIES["mixing"]) == {"mixup", "cutmix"}
    with pytest.raises(InputError, match="unknown augmentation 'warp'"):
        resolve(["warp"])


def constant_batch(b: int = 4, size: int = 16) -> torch.Tensor:
    """Image i is filled with the value i + 1, so each mixed pixel tells where it came from."""
    return torch.arange(1, b + 1, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 1, size, size).clone()


@pytest.mark.parametrize("seed", range(4))
def test_cutmix_label_weights_are_the_pasted_areas(seed):
    torch.manual_seed(seed)
    images, labels = constant_batch(), torch.arange(4)  # image i has class i
    mixed, soft = BatchMixer(("cutmix",), 4, alpha=1.0)(images, labels)
    assert torch.allclose(soft.sum(1), torch.ones(4))
    for i in range(4):
        share = torch.stack([(mixed[i] == j + 1).float().mean() for j in range(4)])  # pixels from image j
        assert torch.allclose(soft[i], share, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_mixup_label_weights_are_the_blend(seed):
    torch.manual_seed(seed)
    images, labels = constant_batch(), torch.arange(4)
    mixed, soft = BatchMixer(("mixup",), 4, alpha=0.4)(images, labels)
    assert torch.allclose(soft.sum(1), torch.ones(4))
    values = torch.arange(1, 5, dtype=torch.float32)
    for i in range(4):  # a mixed image is sum_j w_j * (j + 1), its label weights w
        assert torch.allclose(mixed[i], (soft[i] * values).sum().expand_as(mixed[i]), atol=1e-5)


@pytest.mark.parametrize("kind", ["mixup", "cutmix"])
def test_dense_mixing_mixes_the_masks_with_the_images(kind):
    torch.manual_seed(5)
    images = constant_batch()
    masks = torch.stack([torch.full((16, 16), j % 3) for j in range(4)])  # image j is all class j % 3
    mixed, soft = BatchMixer((kind,), 3, alpha=1.0, dense=True)(images, masks)
    assert soft.shape == (4, 3, 16, 16) and torch.allclose(soft.sum(1), torch.ones(4, 16, 16))
    for i in range(4):
        for j in range(4):  # the pixels' weight of image j in the image and in the target agree
            if kind == "cutmix":
                from_j = mixed[i, 0] == j + 1
                assert torch.equal(soft[i].argmax(0)[from_j], torch.full_like(soft[i, 0], j % 3).long()[from_j])
        if kind == "mixup":
            weights = [(soft[i, c]).mean() for c in range(3)]
            assert abs(sum(weights) - 1) < 1e-5


def test_augmented_dataset_and_mixing_collate_through_a_loader():
    items = [{"image": torch.rand(1, 32, 32), "mask": l_shape(32), "meta": {"k": i}} for i in range(4)]
    ds = AugmentedDataset(items, JointAugment(["all"], ALWAYS))
    collate = MixingCollate(BatchMixer(("mixup", "cutmix"), 2, dense=True), "mask", keys=("image", "mask"))
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4, collate_fn=collate)))
    assert batch["image"].shape == (4, 1, 32, 32) and batch["mask"].shape == (4, 2, 32, 32)
    assert set(batch) == {"image", "mask"}
