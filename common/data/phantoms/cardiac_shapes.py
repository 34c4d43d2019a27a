"""Geometry and image-formation helpers for the procedural cardiac cine-MRI phantom.

Shapes are star-shaped around a centre: a base radius (circle or ellipse) times a smooth
perturbation ``1 + Re(sum_k c_k e^{ik theta})``. Each shape yields an approximate signed
distance ``r - R(theta)`` on a complex pixel grid; a one-pixel box ramp of that distance gives
the fractional coverage of each pixel, which is how partial-volume edges are rendered
without supersampling. The thorax, right-ventricle and atrial painters below work on the scene
dict drawn by :mod:`common.data.phantoms.cardiac`, the only user of this module.
"""

from __future__ import annotations

import cv2
import numpy as np

CANONICAL_FOV = 256.0  # scene units are pixels of a 256 x 256 image (ACDC's usual matrix)


def pixel_grid(size: int, rotation: float, shift: complex, scale: float) -> np.ndarray:
    """Scene coordinates of each output pixel centre as a complex (H, W) grid (x + i y, y down)."""
    step = CANONICAL_FOV / size
    axis = ((np.arange(size, dtype=np.float32) + 0.5) * step - CANONICAL_FOV / 2).astype(np.float32)
    grid = axis[None, :] + 1j * axis[:, None]  # (H, W) complex
    # Inverse pose: image -> scene, so the scene is rotated by +rotation and scaled by `scale`.
    return ((grid - shift) * np.exp(-1j * rotation) / scale).astype(np.complex64)


def random_harmonics(rng: np.random.Generator, amplitude: float, k_max: int = 4) -> np.ndarray:
    """Complex Fourier coefficients c_1..c_k_max with 1/k decay: smooth non-circular outlines."""
    k = np.arange(1, k_max + 1)
    mag = amplitude * rng.uniform(0.3, 1.0, k_max) / k
    phase = rng.uniform(0.0, 2 * np.pi, k_max)
    return mag * np.exp(1j * phase)


def harmonics(unit: np.ndarray, coeffs: np.ndarray | None) -> np.ndarray | float:
    """Re(sum_k c_k u^k) for unit complex directions u (H, W): a smooth function of the angle."""
    if coeffs is None or len(coeffs) == 0:
        return 0.0
    power = unit
    acc = np.zeros(unit.shape, np.float32)
    for c in np.asarray(coeffs, np.complex64):
        acc += (c * power).real
        power = power * unit
    return acc


