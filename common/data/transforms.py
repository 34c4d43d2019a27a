"""Joint image / mask augmentation of dataset items (torchvision ``transforms.v2`` functionals)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset


class Augmented(Dataset):
    """MURA augmentation: random lateral flip and rotation up to ``degrees`` (image and mask alike); ``crop``: then a
    random crop x crop window at the image's own scale (no resizing), as in Krizhevsky et al. 2012."""

    def __init__(self, dataset: Dataset, degrees: float = 30.0, crop: int | None = None):
        self.dataset, self.degrees, self.crop = dataset, degrees, crop

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, i):
        from torchvision.transforms.v2 import InterpolationMode
        from torchvision.transforms.v2 import functional as TF

        item = dict(self.dataset[i])
        image, mask = item["image"], item["mask"][None]  # (1, H, W) each
        if torch.rand(()) < 0.5:
            image, mask = image.flip(-1), mask.flip(-1)
        angle = float(torch.empty(()).uniform_(-self.degrees, self.degrees))
        image = TF.rotate(image, angle, interpolation=InterpolationMode.BILINEAR)
        mask = TF.rotate(mask, angle, interpolation=InterpolationMode.NEAREST)
        if self.crop:
            h, w = image.shape[-2:]
            if self.crop > min(h, w):
                raise ValueError(f"crop {self.crop} is larger than the {h}x{w} image")
            y0, x0 = (int(torch.randint(0, n - self.crop + 1, ())) for n in (h, w))
            image = image[..., y0:y0 + self.crop, x0:x0 + self.crop]
            mask = mask[..., y0:y0 + self.crop, x0:x0 + self.crop]
        item["image"], item["mask"] = image, mask[0]
        return item

