"""common.cam.evidence: CAM peak vs the input evidence behind it, on a network built to displace its evidence."""

import numpy as np
import pytest
import torch
from torch import nn

from common.cam.evidence import cam_evidence_offsets, summarize_offsets
from common.cam.scoring import score_dataset


class ShiftNet(nn.Module):
    """One conv whose kernel copies the input from ``k`` rows below: a spot at row y fires at row y - k."""

    def __init__(self, k: int):
        super().__init__()
        self.conv = nn.Conv2d(3, 1, kernel_size=2 * k + 1, padding=k, bias=False)
        with torch.no_grad():
            self.conv.weight.zero_()
            self.conv.weight[0, 0, 2 * k, k] = 1.0
        self.relu = nn.ReLU()
        self.classifier = nn.Linear(1, 1)
        with torch.no_grad():
            self.classifier.weight.fill_(1.0)
            self.classifier.bias.zero_()

    def forward(self, x):
        return self.classifier(self.relu(self.conv(x)).mean((2, 3)))


def _spots(n=4, size=32):
    rng = np.random.default_rng(0)
    items = []
    for _ in range(n):
        y, x = rng.integers(12, 20, size=2)
        img = torch.zeros(1, size, size)
        img[0, y - 1:y + 2, x - 1:x + 2] = 0.8
        img[0, y, x] = 1.0  # a unique maximum
        items.append({"image": img, "mask": (img[0] > 0).to(torch.uint8), "label": torch.tensor(1)})
    return items


@pytest.mark.parametrize("k", [0, 6])
def test_displaced_peak_with_evidence_on_the_lesion(k):
    model, data = ShiftNet(k), _spots()
    off = cam_evidence_offsets(model, data, torch.device("cpu"), layer=model.relu)
    # the 3x3 spot's CAM sits k rows above it: k - 1 px from the mask's edge; the gradient is on the spot
    np.testing.assert_allclose(off["peak"], max(k - 1, 0))
    np.testing.assert_allclose(off["evidence"], 0.0)
    s = summarize_offsets(off, tolerance=2)
    assert s["evidence_pointing_game"] == 1.0
    assert s["peak_pointing_game"] == (1.0 if k == 0 else 0.0)
    assert s["displaced"] == (0.0 if k == 0 else 1.0)


def test_peak_pointing_game_agrees_with_score_dataset():
    from common.data.phantoms import BoneXrayPhantom
    from common.models import build_densenet

    torch.manual_seed(0)
    model = build_densenet("tiny", num_outputs=1, cam_stride=8).eval()
    data = BoneXrayPhantom(n=6, size=64, seed=3, abnormal_fraction=1.0)
    off = summarize_offsets(cam_evidence_offsets(model, data, torch.device("cpu"), batch_size=4), tolerance=4)
    res = score_dataset(model, data, ("cam",), {4: model.cam_layers()[4]}, torch.device("cpu"), tolerance=4,
                        keep=0)
    rows = res["rows"]
    assert off["n"] == 6 and off["peak_pointing_game"] == rows[0]["pointing_game"]
    hits = res["hits"][("cam", 4, "lesion")]  # one hit per image, in dataset order
    assert hits.shape == (6,) and set(hits) <= {0.0, 1.0} and hits.mean() == rows[0]["pointing_game"]


def test_marker_region_uses_the_marker_box():
    """The same displaced spots, annotated as the L/R marker's box (no lesion): offsets measured to the box."""
    items = []
    for item in _spots():
        ys, xs = np.nonzero(item["mask"].numpy())
        box = {"marker_x0": int(xs.min()), "marker_y0": int(ys.min()), "marker_x1": int(xs.max()) + 1,
               "marker_y1": int(ys.max()) + 1}
        items.append({**item, "mask": torch.zeros_like(item["mask"]), "meta": box})
    model = ShiftNet(6)
    off = cam_evidence_offsets(model, items, torch.device("cpu"), layer=model.relu, region="marker")
    np.testing.assert_allclose(off["peak"], 5.0)
    np.testing.assert_allclose(off["evidence"], 0.0)
    assert len(cam_evidence_offsets(model, items, torch.device("cpu"), layer=model.relu)["peak"]) == 0  # no lesion


def test_an_all_negative_cam_points_nowhere_as_in_the_pointing_game():
    """A CAM below zero everywhere is flat after the ReLU the CAM methods apply: no peak, a miss for both scorers
    (argmax of the raw map would otherwise pick a position and could credit it with a hit)."""
    model, data = ShiftNet(0), _spots()
    with torch.no_grad():
        model.classifier.weight.fill_(-1.0)  # every position scores <= 0
    off = cam_evidence_offsets(model, data, torch.device("cpu"), layer=model.relu)
    assert np.isinf(off["peak"]).all() and np.isinf(off["evidence"]).all()
    s = summarize_offsets(off, tolerance=2)
    assert s["peak_pointing_game"] == 0.0 and s["evidence_pointing_game"] == 0.0 and np.isnan(s["median_peak_px"])
    res = score_dataset(model, data, ("cam",), {4: model.relu}, torch.device("cpu"), tolerance=2, keep=0)
    assert res["rows"][0]["pointing_game"] == 0.0
    # one flat image among peaked ones: the medians are over the peaked ones
    mixed = summarize_offsets({"peak": np.array([1.0, np.inf, 3.0]), "evidence": np.array([0.0, np.inf, 0.0])}, 2)
    assert mixed["median_peak_px"] == 2.0 and mixed["peak_pointing_game"] == pytest.approx(1 / 3)
