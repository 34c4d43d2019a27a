"""Augmentation families for small-sample training: geometric, intensity and sample mixing, by name.

Built from torchvision ``transforms.v2``, which applies one random geometry to an image and its mask alike (the mask
as a ``tv_tensors.Mask``, resampled nearest-neighbour) and leaves masks out of intensity changes. torchvision lacks
the two MR intensity models, so those come from MONAI: ``RandBiasField`` (a smooth multiplicative field, the exp of a
low-order Legendre polynomial, as in Van Leemput et al. 1999 and NiftyNet / TorchIO) and ``RandAdjustContrast``
(gamma on the image's own min..max range, so it suits z-scored MRI as well as [0, 1] radiographs). MONAI is imported
only when one of those two is built.

    names = resolve(["geometric", "noise"])        # families expand: flip, rotate, scale, elastic, noise
    aug = JointAugment(names, AugmentConfig())     # per item: image (C, H, W), mask (H, W) -> same shapes
    mixer = BatchMixer(("mixup", "cutmix"), 2)     # per batch: images (B, C, H, W), labels -> soft targets

- geometric: flip (Simard et al. 2003), rotation, scale, elastic deformation (Simard et al. 2003; Ronneberger et al.
  2015 for U-Net): ``v2.RandomHorizontalFlip``, ``v2.RandomRotation``, ``v2.RandomAffine``, ``v2.ElasticTransform``;
- intensity: gamma and bias field (MONAI), contrast / brightness (``v2.ColorJitter``), Gaussian noise
  (``v2.GaussianNoise``), blur (``v2.GaussianBlur``);
- mixing: mixup (Zhang et al. 2018, https://arxiv.org/abs/1710.09412) and CutMix (Yun et al. 2019,
  https://arxiv.org/abs/1905.04899): ``v2.MixUp`` / ``v2.CutMix``. For segmentation the one-hot mask travels as
  extra image channels, so torchvision mixes or pastes it exactly as the image (soft pixel targets for mixup).

Randomness is torch's (MONAI's transforms are reseeded from it on every call), so ``common.engine``'s per-epoch
seeding, DataLoader workers and ``--resume`` treat every augmentation alike.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from common.errors import InputError


@dataclass(frozen=True)
class AugmentConfig:
    """The strength of each augmentation (defaults for 32-128 px phantoms; each is applied with probability ``p``
    unless it is a flip, which is a coin toss itself)."""

    p: float = 0.5                               # probability of each per-item augmentation but flip
    degrees: float | tuple[float, float] = 20.0  # rotation: uniform in +- degrees (or in (low, high))
    scale: tuple[float, float] = (0.85, 1.15)    # isotropic zoom
    elastic_alpha: float = 20.0                  # torchvision ElasticTransform: displacement magnitude
    elastic_sigma: float = 4.0                   # and smoothness, pixels
    gamma: tuple[float, float] = (0.6, 1.6)      # MONAI RandAdjustContrast
    contrast: float = 0.3                        # ColorJitter: brightness and contrast factors in 1 +- this
    noise_sigma: float = 0.04                    # additive Gaussian noise on [0, 1] images
    blur_sigma: tuple[float, float] = (0.3, 1.2)
    bias_coeff: float = 0.4                      # MONAI RandBiasField: Legendre coefficients in +- this
    bias_degree: int = 3
    mix_alpha: float = 0.4                       # mixup / CutMix: lambda ~ Beta(alpha, alpha)

    def __post_init__(self):
        low = self.degrees[0] if isinstance(self.degrees, tuple) else -self.degrees
        if not 0 <= self.p <= 1 or low > (self.degrees[1] if isinstance(self.degrees, tuple) else self.degrees) \
                or not 0 < self.scale[0] <= self.scale[1]:
            raise ValueError(f"bad augmentation settings: p={self.p}, degrees={self.degrees}, scale={self.scale}")
        if self.mix_alpha <= 0 or self.noise_sigma < 0 or not 0 < self.gamma[0] <= self.gamma[1]:
            raise ValueError(f"bad augmentation settings: mix_alpha={self.mix_alpha}, "
                             f"noise_sigma={self.noise_sigma}, gamma={self.gamma}")


class MonaiIntensity(v2.Transform):
    """A MONAI random intensity transform as a ``transforms.v2`` one: applied to images only (masks pass through),
    reseeded from torch's generator on every call so it is as reproducible as torchvision's own."""

    def __init__(self, transform):
        super().__init__()
        self.inner = transform

    def make_params(self, flat_inputs: list) -> dict:
        return {"seed": int(torch.randint(2**31 - 1, ()))}

    def transform(self, inpt, params: dict):
        if isinstance(inpt, tv_tensors.TVTensor) and not isinstance(inpt, tv_tensors.Image):
            return inpt  # masks, boxes: intensity changes do not move them
        self.inner.set_random_state(params["seed"])
        out = self.inner(inpt.as_subclass(torch.Tensor), randomize=True)  # (C, H, W); MONAI returns a MetaTensor
        out = out.as_subclass(torch.Tensor).to(inpt.dtype)
        return tv_tensors.wrap(out, like=inpt) if isinstance(inpt, tv_tensors.Image) else out


def _monai():
    try:
        import monai.transforms as mt
    except ImportError:  # pragma: no cover - monai is in requirements.txt
        raise InputError("the gamma and bias-field augmentations need MONAI", hint="pip install monai") from None
    return mt


def _sometimes(t: v2.Transform, cfg: AugmentConfig) -> v2.Transform:
    return v2.RandomApply([t], p=cfg.p)


# name -> constructor of the per-item transform; the order here is the order of application (geometry first)
GEOMETRIC: dict[str, Callable[[AugmentConfig], v2.Transform]] = {
    "flip": lambda c: v2.RandomHorizontalFlip(p=0.5),
    "rotate": lambda c: _sometimes(v2.RandomRotation(c.degrees, interpolation=v2.InterpolationMode.BILINEAR), c),
    "scale": lambda c: _sometimes(v2.RandomAffine(0, scale=c.scale, interpolation=v2.InterpolationMode.BILINEAR), c),
    "elastic": lambda c: _sometimes(v2.ElasticTransform(c.elastic_alpha, c.elastic_sigma), c),
}
INTENSITY: dict[str, Callable[[AugmentConfig], v2.Transform]] = {
    "bias_field": lambda c: _sometimes(MonaiIntensity(_monai().RandBiasField(
        degree=c.bias_degree, coeff_range=(-c.bias_coeff, c.bias_coeff), prob=1.0)), c),
    "gamma": lambda c: _sometimes(MonaiIntensity(_monai().RandAdjustContrast(prob=1.0, gamma=c.gamma)), c),
    "contrast": lambda c: _sometimes(v2.ColorJitter(brightness=c.contrast, contrast=c.contrast), c),
    "blur": lambda c: _sometimes(v2.GaussianBlur(5, sigma=c.blur_sigma), c),
    "noise": lambda c: _sometimes(v2.GaussianNoise(sigma=c.noise_sigma, clip=False), c),
}
PER_ITEM = {**GEOMETRIC, **INTENSITY}
MIXING = ("mixup", "cutmix")
AUGMENTATIONS = (*PER_ITEM, *MIXING)
FAMILIES: dict[str, tuple[str, ...]] = {
    "none": (), "geometric": tuple(GEOMETRIC), "intensity": tuple(INTENSITY), "mixing": MIXING,
    "all": AUGMENTATIONS,
}


def resolve(names: Sequence[str]) -> tuple[str, ...]:
    """Families and single augmentations -> the augmentations, each once, in the order they are applied."""
    unknown = [n for n in names if n not in FAMILIES and n not in AUGMENTATIONS]
    if unknown:
        raise InputError(f"unknown augmentation {unknown[0]!r}",
                         hint=f"families: {', '.join(FAMILIES)}; augmentations: {', '.join(AUGMENTATIONS)}")
    wanted = {a for n in names for a in (FAMILIES[n] if n in FAMILIES else (n,))}
    return tuple(a for a in AUGMENTATIONS if a in wanted)


class JointAugment:
    """The per-item augmentations among ``names`` as one ``v2.Compose``: ``(image (C, H, W) float, mask (H, W) int
    or None) -> (image, mask)``, one random geometry for both. Mixing names are skipped (see :class:`BatchMixer`)."""

    def __init__(self, names: Sequence[str], cfg: AugmentConfig = AugmentConfig()):
        self.names = tuple(n for n in resolve(names) if n in PER_ITEM)
        self.transform = v2.Compose([PER_ITEM[n](cfg) for n in self.names]) if self.names else None

    def __call__(self, image: torch.Tensor, mask: torch.Tensor | None = None):
        assert image.ndim == 3 and image.is_floating_point(), tuple(image.shape)  # (C, H, W)
        if self.transform is None:
            return image, mask
        if mask is None:
            return self.transform(tv_tensors.Image(image)).as_subclass(torch.Tensor), None
        assert mask.shape == image.shape[-2:], (tuple(mask.shape), tuple(image.shape))  # (H, W)
        out, out_mask = self.transform(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return out.as_subclass(torch.Tensor), out_mask.as_subclass(torch.Tensor)


class AugmentedDataset(Dataset):
    """Items of ``dataset`` (dicts with "image" (C, H, W) and optionally "mask" (H, W)) through a :class:`JointAugment`
    on every access (in the DataLoader's workers when it has them)."""

    def __init__(self, dataset: Dataset, augment: JointAugment):
        self.dataset, self.augment = dataset, augment

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.dataset[i])
        item["image"], mask = self.augment(item["image"], item.get("mask"))
        if mask is not None:
            item["mask"] = mask
        return item