def polar(grid: np.ndarray, centre: complex, angle: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Radius (H, W) and unit direction (H, W) of every pixel around `centre`, in a frame rotated by `angle`."""
    w = (grid - np.complex64(centre)) * np.complex64(np.exp(-1j * angle))
    r = np.abs(w)
    return r, w / np.maximum(r, 1e-6)


def ellipse_radius(unit: np.ndarray, a: float, b: float) -> np.ndarray | float:
    """Distance from the centre to an axis-aligned ellipse boundary along each direction."""
    if a == b:
        return a
    return a * b / np.sqrt((b * unit.real) ** 2 + (a * unit.imag) ** 2)


def star_distance(grid, centre, a, b=None, angle=0.0, coeffs=None) -> np.ndarray:
    """Approximate signed distance (scene units, negative inside) to a perturbed ellipse."""
    r, u = polar(grid, centre, angle)
    radius = ellipse_radius(u, a, a if b is None else b) * (1.0 + harmonics(u, coeffs))
    return r - radius


def coverage(dist: np.ndarray, px_per_unit: float) -> np.ndarray:
    """Fraction of each pixel inside the shape: a one-pixel linear ramp across the boundary."""
    return np.clip(0.5 - dist * np.float32(px_per_unit), 0.0, 1.0).astype(np.float32)


def paint(image: np.ndarray, alpha: np.ndarray, value: float | np.ndarray) -> None:
    """Composite a tissue of intensity `value` over `image` in place, weighted by its coverage."""
    image += alpha * (value - image)


def smooth_field(coarse: np.ndarray, size: int) -> np.ndarray:
    """Upsample a small random grid to a smooth (size, size) field (bias fields, tissue texture)."""
    return cv2.resize(coarse.astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC)


def rician(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Magnitude of the signal plus complex Gaussian noise, as in magnitude MR images."""
    noise = rng.standard_normal((2,) + signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.sqrt((signal + noise[0]) ** 2 + noise[1] ** 2)


def thorax_maps(grid: np.ndarray, s: dict, k: float) -> dict:
    """Coverage maps (H, W) of the slice-independent thorax: body layers, left lung, vessels, spine, aorta."""
    c, a, b, ang, coef = s["body"]
    r, u = polar(grid, c, ang)
    r_body = ellipse_radius(u, a, b) * (1.0 + harmonics(u, coef))
    layer = 1.0 + harmonics(u, s["layer_c"])  # uneven subcutaneous fat and pectoral muscle
    out = {"body": coverage(r - r_body, k),
           "muscle": coverage(r - r_body + s["subcut"] * layer, k),
           "inner": coverage(r - r_body + (s["subcut"] + s["muscle"]) * layer, k)}
    out["lung_l"] = coverage(star_distance(grid, *s["lung_l"]), k) * out["inner"]
    vessels = np.zeros(grid.shape, np.float32)
    for j, (off, rad) in enumerate(s["vessels"]):
        c, a, b = s["lung_l"][:3] if j % 2 else s["lung_r"][:3]
        vessels = np.maximum(vessels, coverage(star_distance(grid, c + off.real * a + 1j * off.imag * b, rad), k))
    out["vessels"] = vessels
    out["spine"] = coverage(star_distance(grid, s["spine"], s["spine_r"]), k)
    canal = s["spine"] + (s["spine_r"] + s["canal_r"] + 1.5) * np.exp(1j * (np.pi / 2 + ang))
    out["canal"] = coverage(star_distance(grid, canal, s["canal_r"]), k)
    out["aorta"] = coverage(star_distance(grid, s["aorta"], s["aorta_r"]), k)
    return out


def paint_thorax(grid: np.ndarray, maps: dict, s: dict, t: float, k: float) -> np.ndarray:
    """Noise-free thorax image (H, W) at long-axis position t (0 base, 1 apex) before the heart is drawn."""
    v = s["val"]
    img = np.zeros(grid.shape, np.float32)
    paint(img, maps["body"], v["fat"])
    paint(img, maps["muscle"], v["muscle"])
    paint(img, maps["inner"], v["tissue"])
    paint(img, maps["lung_l"], v["lung"])
    # Towards the apex the slice dips below the diaphragm: the liver grows and the right lung shrinks.
    grow = float(np.clip((t - s["liver_t0"]) / (1 - s["liver_t0"]) * 1.3, 0, 1)) ** 0.5
    c, a, b, ang, coef = s["lung_r"]
    alpha_lung_r = coverage(star_distance(grid, c, a * (1 - 0.45 * grow), b * (1 - 0.45 * grow), ang, coef),
                            k) * maps["inner"]
    paint(img, alpha_lung_r, v["lung"])
    paint(img, maps["vessels"] * np.maximum(alpha_lung_r, maps["lung_l"]), v["vessel"])
    if grow > 0.05:
        c, a, b, ang, coef = s["liver"]
        paint(img, coverage(star_distance(grid, c, a * grow, b * grow, ang, coef), k) * maps["inner"], v["liver"])
    paint(img, maps["spine"], v["spine"])
    paint(img, maps["canal"], v["csf"])
    paint(img, maps["aorta"], v["aorta"])
    return img


def crescent(r, u, r_inner, direction, width, height, power, coeffs):
    """Outer radius of an RV-like crescent hugging a chamber of radius r_inner (all (H, W))."""
    cos_off = (u * np.complex64(np.exp(-1j * direction))).real
    bump = np.clip((cos_off - np.cos(width)) / (1 - np.cos(width)), 0, 1) ** power
    return r_inner + height * bump * (1.0 + harmonics(u, coeffs))


def paint_rv(img, r, u, r_inner, s, height, width, k) -> np.ndarray:
    """Paint fat, RV free wall and RV cavity around r_inner; return the RV-cavity label mask (H, W)."""
    v = s["val"]
    r_rv = crescent(r, u, r_inner, s["rv_dir"], width, height, s["rv_p"], s["rv_c"])
    fat = s["fat_t"] * np.clip(0.2 + harmonics(u, s["fat_c"]), 0, None)
    paint(img, coverage(r - r_rv - fat, k), v["fat"])
    paint(img, coverage(r - r_rv, k), v["myo"])  # thin RV free wall
    d_rv = r - r_rv + s["rv_wall"]
    paint(img, coverage(d_rv, k), v["rv_blood"])
    return d_rv < 0


def paint_atria(img, grid, centre, s, k) -> tuple[np.ndarray, np.ndarray]:
    """Paint a cut above the mitral valve; return masks (H, W) of the RV outflow and of the atria/aortic root."""
    v, rb, rot = s["val"], s["r_base"], np.exp(1j * s["heart_rot"])
    r, u = polar(grid, centre + s["ao_off"] * rb * rot, s["heart_rot"])
    rv = paint_rv(img, r, u, s["ao_r"] * rb + 2.5, s, 0.8 * s["rv_h"], 0.8 * s["rv_w"], k)
    chambers = np.zeros(grid.shape, bool)
    for off, ra, rc in (("la_off", "la_r", "la_c"), ("ra_off", "ra_r", "ra_c"), ("ao_off", "ao_r", None)):
        dist = star_distance(grid, centre + s[off] * rb * rot, s[ra] * rb, None, 0.0, s[rc] if rc else None)
        paint(img, coverage(dist - 2.0, k), v["myo"])  # thin atrial / aortic wall
        paint(img, coverage(dist, k), v["blood"])
        chambers |= dist < 2.0
    return rv, chambers
