"""Domain adaptation building blocks (common/domain) and REFUGE's disc / cup metrics (common/metrics/fundus.py),
each against an independent oracle: hand-made masks, closed forms, scikit-image, MONAI."""

import numpy as np
import pytest
import torch
from skimage import draw, exposure

from common.data.phantoms.fundus import FundusPhantom, vertical_cdr
from common.domain.adabn import adapt_batchnorm
from common.domain.dann import domain_accuracy, domain_adversarial_loss
from common.domain.discriminators import DomainClassifier, PatchDiscriminator
from common.domain.fda import fda_source_to_target, low_frequency_mask
from common.domain.grl import GradientReversal, dann_lambda, grad_reverse
from common.domain.histogram import match_batch, match_histograms
from common.domain.output_space import (
    discriminator_loss,
    entropy,
    fooling_loss,
    output_maps,
    weighted_self_information,
)
from common.errors import InputError
from common.metrics.fundus import check_refuge, dice_per_image, fundus_scores, vcdr, vertical_diameter

# ------------------------------------------------------------------------------------------------ metrics


def _refuge(shape, disc=None, cup=None):
    mask = np.full(shape, 255, np.uint8)
    if disc is not None:
        mask[disc] = 128
    if cup is not None:
        mask[cup] = 0
    return mask


def test_vcdr_of_known_rectangles_and_ellipses():
    # rectangles: vertical diameters are their heights, exactly
    m = _refuge((64, 64), disc=(slice(10, 50), slice(20, 44)), cup=(slice(25, 35), slice(28, 36)))
    assert vertical_diameter(m != 255) == 40 and vertical_diameter(m == 0) == 10
    assert vcdr(m) == pytest.approx(10 / 40)
    # ellipses drawn by scikit-image: semi-axes 30 and 12 rows, so the ratio is 25 / 61 (2 r + 1 pixels tall)
    m = np.full((96, 96), 255, np.uint8)
    m[draw.ellipse(48, 48, 30.5, 24.5)] = 128
    m[draw.ellipse(50, 46, 12.5, 10.5)] = 0
    assert vcdr(m) == pytest.approx(25 / 61)
    assert vcdr(_refuge((8, 8))) == 0.0  # no disc
    stack = np.stack([m, _refuge((96, 96), disc=(slice(0, 40), slice(0, 40)))])
    assert np.allclose(vcdr(stack), [25 / 61, 0.0])


def test_vcdr_agrees_with_the_phantom_labels():
    masks = np.stack([FundusPhantom(n=4, size=64, seed=1)[i]["mask"].numpy() for i in range(4)])
    assert np.allclose(vcdr(masks), vertical_cdr(masks))


def test_dice_of_known_overlaps():
    truth = _refuge((32, 32), disc=(slice(0, 16), slice(0, 16)), cup=(slice(4, 8), slice(8, 12)))
    pred = _refuge((32, 32), disc=(slice(0, 16), slice(8, 24)), cup=(slice(4, 8), slice(8, 12)))
    s = fundus_scores(pred, truth)
    assert s["disc_dice"] == pytest.approx(2 * 128 / 512)  # half of each 16x16 square overlaps
    assert s["cup_dice"] == pytest.approx(1.0)
    assert s["vcdr_mae"] == pytest.approx(0.0)
    empty = fundus_scores(_refuge((32, 32)), _refuge((32, 32)))
    assert empty["disc_dice"] == 1.0 and empty["cup_dice"] == 1.0  # both empty: agreement
    missed = fundus_scores(_refuge((32, 32)), truth)
    assert missed["disc_dice"] == 0.0 and missed["vcdr_mae"] == pytest.approx(4 / 16)


def test_dice_against_monai():
    monai = pytest.importorskip("monai")
    from monai.metrics import DiceMetric

    rng = np.random.default_rng(0)
    pred, truth = rng.random((5, 24, 24)) > 0.6, rng.random((5, 24, 24)) > 0.5
    ours = dice_per_image(pred, truth)
    metric = DiceMetric(include_background=True, reduction="none")
    as_tensor = lambda a: torch.from_numpy(a[:, None].astype(np.float32))  # noqa: E731
    ref = metric(as_tensor(pred), as_tensor(truth))
    assert monai.__version__ and np.allclose(ours, ref.numpy()[:, 0])


def test_masks_outside_refuge_levels_are_refused():
    with pytest.raises(InputError, match="outside REFUGE"):
        check_refuge(np.array([[0, 127], [128, 255]], np.uint8))
    with pytest.raises(InputError, match="predicted mask"):
        fundus_scores(np.ones((2, 4, 4), np.uint8), _refuge((2, 4, 4)))


# ------------------------------------------------------------------------------------------------ gradient reversal