class BatchMixer:
    """Mixup / CutMix of a batch (one of ``kinds`` drawn per batch, as torchvision's ``RandomChoice``).

    Classification: ``(images (B, C, H, W), labels (B,) int) -> (images, soft labels (B, K))``. Segmentation
    (``dense=True``): ``(images, masks (B, H, W) int) -> (images, soft masks (B, K, H, W))``; the one-hot masks ride
    along as image channels, so mixup blends them with the image's lambda and CutMix pastes the image's box.
    Each target sums to one over K, and its weights are the images' shares (mixup: lambda; CutMix: the box's area).
    """

    def __init__(self, kinds: Sequence[str], num_classes: int, alpha: float = 0.4, dense: bool = False):
        kinds = tuple(k for k in kinds if k in MIXING)
        if not kinds or num_classes < 1:
            raise ValueError(f"BatchMixer needs mixup and/or cutmix and num_classes >= 1, got {kinds}, {num_classes}")
        self.kinds, self.num_classes, self.dense = kinds, num_classes, dense
        # dense: the labels torchvision mixes are a dummy single class; the masks are mixed as channels
        k = 1 if dense else num_classes
        make = {"mixup": lambda: v2.MixUp(alpha=alpha, num_classes=k), "cutmix": lambda: v2.CutMix(alpha=alpha,
                                                                                                    num_classes=k)}
        self.transform = v2.RandomChoice([make[name]() for name in kinds])

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        assert images.ndim == 4, tuple(images.shape)  # (B, C, H, W)
        if not self.dense:
            assert targets.shape == images.shape[:1], (tuple(targets.shape), tuple(images.shape))
            return self.transform(images, targets)
        assert targets.shape == (images.shape[0], *images.shape[-2:]), (tuple(targets.shape), tuple(images.shape))
        onehot = torch.nn.functional.one_hot(targets.long(), self.num_classes).permute(0, 3, 1, 2).to(images.dtype)
        channels = images.shape[1]
        dummy = torch.zeros(len(images), dtype=torch.int64)
        mixed, _ = self.transform(torch.cat([images, onehot], 1), dummy)  # (B, C + K, H, W)
        return mixed[:, :channels], mixed[:, channels:]


class MixingCollate:
    """A DataLoader ``collate_fn``: default collation, then :class:`BatchMixer` on ``image`` and ``target_key``
    (torchvision's recommended place for MixUp / CutMix, so mixing runs in the loader's workers)."""

    def __init__(self, mixer: BatchMixer, target_key: str = "label", keys: Sequence[str] = ("image", "label")):
        self.mixer, self.target_key, self.keys = mixer, target_key, tuple(dict.fromkeys((*keys, target_key)))

    def __call__(self, items: list[dict]) -> dict:
        from torch.utils.data import default_collate

        batch = default_collate([{k: it[k] for k in self.keys} for it in items])
        batch["image"], batch[self.target_key] = self.mixer(batch["image"], batch[self.target_key])
        return batch
