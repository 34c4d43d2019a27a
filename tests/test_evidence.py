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


@pytest.mark.parametrize("n_out", [1, 2])
def test_the_explained_class_is_scored_as_the_cam_methods_score_it(n_out):
    """Oracle: the class sign of common.cam.context.score_coefficients. A 1-output head whose weight is negated and
    asked for class 0 (the negated logit) has the same CAM as the original asked for class 1; a 2-output head whose
    row 1 is the original and row 0 its negation gives that CAM for class 1 and an all-negative, flat one for 0."""
    model, data = ShiftNet(6), _spots()
    want = cam_evidence_offsets(model, data, torch.device("cpu"), layer=model.relu, target=1)
    np.testing.assert_allclose(want["peak"], 5.0)  # displaced by 6 rows: 5 px from the spot's edge
    other = ShiftNet(6)
    if n_out == 1:
        with torch.no_grad():
            other.classifier.weight.fill_(-1.0)
        got = cam_evidence_offsets(other, data, torch.device("cpu"), layer=other.relu, target=0)
        for key in ("peak", "evidence"):
            np.testing.assert_allclose(got[key], want[key])
        return
    other.classifier = nn.Linear(1, 2)
    with torch.no_grad():
        other.classifier.weight.copy_(torch.tensor([[-1.0], [1.0]]))
        other.classifier.bias.zero_()
    got = cam_evidence_offsets(other, data, torch.device("cpu"), layer=other.relu, target=1)
    np.testing.assert_allclose(got["peak"], want["peak"])
    np.testing.assert_allclose(got["evidence"], want["evidence"])
    assert np.isinf(cam_evidence_offsets(other, data, torch.device("cpu"), layer=other.relu, target=0)["peak"]).all()


def test_all_regions_from_one_pass_equal_one_region_at_a_time():
    from common.cam.evidence import cam_evidence_by_region

    items = []
    for item in _spots():
        ys, xs = np.nonzero(item["mask"].numpy())
        box = {"marker_x0": int(xs.min()) + 8, "marker_y0": int(ys.min()), "marker_x1": int(xs.max()) + 9,
               "marker_y1": int(ys.max()) + 1}  # a marker 8 px to the right of the spot
        items.append({**item, "meta": box})
    model = ShiftNet(6)
    both = cam_evidence_by_region(model, items, torch.device("cpu"), layer=model.relu, regions=("lesion", "marker"))
    for region in ("lesion", "marker"):
        one = cam_evidence_offsets(model, items, torch.device("cpu"), layer=model.relu, region=region)
        for key in ("peak", "evidence"):
            np.testing.assert_allclose(both[region][key], one[key])
    assert (both["marker"]["evidence"] > both["lesion"]["evidence"]).all()  # the gradient sits on the spot
