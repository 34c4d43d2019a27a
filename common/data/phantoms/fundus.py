"""Procedural retinal fundus phantom photographed by two cameras (REFUGE-like optic disc/cup data).

The built-in stand-in for REFUGE (Orlando et al., "REFUGE Challenge: A unified framework for
evaluating automated methods for glaucoma assessment from fundus photographs", Medical Image
Analysis 59, 2020, https://arxiv.org/abs/1910.03667), whose training images come from one camera
(Zeiss Visucam 500) and whose validation/test images from another (Canon CR-2). It lets the
project run offline and measure domain-adversarial optic disc/cup segmentation across cameras
(survey: Zhang et al. 2019, https://arxiv.org/abs/1908.00473).

Anatomy (``fundus_shapes.py``) is sampled identically for every domain; a domain is a camera
model (:data:`CAMERAS`) that changes only appearance: white balance, exposure, tone curve,
vignetting, blur or sharpening, sensor noise, JPEG compression and native resolution.

Labels
    ``mask``  uint8, REFUGE encoding: 0 = cup, 128 = disc rim, 255 = background.
    ``seg``   int64 class map for cross-entropy: 0 = background, 1 = disc rim, 2 = cup
              (so disc = ``seg >= 1``, cup = ``seg == 2``; :func:`disc_cup_channels` gives the
              two overlapping binary channels used by multi-label models such as M-Net).
    ``cdr``   vertical cup-to-disc ratio measured on ``mask`` as REFUGE's evaluation does.

Usage: ``FundusPhantom(n=200, size=128, domain="B", seed=1)[0]["image"].shape == (3, 128, 128)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from statistics import NormalDist

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.phantoms.fundus_shapes import FundusAnatomy, Vessels, sample_anatomy
from common.errors import InputError

FOV_FRACTION = 0.94  # FOV diameter / image side, identical in every domain so masks do not shift
REFUGE_CUP, REFUGE_RIM, REFUGE_BACKGROUND = 0, 128, 255
SEG_BACKGROUND, SEG_RIM, SEG_CUP = 0, 1, 2


@dataclass(frozen=True)
class CameraProfile:
    """Appearance model of one fundus camera; lengths are in pixels of the output image."""

    description: str
    native_scale: float  # rendered at round(size * native_scale), then area-resized to size
    gains: tuple[float, float, float]  # white balance (R, G, B)
    exposure: float
    gamma: float
    flare: float  # black-level lift inside the FOV
    vignette: float
    blur_sigma: float
    sharpen: float  # unsharp-mask amount applied in camera
    read_noise: float
    shot_noise: float
    jpeg_quality: int  # 0 = stored losslessly


CAMERAS: dict[str, CameraProfile] = {
    "A": CameraProfile("Zeiss-Visucam-like: warm, dark, soft, strong vignetting, JPEG q55",
                       native_scale=1.5, gains=(1.0, 0.88, 0.75), exposure=1.0, gamma=1.15, flare=0.0,
                       vignette=0.45, blur_sigma=0.7, sharpen=0.0, read_noise=0.006, shot_noise=0.0004,
                       jpeg_quality=55),
    "B": CameraProfile("Canon-CR2-like: cool-yellow, bright, sharpened, mild vignetting, noisy, lossless",
                       native_scale=1.25, gains=(0.92, 1.1, 1.2), exposure=1.12, gamma=0.85, flare=0.03,
                       vignette=0.15, blur_sigma=0.25, sharpen=0.6, read_noise=0.015, shot_noise=0.002,
                       jpeg_quality=0),
}
DOMAINS = tuple(CAMERAS)
_DOMAIN_CODE = {name: i for i, name in enumerate(DOMAINS)}
_VEIN_ABSORB = np.array([0.42, 0.8, 0.75], np.float32)  # vessels look darker and redder
_ARTERY_ABSORB = np.array([0.2, 0.55, 0.5], np.float32)
# Inverse-CDF table turning uniform bytes into standard normal deviates (truncated at 2.9 sigma):
# 6x cheaper than Generator.standard_normal, which dominated the render time.
_GAUSS = np.array([NormalDist().inv_cdf((k + 0.5) / 256) for k in range(256)], np.float32)
_GAUSS = (_GAUSS / _GAUSS.std()).reshape(1, 256)  # a cv2.LUT table
_CHUNK = 3  # a 16-point vessel polyline is drawn as 5 chunks of 3 segments, each with its own width


@lru_cache(maxsize=32)
def _grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalized coordinates of pixel centres: u (1, n), v (n, 1); FOV radius 1 at the centre."""
    c = ((np.arange(n, dtype=np.float32) + 0.5) - n / 2) / (FOV_FRACTION * n / 2)
    c.flags.writeable = False  # cached and shared between calls
    return c[None, :], c[:, None]