def test_gradient_reversal_keeps_forward_and_flips_encoder_gradient():
    torch.manual_seed(0)
    encoder, head = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)
    x = torch.randn(5, 4)
    grads = {}
    for lam in (None, 0.5):
        encoder.zero_grad()
        head.zero_grad()
        feats = encoder(x)
        shown = feats if lam is None else grad_reverse(feats, lam)
        assert torch.equal(shown, feats)  # the forward is the identity
        head(shown).pow(2).sum().backward()
        grads[lam] = (encoder.weight.grad.clone(), head.weight.grad.clone())
    assert torch.allclose(grads[0.5][0], -0.5 * grads[None][0])  # encoder: -lambda x the gradient
    assert torch.allclose(grads[0.5][1], grads[None][1])  # the head behind it: unchanged
    module = GradientReversal(2.0)
    y = x.clone().requires_grad_()
    module(y).sum().backward()
    assert torch.equal(module(y), y) and torch.allclose(y.grad, torch.full_like(y, -2.0))
    with pytest.raises(ValueError):
        grad_reverse(x, -1.0)


def test_dann_lambda_schedule_closed_form():
    assert dann_lambda(0.0) == 0.0
    assert dann_lambda(0.5) == pytest.approx(2 / (1 + np.exp(-5)) - 1)
    assert dann_lambda(1.0) == pytest.approx(0.9999092, abs=1e-6)
    assert dann_lambda(7.0) == dann_lambda(1.0)


def test_dann_loss_trains_head_to_separate_and_encoder_to_confuse():
    torch.manual_seed(1)
    encoder, head = torch.nn.Conv2d(2, 4, 1), DomainClassifier(4, hidden=8)
    xs, xt = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4) + 1
    loss = domain_adversarial_loss(head, encoder(xs), encoder(xt), lam=1.0)
    loss.backward()
    enc_rev, head_g = encoder.weight.grad.clone(), [p.grad.clone() for p in head.parameters()]
    # the same BCE without reversal, by hand
    encoder.zero_grad()
    head.zero_grad()
    logits = head(torch.cat([encoder(xs), encoder(xt)])).reshape(-1)
    labels = torch.tensor([1.0] * 3 + [0.0] * 3)
    plain = torch.nn.functional.binary_cross_entropy_with_logits(logits, labels)
    plain.backward()
    assert torch.allclose(loss, plain)
    assert torch.allclose(enc_rev, -encoder.weight.grad)
    assert all(torch.allclose(a, p.grad) for a, p in zip(head_g, head.parameters(), strict=True))
    assert 0.0 <= domain_accuracy(head, encoder(xs), encoder(xt)) <= 1.0


# ------------------------------------------------------------------------------------------------ output space


def test_discriminator_and_fooling_losses_update_only_their_own_network():
    torch.manual_seed(2)
    seg, disc = torch.nn.Conv2d(3, 3, 3, padding=1), PatchDiscriminator(3, width=4, depth=2)
    xs, xt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    maps_s, maps_t = output_maps(seg(xs)), output_maps(seg(xt))
    d_loss = discriminator_loss(disc, maps_s, maps_t)
    d_grads = torch.autograd.grad(d_loss, [*seg.parameters(), *disc.parameters()], allow_unused=True)
    assert all(g is None for g in d_grads[:2])  # no gradient reaches the segmenter
    assert all(g is not None and g.abs().sum() > 0 for g in d_grads[2:])
    adv = fooling_loss(disc, maps_t)
    a_grads = torch.autograd.grad(adv, [*seg.parameters(), *disc.parameters()], allow_unused=True)
    assert all(g is not None and g.abs().sum() > 0 for g in a_grads[:2])
    assert all(g is None for g in a_grads[2:])  # the discriminator's weights are fixed in the fooling loss
    # the fooling loss is BCE(D(target), "source") of the very same discriminator
    ref = torch.nn.functional.binary_cross_entropy_with_logits(disc(maps_t), torch.ones_like(disc(maps_t)))
    assert torch.allclose(adv, ref)


def test_one_optimizer_step_moves_each_network_by_its_own_loss():
    torch.manual_seed(3)
    seg, disc = torch.nn.Conv2d(3, 3, 1), PatchDiscriminator(3, width=4, depth=2)
    xs, xt = torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16)
    maps_t = output_maps(seg(xt))
    loss = fooling_loss(disc, maps_t) + discriminator_loss(disc, output_maps(seg(xs)), maps_t)
    loss.backward()
    seg_only = torch.autograd.grad(fooling_loss(disc, output_maps(seg(xt))), list(seg.parameters()))
    assert all(torch.allclose(p.grad, g) for p, g in zip(seg.parameters(), seg_only, strict=True))
    d_only = torch.autograd.grad(discriminator_loss(disc, output_maps(seg(xs)), output_maps(seg(xt))),
                                 list(disc.parameters()))
    assert all(torch.allclose(p.grad, g) for p, g in zip(disc.parameters(), d_only, strict=True))


