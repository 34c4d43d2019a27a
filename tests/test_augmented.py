"""The MURA-style training augmentation (common.data.transforms.Augmented): flips, rotations and random crops."""

import pytest
import torch

from common.data.transforms import Augmented


class Ramp:
    """Items whose image is a ramp 0..H*W-1 and whose mask marks one known pixel, so a crop's offset is readable."""

    def __init__(self, n=8, h=20, w=24):
        self.n, self.h, self.w = n, h, w

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        image = torch.arange(self.h * self.w, dtype=torch.float32).view(1, self.h, self.w)
        mask = torch.zeros(self.h, self.w, dtype=torch.uint8)
        mask[5, 7] = 1
        return {"image": image, "mask": mask, "label": 1}


def test_crop_is_a_window_of_the_image_at_its_own_scale_with_the_mask_alike():
    torch.manual_seed(0)
    aug = Augmented(Ramp(), degrees=0.0, crop=12)
    offsets = set()
    for i in range(40):
        item = aug[i % 8]
        img, mask = item["image"], item["mask"]  # (1, 12, 12), (12, 12)
        assert img.shape == (1, 12, 12) and mask.shape == (12, 12)
        first = int(img[0, 0, 0])
        flipped = img[0, 0, 1] < img[0, 0, 0]
        row = torch.arange(12, dtype=torch.float32)
        # a window of the ramp: rows step by the width, columns by 1 (or -1 after the lateral flip)
        assert torch.equal(img[0, :, 0] - first, row * 24)
        assert torch.equal(img[0, 0] - first, -row if flipped else row)
        y0, x = divmod(first, 24)
        x0 = x - 11 if flipped else x
        offsets.add((y0, x0))
        if 0 <= 5 - y0 < 12:  # the marked pixel moves with the image
            col = 7 - x0
            if 0 <= col < 12:
                assert mask[5 - y0, 11 - col if flipped else col] == 1 and mask.sum() == 1
    assert len(offsets) > 10 and all(0 <= y <= 8 and 0 <= x <= 12 for y, x in offsets)


def test_no_crop_keeps_the_image_and_a_crop_too_large_is_refused():
    item = Augmented(Ramp(), degrees=0.0)[0]
    assert item["image"].shape == (1, 20, 24)
    with pytest.raises(ValueError, match="crop 21 is larger than the 20x24 image"):
        Augmented(Ramp(), degrees=0.0, crop=21)[0]