@lru_cache(maxsize=32)
def _lens_field(n: int, vignette: float) -> np.ndarray:
    """(n, n) anti-aliased FOV aperture times radial vignetting fall-off; cached per camera and size."""
    u, v = _grid(n)
    rr = u * u + v * v
    field = np.clip((1 - np.sqrt(rr)) * (FOV_FRACTION * n / 2) + 0.5, 0, 1) * (1 - vignette * np.minimum(rr, 1) ** 1.5)
    field.flags.writeable = False
    return field


def _roi(cx: float, cy: float, half: float, n: int) -> tuple[slice, slice]:
    """Pixel window (rows, cols) around a normalized square; local effects are computed only there."""
    to_px = FOV_FRACTION * n / 2

    def span(c: float) -> slice:
        lo, hi = np.floor((c - half) * to_px + n / 2), np.ceil((c + half) * to_px + n / 2)
        return slice(int(np.clip(lo, 0, n)), int(np.clip(hi, 0, n)))

    return span(cy), span(cx)


def _draw_vessels(canvas: np.ndarray, vessels: Vessels, absorb: np.ndarray) -> None:
    """Rasterize a vessel tree into a (n, n, 3) uint8 absorption canvas with anti-aliased polylines."""
    n = canvas.shape[0]
    radius_px = FOV_FRACTION * n / 2
    idx = np.arange(5)[:, None] * _CHUNK + np.arange(_CHUNK + 1)[None, :]  # (5, 4)
    pts = vessels.points[:, idx] * radius_px + (n / 2 - 0.5)  # (N, 5, 4, 2) pixel coordinates
    w_px = vessels.widths[:, idx].mean(-1) * radius_px  # (N, 5)
    thickness = np.maximum(1, np.round(w_px)).astype(int)
    # Sub-pixel vessels are drawn 1 px wide but fainter; thin vessels also have less contrast.
    alpha = np.clip(w_px / thickness, 0, 1) * (0.55 + 0.45 * np.minimum(1.0, w_px / 2.5))
    level = np.round(alpha * 15).astype(int)
    pts = np.round(pts * 16).astype(np.int32).reshape(-1, _CHUNK + 1, 2)  # 4 fractional bits
    thickness, level = thickness.ravel(), level.ravel()
    key = level * 64 + thickness
    for k in np.unique(key[level > 0]):  # weak levels first so stronger vessels overwrite them
        sel = np.flatnonzero(key == k)
        colour = tuple(float(c) for c in absorb * 17 * (k // 64))
        cv2.polylines(canvas, list(pts[sel]), False, colour, int(k % 64), cv2.LINE_AA, 4)


def _soft_inside(rho: np.ndarray, sharpness: float) -> np.ndarray:
    """Smooth indicator of an elliptic region (rho < 1) with an edge width of ~4/sharpness radii."""
    return 1.0 / (1.0 + np.exp(np.clip((rho - 1.0) * sharpness, -30, 30)))


def _scene(anat: FundusAnatomy, n: int) -> np.ndarray:
    """Retinal reflectance (n, n, 3) before the camera: background, choroid, macula, disc, vessels."""
    u, v = _grid(n)
    g = anat.choroid[1].shape[0]
    tex = 0.6 * cv2.resize(anat.choroid[0], (g, g), interpolation=cv2.INTER_CUBIC) + 0.4 * anat.choroid[1]
    # Choroidal pattern shows most in green/blue where the red-dominated background is thin; built
    # on the coarse grid and upsampled once, which is both smooth and cheap.
    tint = anat.choroid_contrast * np.float32([0.6, 1.0, 1.2])
    small = anat.fundus_rgb.astype(np.float32) * (1 + tex[..., None] * tint)
    img = cv2.resize(small, (n, n), interpolation=cv2.INTER_CUBIC)  # (n, n, 3)
    dd = float(anat.disc.ry * 2)
    mx, my = anat.macula
    ys, xs = _roi(mx, my, 1.6 * dd, n)
    d2 = (u[:, xs] - mx) ** 2 + (v[ys] - my) ** 2
    mac = np.exp(-d2 / np.float32(2 * (0.5 * dd) ** 2))[..., None]
    img[ys, xs] *= 1 - anat.macula_depth * mac * np.float32([0.45, 0.65, 0.6])
    img[ys, xs] += np.float32(0.05) * np.exp(-d2 / np.float32(2 * (0.04 * dd) ** 2))[..., None]  # foveal reflex
    dys, dxs = _roi(float(anat.disc.cx), float(anat.disc.cy), 1.4 * max(anat.disc.rx, anat.disc.ry), n)
    du, dv = u[:, dxs], v[dys]
    disc = _soft_inside(anat.disc.radius(du, dv), 22.0)[..., None]
    cup = 0.9 * _soft_inside(anat.cup.radius(du, dv), 10.0)[..., None]  # the cup edge is less distinct
    roi = img[dys, dxs] * (1 - disc) + anat.disc_rgb.astype(np.float32) * disc
    img[dys, dxs] = roi * (1 - cup) + anat.cup_rgb.astype(np.float32) * cup
    canvas = np.zeros((n, n, 3), np.uint8)
    _draw_vessels(canvas, anat.veins, _VEIN_ABSORB)
    _draw_vessels(canvas, anat.arteries, _ARTERY_ABSORB)  # arteries drawn last lie on top at crossings
    absorb = canvas.astype(np.float32) * np.float32(1 / 255)
    # The foveal avascular zone: capillaries and small branches stop ~0.3 DD short of the fovea.
    absorb[ys, xs] *= (1 - np.exp(-d2 / np.float32(2 * (0.3 * dd) ** 2)))[..., None]
    img *= 1 - absorb
    return img


@lru_cache(maxsize=8)
def _tone_lut(cam: CameraProfile) -> np.ndarray:
    """8-bit tone curve of a camera: gamma and black-level flare, applied with cv2.LUT."""
    x = np.arange(256) / 255.0
    return np.round(255 * (cam.flare + (1 - cam.flare) * x**cam.gamma)).astype(np.uint8)


def _photograph(img: np.ndarray, cam: CameraProfile, size: int, rng: np.random.Generator) -> np.ndarray:
    """Photograph a native-resolution scene (n, n, 3), overwritten in place; returns (size, size, 3) in [0, 1]."""
    n = img.shape[0]
    u, v = _grid(n)
    # Per-shot illumination gradient from pupil alignment and exposure jitter: same for every camera.
    phi, grad = rng.uniform(0, 2 * np.pi), rng.uniform(0.0, 0.25)
    light = (1 + grad * (float(np.cos(phi)) * u + float(np.sin(phi)) * v)) * _lens_field(n, cam.vignette)
    light *= cam.exposure * rng.uniform(0.92, 1.08)
    img *= light[..., None]
    img *= np.float32(cam.gains)
    scale = n / size
    img = cv2.GaussianBlur(img, (0, 0), cam.blur_sigma * scale)  # optics, in linear light
    sd = np.sqrt(cam.read_noise**2 + cam.shot_noise * np.clip(img[..., 1], 0, 1))  # (n, n) from green
    img += cv2.LUT(np.frombuffer(rng.bytes(img.size), np.uint8).reshape(img.shape), _GAUSS) * sd[..., None]
    np.clip(img, 0, 1, out=img)
    q = cv2.LUT((img * 255 + 0.5).astype(np.uint8), _tone_lut(cam))  # 8-bit camera output
    if cam.sharpen > 0:
        q = cv2.addWeighted(q, 1 + cam.sharpen, cv2.GaussianBlur(q, (0, 0), 1.0 * scale), -cam.sharpen, 0)
    if cam.jpeg_quality:  # the encoder expects BGR for its chroma subsampling
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(q[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, cam.jpeg_quality])
        if not ok:
            raise RuntimeError("OpenCV could not JPEG-encode a phantom image")
        q = cv2.imdecode(buf, cv2.IMREAD_COLOR)[..., ::-1]
    out = cv2.resize(q, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
    u, v = _grid(size)
    out *= ((u * u + v * v <= 1.0) * np.float32(1 / 255))[..., None]  # black outside the FOV
    return out


def fundus_mask(anat: FundusAnatomy, size: int) -> np.ndarray:
    """REFUGE-encoded (size, size) uint8 mask of an anatomy: 0 cup, 128 disc rim, 255 background."""
    u, v = _grid(size)
    disc = anat.disc.radius(u, v) <= 1.0
    cup = (anat.cup.radius(u, v) <= 1.0) & disc
    mask = np.full((size, size), REFUGE_BACKGROUND, np.uint8)
    mask[disc] = REFUGE_RIM
    mask[cup] = REFUGE_CUP
    return mask


def vertical_diameter(binary: np.ndarray) -> np.ndarray:
    """Largest per-column pixel count of (..., H, W) binary masks, as in REFUGE's vCDR evaluation."""
    return np.asarray(binary, dtype=bool).sum(axis=-2).max(axis=-1)


def vertical_cdr(mask: np.ndarray) -> float | np.ndarray:
    """Vertical cup-to-disc ratio of REFUGE-encoded (..., H, W) masks (Orlando et al. 2020); 0 if no disc."""
    mask = np.asarray(mask)
    cup = vertical_diameter(mask == REFUGE_CUP).astype(np.float64)
    disc = vertical_diameter(mask != REFUGE_BACKGROUND).astype(np.float64)
    ratio = np.divide(cup, disc, out=np.zeros_like(cup), where=disc > 0)
    return float(ratio) if ratio.ndim == 0 else ratio


def refuge_to_seg(mask: np.ndarray) -> np.ndarray:
    """REFUGE mask (0 cup / 128 rim / 255 bg) to an int64 class map (0 bg / 1 rim / 2 cup)."""
    mask = np.asarray(mask)
    bad = np.setdiff1d(np.unique(mask), [REFUGE_CUP, REFUGE_RIM, REFUGE_BACKGROUND])
    if bad.size:
        raise InputError(f"mask holds values {bad[:5].tolist()} outside REFUGE's 0/128/255",
                         hint="resize masks with nearest-neighbour interpolation")
    seg = np.full(mask.shape, SEG_BACKGROUND, np.int64)
    seg[mask == REFUGE_RIM] = SEG_RIM
    seg[mask == REFUGE_CUP] = SEG_CUP
    return seg


def seg_to_refuge(seg: np.ndarray) -> np.ndarray:
    """Inverse of :func:`refuge_to_seg`: int class map (0 bg / 1 rim / 2 cup) to REFUGE uint8."""
    lut = np.array([REFUGE_BACKGROUND, REFUGE_RIM, REFUGE_CUP], np.uint8)
    return lut[np.asarray(seg)]


def disc_cup_channels(mask: np.ndarray) -> np.ndarray:
    """REFUGE (..., H, W) mask to float32 (..., 2, H, W): channel 0 disc incl. cup, channel 1 cup (M-Net)."""
    mask = np.asarray(mask)
    return np.stack([mask != REFUGE_BACKGROUND, mask == REFUGE_CUP], axis=-3).astype(np.float32)


def _camera(domain: str) -> CameraProfile:
    if domain not in CAMERAS:
        raise InputError(f"unknown fundus camera domain {domain!r}", hint=f"use one of {', '.join(DOMAINS)}")
    return CAMERAS[domain]


def render_fundus(rng_or_seed, size: int = 128, domain: str = "A", anatomy: FundusAnatomy | None = None):
    """Render one phantom fundus photograph: (image (H, W, 3) float32 in [0, 1], REFUGE mask uint8, meta).

    ``rng_or_seed`` (int or ``np.random.Generator``) drives the anatomy, unless ``anatomy`` is given,
    and the per-shot camera jitter; pass the same ``anatomy`` with two domains for a paired eye.
    """
    cam = _camera(domain)
    if int(size) < 16:
        raise InputError(f"fundus phantom size {size} is too small", hint="use size >= 16 (64-512 is typical)")
    size = int(size)
    rng = rng_or_seed if isinstance(rng_or_seed, np.random.Generator) else np.random.default_rng(rng_or_seed)
    anat = sample_anatomy(rng) if anatomy is None else anatomy
    native = max(size, int(round(size * cam.native_scale)))
    image = _photograph(_scene(anat, native), cam, size, rng)
    mask = fundus_mask(anat, size)
    assert image.shape == (size, size, 3) and image.dtype == np.float32
    to_px = FOV_FRACTION * size / 2
    meta = {
        "domain": domain,
        "eye": anat.eye,
        "vcdr_design": float(anat.vcdr_design),
        "disc_x": float(anat.disc.cx * to_px + size / 2 - 0.5),
        "disc_y": float(anat.disc.cy * to_px + size / 2 - 0.5),
        "disc_diameter_px": float(anat.disc.vertical_chord() * to_px),
        "macula_x": float(anat.macula[0] * to_px + size / 2 - 0.5),
        "macula_y": float(anat.macula[1] * to_px + size / 2 - 0.5),
    }
    return image, mask, meta


class FundusPhantom(Dataset):
    """``n`` phantom fundus photographs from camera ``domain``; item ``i`` depends only on (seed, domain, i).

    With ``paired=True`` the anatomy depends on (seed, i) alone, so domains "A" and "B" show the same
    eyes (same masks) through different cameras; by default each domain gets its own eyes, drawn
    from the same distribution, as two clinics' cohorts would be.
    """

    def __init__(self, n: int = 64, size: int = 128, domain: str = "A", seed: int = 0, paired: bool = False):
        _camera(domain)
        if int(n) < 1:
            raise InputError(f"fundus phantom needs n >= 1 images, got {n}")
        self.n, self.size, self.domain, self.seed, self.paired = int(n), int(size), domain, int(seed), bool(paired)

    def __len__(self) -> int:
        return self.n

    def _rngs(self, index: int) -> tuple[np.random.Generator, np.random.Generator]:
        code = _DOMAIN_CODE[self.domain]
        anat_key = [self.seed, index] if self.paired else [self.seed, index, 101 + code]
        return (np.random.default_rng(np.random.SeedSequence(anat_key)),
                np.random.default_rng(np.random.SeedSequence([self.seed, index, 201 + code])))

    def __getitem__(self, index: int) -> dict:
        """One item: image (3, H, W) float32, mask (H, W) uint8 REFUGE, seg (H, W) int64, cdr, meta."""
        if not -self.n <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} fundus phantoms")
        index = index % self.n
        anat_rng, cam_rng = self._rngs(index)
        image, mask, meta = render_fundus(cam_rng, self.size, self.domain, anatomy=sample_anatomy(anat_rng))
        meta.update(index=index, seed=self.seed, paired=int(self.paired))
        return {
            "image": torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))),  # (3, H, W)
            "mask": torch.from_numpy(mask),  # (H, W) uint8, 0 cup / 128 rim / 255 bg
            "seg": torch.from_numpy(refuge_to_seg(mask)),  # (H, W) int64, 0 bg / 1 rim / 2 cup
            "cdr": torch.tensor(vertical_cdr(mask), dtype=torch.float32),
            "meta": meta,
        }