def test_entropy_maps_closed_form():
    prob = torch.tensor([1 / 3, 1 / 3, 1 / 3]).reshape(1, 3, 1, 1)
    assert torch.allclose(entropy(prob), torch.ones(1, 1, 1, 1))  # uniform: maximal, normalised to 1
    sure = torch.tensor([1.0, 0.0, 0.0]).reshape(1, 3, 1, 1)
    assert torch.allclose(entropy(sure), torch.zeros(1, 1, 1, 1), atol=1e-6)
    p = torch.tensor([0.5, 0.25, 0.25]).reshape(1, 3, 1, 1)
    expected = torch.tensor([0.5 * np.log(2), 0.25 * np.log(4), 0.25 * np.log(4)]) / np.log(3)
    assert torch.allclose(weighted_self_information(p).reshape(-1), expected.float())
    logits = torch.randn(2, 3, 8, 8)
    assert output_maps(logits, "entropy").shape == (2, 3, 8, 8)
    assert torch.allclose(output_maps(logits, "prob").sum(1), torch.ones(2, 8, 8))
    with pytest.raises(ValueError):
        output_maps(logits, "boundary")


def test_discriminator_shapes():
    assert PatchDiscriminator(3, width=4, depth=3)(torch.rand(2, 3, 32, 32)).shape == (2, 1, 4, 4)
    assert DomainClassifier(16)(torch.rand(2, 16, 4, 4)).shape == (2, 1)
    with pytest.raises(ValueError):
        PatchDiscriminator(3)(torch.rand(2, 2, 32, 32))


# ------------------------------------------------------------------------------------------------ input space


def test_histogram_matching_against_scikit_image():
    rng = np.random.default_rng(4)
    src = rng.random((20, 24, 3)).astype(np.float32)
    src[:4] = 0.0  # ties (a black surround) are part of real crops
    ref = (rng.random((18, 18, 3)) ** 2).astype(np.float32)
    ours = match_histograms(src, ref)
    theirs = exposure.match_histograms(src, ref, channel_axis=-1)
    assert np.allclose(ours, theirs, atol=1e-6)
    grey = match_histograms(src[..., 0], ref[..., 1], channel_axis=None)
    assert np.allclose(grey, exposure.match_histograms(src[..., 0], ref[..., 1]), atol=1e-6)
    batch = match_batch(torch.from_numpy(src.transpose(2, 0, 1))[None].repeat(2, 1, 1, 1),
                        torch.from_numpy(ref.transpose(2, 0, 1))[None].repeat(2, 1, 1, 1))
    assert batch.shape == (2, 3, 20, 24) and np.allclose(batch[1].numpy().transpose(1, 2, 0), theirs, atol=1e-6)


def _fda_by_hand(src, trg, b):
    """Shift the spectra, swap the centred (2b - 1)^2 square of amplitudes, shift back."""
    fs, ft = np.fft.fftshift(np.fft.fft2(src), axes=(-2, -1)), np.fft.fftshift(np.fft.fft2(trg), axes=(-2, -1))
    amp, pha = np.abs(fs), np.angle(fs)
    h, w = src.shape[-2:]
    cy, cx = h // 2, w // 2
    amp[..., cy - b + 1:cy + b, cx - b + 1:cx + b] = np.abs(ft)[..., cy - b + 1:cy + b, cx - b + 1:cx + b]
    return np.fft.ifft2(np.fft.ifftshift(amp * np.exp(1j * pha), axes=(-2, -1)))


def test_fda_against_hand_computation():
    rng = np.random.default_rng(5)
    src, trg = rng.random((2, 3, 16, 20)), rng.random((2, 3, 16, 20)) * 0.5 + 0.3
    s, t = torch.from_numpy(src).float(), torch.from_numpy(trg).float()
    assert torch.allclose(fda_source_to_target(s, t, 0.0, clip=False), s, atol=1e-5)  # nothing swapped
    # b = 1: only the DC term, so each channel's mean becomes the target's and nothing else changes
    dc = fda_source_to_target(s, t, 1 / 16, clip=False).numpy()
    expect = src - src.mean((2, 3), keepdims=True) + trg.mean((2, 3), keepdims=True)
    assert np.allclose(dc, expect, atol=1e-5)
    ours = fda_source_to_target(s, t, 0.2, clip=False).numpy()  # b = 3
    by_hand = _fda_by_hand(src, trg, 3)
    assert np.abs(by_hand.imag).max() < 1e-9  # a symmetric swap keeps the image real
    assert np.allclose(ours, by_hand.real, atol=1e-4)
    assert low_frequency_mask(16, 20, 0.2).sum() == 25
    clipped = fda_source_to_target(s, t, 0.2)
    assert clipped.min() >= 0 and clipped.max() <= 1


def test_adabn_sets_target_statistics():
    torch.manual_seed(6)
    net = torch.nn.Sequential(torch.nn.BatchNorm2d(3), torch.nn.Conv2d(3, 2, 1))
    target = torch.randn(10, 3, 5, 5) * 2 + 3
    conv = net[1].weight.clone()
    assert adapt_batchnorm(net, target, batch_size=10) == 1
    bn = net[0]
    assert torch.allclose(bn.running_mean, target.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, target.var((0, 2, 3), unbiased=True), atol=1e-4)
    assert torch.equal(net[1].weight, conv) and not net.training and bn.momentum == 0.1
