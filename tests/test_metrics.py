"""common.metrics against scikit-learn and hand-computed cases."""

import numpy as np
import pytest
import torch
from sklearn.metrics import accuracy_score, cohen_kappa_score, f1_score, jaccard_score, recall_score, roc_auc_score

from common.metrics import (
    accuracy,
    auroc,
    box_iou,
    cohen_kappa,
    dice,
    energy_pointing_game,
    iou,
    mask_to_box,
    pointing_game,
    sensitivity_specificity,
)

rng = np.random.default_rng(0)
Y = rng.integers(0, 2, 200)
P = np.where(rng.random(200) < 0.8, Y, 1 - Y)
S = Y * 0.6 + rng.random(200) * 0.7


def test_classification_matches_sklearn():
    assert accuracy(Y, P) == pytest.approx(accuracy_score(Y, P))
    sens, spec = sensitivity_specificity(Y, P)
    assert sens == pytest.approx(recall_score(Y, P))
    assert spec == pytest.approx(recall_score(1 - Y, 1 - P))
    assert cohen_kappa(Y, P) == pytest.approx(cohen_kappa_score(Y, P))
    assert auroc(Y, S) == pytest.approx(roc_auc_score(Y, S))
    assert auroc(torch.tensor(Y), torch.tensor(S)) == pytest.approx(roc_auc_score(Y, S))


def test_classification_hand_cases():
    assert sensitivity_specificity([1, 1, 0, 0], [1, 0, 0, 0]) == (0.5, 1.0)
    assert cohen_kappa([1, 1, 1], [1, 1, 1]) == 1.0
    assert np.isnan(auroc([1, 1], [0.2, 0.3]))
    with pytest.raises(ValueError, match="shapes differ"):
        accuracy([1, 0], [1])


def test_dice_iou_match_sklearn_and_hand():
    a, b = rng.random((32, 32)) > 0.5, rng.random((32, 32)) > 0.4
    assert dice(a, b) == pytest.approx(f1_score(b.ravel(), a.ravel()))
    assert iou(a, b) == pytest.approx(jaccard_score(b.ravel(), a.ravel()))
    p = np.array([[1, 1, 0, 0]])
    t = np.array([[1, 0, 0, 0]])
    assert dice(p, t) == pytest.approx(2 / 3) and iou(p, t) == pytest.approx(1 / 2)
    assert dice(np.zeros(4), np.zeros(4)) == 1.0
    labels_p, labels_t = np.array([0, 3, 3, 2]), np.array([0, 3, 2, 2])
    assert dice(labels_p, labels_t, label=3) == pytest.approx(2 / 3)
    assert dice(np.stack([p, p]), np.stack([t, 1 - t]), per_image=True) == pytest.approx([2 / 3, 2 / 5])


def test_pointing_game_and_energy():
    mask = np.zeros((20, 20), bool)
    mask[5:8, 5:8] = True
    sal = np.zeros((20, 20))
    sal[6, 6] = 1
    assert pointing_game(sal, mask, tolerance=0)
    sal = np.zeros((20, 20))
    sal[6, 12] = 1  # 4 px right of the mask's edge column 7... distance 5 from column 7
    assert not pointing_game(sal, mask, tolerance=4)
    assert pointing_game(sal, mask, tolerance=5)
    sal = np.zeros((20, 20))
    sal[mask] = 1
    sal[0, 0] = 9
    assert energy_pointing_game(sal, mask) == pytest.approx(9 / 18)
    with pytest.raises(ValueError, match="non-empty mask"):
        pointing_game(sal, np.zeros_like(mask))
    corner = np.zeros((20, 20), bool)
    corner[:3, :3] = True  # e.g. a marker in the top-left corner
    assert not pointing_game(np.zeros((20, 20)), corner, tolerance=0)  # a flat map points nowhere
    sal = np.zeros((20, 20))
    sal[1, 1] = 1e-6
    assert pointing_game(sal, corner, tolerance=0)


def test_boxes():
    m = np.zeros((10, 10), bool)
    m[2:5, 3:7] = True
    assert mask_to_box(m) == (3, 2, 7, 5) and mask_to_box(np.zeros((3, 3))) is None
    assert box_iou((0, 0, 2, 2), (1, 1, 3, 3)) == pytest.approx(1 / 7)
    assert box_iou((0, 0, 2, 2), (0, 0, 2, 2)) == 1.0 and box_iou((0, 0, 1, 1), (2, 2, 3, 3)) == 0.0
    assert box_iou(None, (0, 0, 1, 1)) == 0.0


def test_deletion_insertion_hand_computed():
    from common.metrics.faithfulness import deletion_insertion

    # The "model" scores the mean of the left half of a 1x2x4 image; saliency ranks the left half first.
    image = torch.ones(1, 2, 4)
    sal = torch.tensor([[4.0, 3.0, 0.5, 0.1], [3.5, 2.5, 0.4, 0.2]])
    score = lambda x: x[:, 0, :, :2].mean((1, 2))  # noqa: E731
    r = deletion_insertion(score, image, sal, steps=4)
    # 8 pixels, steps remove 0, 2, 4, 6, 8 pixels: the 4 left pixels go first -> 1, .5, 0, 0, 0
    assert r["deletion_curve"] == pytest.approx([1, 0.5, 0, 0, 0])
    assert r["insertion_curve"] == pytest.approx([0, 0.5, 1, 1, 1])
    assert r["deletion_auc"] == pytest.approx((0.75 + 0.25) / 4)
    assert r["insertion_auc"] == pytest.approx((0.25 + 0.75 + 1 + 1) / 4)
    worst = deletion_insertion(score, image, -sal, steps=4)  # reversed ranking is less faithful
    assert worst["deletion_auc"] > r["deletion_auc"] and worst["insertion_auc"] < r["insertion_auc"]
