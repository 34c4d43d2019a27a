"""common.weak.boxes: thresholds, components and boxes on hand-made maps."""

import numpy as np

from common.metrics import box_iou, mask_to_box
from common.weak.boxes import binarize, component_boxes, localize


def test_fraction_of_max_and_otsu():
    s = np.zeros((10, 10), np.float32)
    s[2:4, 2:5] = 1.0
    s[7, 7] = 0.3
    assert binarize(s, 0.2).sum() == 7 and binarize(s, 0.5).sum() == 6
    bimodal = np.full((10, 10), 0.1, np.float32)
    bimodal[:2, :5] = 0.9
    assert np.array_equal(binarize(bimodal, "otsu"), bimodal > 0.5)
    assert not binarize(np.zeros((4, 4)), "otsu").any() and not binarize(np.zeros((4, 4)), 0.2).any()


def test_largest_component_box():
    b = np.zeros((12, 12), bool)
    b[1:3, 1:3] = True  # area 4
    b[5:9, 6:11] = True  # area 20
    b[10, 0] = b[11, 1] = True  # diagonal pair: one component with 8-connectivity
    boxes = component_boxes(b)
    assert boxes[0] == ((6, 5, 11, 9), 20) and boxes[1][1] == 4 and boxes[2] == ((0, 10, 2, 12), 2)
    region, box = localize(b.astype(float), 0.5)
    assert box == (6, 5, 11, 9) and region.sum() == 26
    assert box_iou(box, mask_to_box(b[5:9, 6:11].any() and np.pad(np.ones((4, 5), bool), ((5, 3), (6, 1))))) == 1.0
    assert localize(np.zeros((5, 5)))[1] is None
