"""Hand-crafted features and classic segmenters against scikit-image / numpy / scipy on known images."""

import numpy as np
import pytest
from scipy import stats
from skimage import data
from skimage.feature import graycomatrix, graycoprops, hog, local_binary_pattern
from skimage.transform import resize

from common.classic.registry import SEGMENTERS, segment
from common.classic.select import select_component
from common.features.bank import FEATURES, feature_matrix
from common.features.firstorder import NAMES, first_order
from common.features.glcm import GLCMParams, glcm_properties
from common.features.histogram import intensity_histogram
from common.features.hog import HOGParams, hog_features
from common.features.lbp import LBPParams, lbp_histogram, to_uint8


@pytest.fixture(scope="module")
def camera():
    return resize(data.camera(), (64, 64), anti_aliasing=True).astype(np.float64)  # [0, 1]


def test_hog_matches_skimage(camera):
    ours = hog_features(camera, HOGParams(orientations=9, cells=8, cells_per_block=2))
    ref = hog(camera, orientations=9, pixels_per_cell=(8, 8), cells_per_block=(2, 2), block_norm="L2-Hys")
    assert ours.shape == (7 * 7 * 2 * 2 * 9,)  # (cells - block + 1)^2 blocks x block cells x orientations
    np.testing.assert_allclose(ours, ref)


def test_lbp_histogram_matches_skimage_codes(camera):
    ours = lbp_histogram(camera, LBPParams(scales=((8, 1.0),)))
    codes = local_binary_pattern(to_uint8(camera), 8, 1.0, method="uniform")
    ref = np.array([(codes == k).mean() for k in range(10)])  # P + 2 uniform codes
    np.testing.assert_allclose(ours, ref)
    assert ours.sum() == pytest.approx(1.0)


def test_glcm_hand_computed_case():
    """scikit-image's documented 4 x 4 example (graycomatrix docstring), levels 0..3, distance 1, angle 0."""
    img = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [0, 2, 2, 2], [2, 2, 3, 3]], np.uint8)
    counts = graycomatrix(img, [1], [0], levels=4)[:, :, 0, 0]
    np.testing.assert_array_equal(counts, [[2, 2, 1, 0], [0, 2, 0, 0], [0, 0, 3, 1], [0, 0, 0, 1]])
    # our quantisation maps (level + 0.5) / 4 back to the same levels; symmetric, normed, contrast by hand
    ours = glcm_properties((img + 0.5) / 4, GLCMParams(levels=4, distances=(1,), properties=("contrast",)))
    p = [graycomatrix(img, [1], [a], levels=4, symmetric=True, normed=True)[:, :, 0, 0]
         for a in (0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)]
    i, j = np.indices((4, 4))
    assert ours[0] == pytest.approx(np.mean([(m * (i - j) ** 2).sum() for m in p]))


def test_glcm_matches_skimage(camera):
    ours = glcm_properties(camera, GLCMParams(levels=32, distances=(1, 2)))
    q = np.clip(np.floor(camera * 32), 0, 31).astype(np.uint8)
    g = graycomatrix(q, [1, 2], [0, np.pi / 4, np.pi / 2, 3 * np.pi / 4], levels=32, symmetric=True, normed=True)
    ref = np.concatenate([graycoprops(g, p).mean(1) for p in GLCMParams().properties])
    np.testing.assert_allclose(ours, ref)


def test_histogram_and_first_order_against_numpy_scipy(camera):
    np.testing.assert_allclose(intensity_histogram(camera, 8), np.histogram(camera, 8, (0, 1))[0] / camera.size)
    f = dict(zip(NAMES, first_order(camera), strict=True))
    x = camera.ravel()
    assert f["mean"] == pytest.approx(x.mean()) and f["std"] == pytest.approx(x.std())
    assert f["skewness"] == pytest.approx(stats.skew(x))
    assert f["kurtosis"] == pytest.approx(stats.kurtosis(x, fisher=False))
    assert f["iqr"] == pytest.approx(stats.iqr(x))
    p = np.histogram(x, 32, (0, 1))[0] / x.size
    assert f["entropy"] == pytest.approx(stats.entropy(p, base=2))
    # two-valued image: by hand
    two = np.array([[0.0, 1.0], [1.0, 1.0]])
    g = dict(zip(NAMES, first_order(two), strict=True))
    assert g["mean"] == 0.75 and g["range"] == 1.0 and g["energy"] == 0.75 and g["uniformity"] == 0.25 ** 2 + 0.75 ** 2


def test_feature_matrix_columns(camera):
    images = np.stack([camera, camera[::-1]])
    X, columns = feature_matrix(images, tuple(FEATURES), progress=False)
    assert X.shape[0] == 2 and columns["firstorder"].stop == X.shape[1]
    np.testing.assert_allclose(X[1, columns["hog"]], hog_features(camera[::-1]))
    with pytest.raises(ValueError, match="unknown"):
        feature_matrix(images, ("sift",))


@pytest.mark.parametrize("method", list(SEGMENTERS))
def test_segmenters_find_a_bright_disc(method):
    """A bright disc off-centre and a brighter small square near the edge: every method separates the disc; the
    "central" prior keeps the disc (Dice near 1), hand-checked against the drawn truth."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:64, :64]
    truth = (yy - 30) ** 2 + (xx - 34) ** 2 <= 8 ** 2
    image = 0.2 + 0.6 * truth + 0.03 * rng.standard_normal((64, 64))
    image[2:6, 2:6] = 0.9
    mask = segment(image, method, "central")
    inter = (mask & truth).sum()
    assert 2 * inter / (mask.sum() + truth.sum()) > 0.9


def test_select_component_priors():
    mask = np.zeros((40, 40), bool)
    mask[18:24, 18:24] = True  # central
    mask[2:8, 30:36] = True    # off-centre
    image = np.where(mask, 0.5, 0.0)
    image[2:8, 30:36] = 0.9
    assert select_component(mask, image, "central")[20, 20]
    assert select_component(mask, image, "brightest")[4, 32]
    assert not select_component(np.zeros((40, 40), bool), image, "central").any()
