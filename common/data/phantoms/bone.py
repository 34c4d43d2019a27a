"""Procedural bone-radiograph phantom: a MURA-like normal/abnormal task with exact lesion masks.

MURA (Rajpurkar et al. 2017, "MURA: Large Dataset for Musculoskeletal Radiographs",
https://arxiv.org/abs/1712.06957) labels upper-extremity radiographs normal or abnormal and shows
CAMs (Zhou et al. 2016, https://arxiv.org/abs/1512.04150) of a DenseNet as localisation. Real MURA
has no pixel masks, so this phantom supplies the same task offline *with* the exact lesion mask,
which is what lets the interpretability demos score CAM / Grad-CAM maps (pointing game).

Each item is a projected limb: soft-tissue envelope, one or more tubular bones (bright cortex,
darker canal, flared epiphyses, joint spaces), film grain, blur, exposure, collimator shutters, an
"L"/"R" marker and sometimes a view label. Abnormal items carry one lesion -- fracture, lytic
lesion or metal hardware -- and normal items carry look-alikes (nutrient canal, growth plate, bone
island), so the label is not readable from global intensity statistics. ``confounder`` ties the
marker's corner to the label, to show a model that reads the marker instead of the lesion.

Usage::

    ds = BoneXrayPhantom(n=2000, size=128, seed=0)
    item = ds[3]  # {"image": (1, H, W) float32, "label": int64, "mask": (H, W) uint8, "meta": dict}
"""

from __future__ import annotations

from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.phantoms.bone_shapes import (
    CORNERS,
    Segment,
    collimation,
    ellipse_q,
    grid,
    local_coords,
    render_segment,
    sample_lesion,
    sample_marks,
    shaft_range,
    smooth_field,
    text_layer,
    tube,
)

LESION_TYPES = ("fracture", "lytic", "hardware")
META_KEYS = ("body_part", "lesion_type", "lesion_pixels", "marker_side", "marker_corner",
             "marker_confounded", "marker_x0", "marker_y0", "marker_x1", "marker_y1",
             "rotation_deg", "scale", "gamma", "distractors")


def _j(rng, a):  # multiplicative jitter 1 +- a
    return rng.uniform(1.0 - a, 1.0 + a)


def _forearm(rng):
    """Radius and ulna side by side, ending at the wrist joint, with a row of carpals beyond it."""
    x_end = rng.uniform(0.3, 0.55)
    x0 = -1.9
    rad = Segment((x_end + x0) / 2, -0.14 * _j(rng, 0.1), rng.uniform(-0.04, 0.04), (x_end - x0) / 2,
                  0.07 * _j(rng, 0.12), 0.09, 0.13 * _j(rng, 0.1), 0.42, rng.uniform(-0.03, 0.03))
    ux = x_end - rng.uniform(0.03, 0.08)
    uln = Segment((ux + x0) / 2, 0.12 * _j(rng, 0.1), rng.uniform(-0.04, 0.04), (ux - x0) / 2,
                  0.06 * _j(rng, 0.12), 0.1, 0.075 * _j(rng, 0.1), 0.42, rng.uniform(-0.03, 0.03))
    bones = [rad, uln]
    gap = rng.uniform(0.04, 0.06)
    for row, ys in enumerate((np.linspace(-0.2, 0.17, 4), np.linspace(-0.2, 0.2, 4))):
        for y in ys:
            r = 0.05 * _j(rng, 0.15)
            cx = x_end + gap + r + row * 0.15 + rng.uniform(0.0, 0.02)
            bones.append(Segment(cx, y + rng.uniform(-0.02, 0.02), rng.uniform(0, np.pi), r * 1.3,
                                 r, r * 1.15, r * 1.15, 0.3, lesionable=False))
    env = [Segment(0.0, 0.0, rng.uniform(-0.05, 0.05), 2.2, 0.31 * _j(rng, 0.1), 0.3, 0.36, 0.0)]
    return bones, env


def _finger(rng):
    """Metacarpal head and the three phalanges of one finger in a row, with slight flexion."""
    lengths = np.array([rng.uniform(0.75, 0.9), 0.0, 0.0])
    lengths[1], lengths[2] = lengths[0] * _j(rng, 0.05) * 0.6, lengths[0] * _j(rng, 0.05) * 0.42
    radii = [(0.085, 0.12, 0.1), (0.074, 0.1, 0.085), (0.06, 0.085, 0.07)]
    x, y, ang = rng.uniform(-0.95, -0.75), rng.uniform(-0.05, 0.05), rng.uniform(-0.1, 0.1)
    k = _j(rng, 0.1)
    meta_r = 0.1 * k
    bones = [Segment(x - 0.06 - 0.8, y, ang, 0.8, meta_r, 0.12 * k, 0.14 * k, 0.4)]
    env = []
    for (r, ra, rb), L in zip(radii, lengths):
        gap = rng.uniform(0.045, 0.07)
        c, s = np.cos(ang), np.sin(ang)
        cx, cy = x + (gap + L / 2) * c, y + (gap + L / 2) * s
        bones.append(Segment(cx, cy, ang, L / 2, r * k, ra * k, rb * k, 0.42, rng.uniform(-0.03, 0.03),
                             lesionable=L > 0.45))
        env.append(Segment(cx, cy, ang, L / 2 + 0.2, 0.2 * k, 0.2 * k, 0.17 * k, 0.0))
        x, y = cx + (L / 2) * c, cy + (L / 2) * s
        ang += rng.uniform(-0.15, 0.15)
    env.append(Segment(-1.4, bones[0].cy, bones[0].theta, 1.0, 0.22 * k, 0.22 * k, 0.22 * k, 0.0))
    return bones, env


def _humerus(rng):
    """One thick humerus ending at the elbow, with the proximal radius and ulna beyond the joint."""
    x_end = rng.uniform(0.15, 0.4)
    x0 = -2.0
    hum = Segment((x_end + x0) / 2, 0.0, rng.uniform(-0.04, 0.04), (x_end - x0) / 2, 0.13 * _j(rng, 0.1),
                  0.18, 0.22 * _j(rng, 0.1), 0.36, rng.uniform(-0.02, 0.02))
    flex = rng.uniform(-0.5, 0.5)
    c, s = np.cos(flex), np.sin(flex)
    bones = [hum]
    for off, r, re in ((-0.09, 0.065, 0.09), (0.1, 0.075, 0.1)):
        start = x_end + rng.uniform(0.05, 0.08)
        L = 1.3
        # centre = joint + L along the forearm axis + off across it
        bones.append(Segment(start + L * c - off * s, L * s + off * c, flex, L, r * _j(rng, 0.1), re, re, 0.42))
    env = [Segment(-1.0, 0.0, hum.theta, 1.6, 0.47 * _j(rng, 0.08), 0.45, 0.45, 0.0),
           Segment(x_end + 1.2 * c, 1.2 * s, flex, 1.3, 0.36 * _j(rng, 0.08), 0.4, 0.36, 0.0)]
    return bones, env


BODY_PARTS: dict[str, Callable] = {"forearm": _forearm, "finger": _finger, "humerus": _humerus}


def _streams(rng_or_seed) -> list[np.random.Generator]:
    """Independent streams for scene, lesion, marker and noise, so a lesion can be toggled alone."""
    if isinstance(rng_or_seed, np.random.Generator):
        ss = np.random.SeedSequence(rng_or_seed.integers(0, 2**32, size=4).tolist())
    elif isinstance(rng_or_seed, np.random.SeedSequence):
        ss = np.random.SeedSequence(rng_or_seed.entropy, spawn_key=rng_or_seed.spawn_key)
    else:
        ss = np.random.SeedSequence(rng_or_seed)
    return [np.random.default_rng(c) for c in ss.spawn(4)]


def _pick_site(rng, bones: list[Segment]) -> tuple[int, float]:
    """A shaft position of a lesionable bone that lies in the central image region."""
    best, best_d, sites = None, np.inf, []
    for i, b in enumerate(bones):
        lo, hi = shaft_range(b)
        if not b.lesionable or hi <= lo:
            continue
        for u in np.linspace(lo, hi, 25):
            x, y = b.point(u)
            d = max(abs(x), abs(y))
            if d < 0.6:
                sites.append((i, float(u)))
            if d < best_d:
                best, best_d = (i, float(u)), d
    return sites[rng.integers(len(sites))] if sites else best


def render_bone(rng_or_seed, size: int = 128, *, body_part: str | None = None, lesion_type: str = "none",
                marker_corner: str | None = None, body_parts: Sequence[str] = tuple(BODY_PARTS),
                layers: bool = False):
    """Render one MURA-like radiograph: (image (H, W) float32 in [0, 1], lesion mask (H, W) uint8, meta).

    The same seed with lesion_type="none" gives the identical limb without the lesion (and the same
    marker/noise streams), which makes paired normal/abnormal counterfactuals. layers=True appends a
    dict of (H, W) float32 maps: "bone" (projected bone attenuation, >0 on the bone footprint), "metal"
    (>0 on hardware), "field" (1 inside the collimated field, 0 on the shutters) and "marker" (the
    laterality marker's coverage in [0, 1]) -- ground truth for shortcut analyses.
    """
    if lesion_type != "none" and lesion_type not in LESION_TYPES:
        raise ValueError(f"lesion_type must be 'none' or one of {LESION_TYPES}, got {lesion_type!r}")
    scene, les_rng, mark_rng, noise_rng = _streams(rng_or_seed)
    drawn = body_parts[int(scene.integers(len(body_parts)))]
    part = body_part or drawn
    if part not in BODY_PARTS:
        raise ValueError(f"body_part must be one of {tuple(BODY_PARTS)}, got {part!r}")
    bones, envs = BODY_PARTS[part](scene)
    base = scene.choice((np.pi / 2, -np.pi / 2)) if scene.random() < 0.8 else scene.choice((0.0, np.pi))
    rot, scale = base + scene.uniform(-0.5, 0.5), scene.uniform(0.85, 1.15)
    tx, ty = scene.uniform(-0.12, 0.12, size=2)
    bones = [b.moved(rot, scale, tx, ty) for b in bones]
    envs = [e.moved(rot, scale, tx, ty) for e in envs]
    X, Y = grid(size)
    px = 2.0 / size

    # soft tissue: the envelope chords (max, so overlapping pieces do not double) plus folds
    soft = np.zeros((size, size), np.float32)
    for e in envs:
        soft = np.maximum(soft, tube(e, *local_coords(e, X, Y))[0] / np.float32(2 * e.r_shaft))
    for _ in range(int(scene.integers(0, 3))):
        q = ellipse_q(X, Y, *scene.uniform(-0.7, 0.7, 2), scene.uniform(0.2, 0.6), scene.uniform(0.05, 0.2),
                      scene.uniform(0, np.pi))
        soft = soft + np.float32(scene.uniform(0.1, 0.35)) * np.sqrt(np.clip(1.0 - q, 0.0, 1.0))
    soft = soft * (1.0 + 0.08 * smooth_field(scene, size, 5))

    marks = [sample_marks(scene, b) if b.lesionable else [] for b in bones]
    distractors = sorted({m["kind"] for ms in marks for m in ms})
    tex = smooth_field(scene, size, 40)  # fixed cell count keeps the scene stream size-independent
    target, lesion = -1, None
    if lesion_type != "none":
        target, u0 = _pick_site(les_rng, bones)
        lesion = sample_lesion(les_rng, lesion_type, bones[target], u0, px)

    bone = np.zeros((size, size), np.float32)
    metal = np.zeros((size, size), np.float32)
    mask = np.zeros((size, size), bool)
    for i, b in enumerate(bones):
        win, att, _, m, msk = render_segment(b, X, Y, tex, marks[i], lesion if i == target else None)
        bone[win] += att
        if m is not None:
            metal[win] = np.maximum(metal[win], m)
        if msk is not None:
            mask[win] |= msk
    r_ref = max(b.r_shaft for b in bones)

    # exposure: attenuation -> film response, then gamma and window
    atten = scene.uniform(0.35, 0.6) * soft + scene.uniform(0.7, 1.0) * bone / np.float32(2 * r_ref)
    img = 1.0 - np.exp(-atten * np.float32(scene.uniform(0.8, 1.3)))
    gamma = float(scene.uniform(0.7, 1.4))
    lo, hi = scene.uniform(0.0, 0.1), scene.uniform(0.8, 1.0)
    img = np.float32(lo) + np.float32(hi - lo) * img ** np.float32(gamma)
    heel = scene.uniform(0, 2 * np.pi)
    img = img + np.float32(scene.uniform(0.0, 0.05)) * (X * np.float32(np.cos(heel)) + Y * np.float32(np.sin(heel)))
    img = img + (metal > 0) * (metal - img)
    field = np.ones((size, size), np.float32)
    if scene.random() < 0.6:
        field, level = collimation(scene, X, Y)
        img = img * field + np.float32(level) * (1.0 - field)
        mask &= field > 0.5  # what the shutters hide is not in the image, so not in the annotation
    if scene.random() < 0.4:  # view label, never in a marker corner
        layer, _ = text_layer(size, str(scene.choice(("AP", "PA", "LAT", "OBL"))), None, scene, (0.3, 0.5))
        img = img + layer * (np.float32(scene.uniform(0.8, 1.0)) - img)

    side = "L" if mark_rng.random() < 0.5 else "R"
    drawn_corner = CORNERS[int(mark_rng.integers(4))]
    corner = marker_corner or drawn_corner
    if corner not in CORNERS:
        raise ValueError(f"marker_corner must be one of {CORNERS}, got {corner!r}")
    layer, box = text_layer(size, side, corner, mark_rng, boxed=bool(mark_rng.random() < 0.4))
    img = img + layer * (np.float32(mark_rng.uniform(0.85, 1.0)) - img)

    sigma = noise_rng.uniform(0.4, 0.9) * size / 128.0
    img = cv2_blur(img, sigma)
    grain = np.float32(noise_rng.uniform(0.008, 0.03))
    img = img + grain * np.sqrt(np.clip(img, 0.0, 1.0) + 0.05) * noise_rng.standard_normal(img.shape, np.float32)
    img = img + np.float32(noise_rng.uniform(0.0, 0.02)) * smooth_field(noise_rng, size, 6)
    img = np.clip(img, 0.0, 1.0).astype(np.float32)
    assert img.shape == (size, size) and mask.shape == (size, size)

    meta = dict(body_part=part, lesion_type=lesion_type, lesion_pixels=int(mask.sum()), marker_side=side,
                marker_corner=corner, marker_confounded=0, marker_x0=int(box[0]), marker_y0=int(box[1]),
                marker_x1=int(box[2]), marker_y1=int(box[3]), rotation_deg=float(np.degrees(rot)),
                scale=float(scale), gamma=gamma, distractors=",".join(distractors) or "none")
    if layers:
        return img, mask.astype(np.uint8), meta, {"bone": bone, "metal": metal, "field": field, "marker": layer}
    return img, mask.astype(np.uint8), meta


def cv2_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Focal-spot / detector unsharpness as an isotropic Gaussian blur (sigma in pixels)."""
    return cv2.GaussianBlur(img, (0, 0), sigmaX=float(sigma), borderType=cv2.BORDER_REFLECT)


class BoneXrayPhantom(Dataset):
    """MURA-like normal/abnormal radiographs with exact lesion masks; item i depends only on (seed, i)."""

    def __init__(self, n: int = 1000, size: int = 128, seed: int = 0, abnormal_fraction: float = 0.5,
                 body_parts: Sequence[str] = tuple(BODY_PARTS), lesion_types: Sequence[str] = LESION_TYPES,
                 confounder: float = 0.0, transform: Callable[[dict], dict] | None = None):
        bad = [p for p in body_parts if p not in BODY_PARTS] + [t for t in lesion_types if t not in LESION_TYPES]
        if bad or not body_parts or not lesion_types:
            raise ValueError(f"unknown or empty body_parts/lesion_types {bad}; choose from "
                             f"{tuple(BODY_PARTS)} and {LESION_TYPES}")
        if not (0.0 <= abnormal_fraction <= 1.0 and 0.0 <= confounder <= 1.0):
            raise ValueError("abnormal_fraction and confounder must lie in [0, 1]")
        if n < 0 or size < 32 or seed < 0:
            raise ValueError(f"need n >= 0, size >= 32 and seed >= 0 (got {n}, {size}, {seed})")
        self.n, self.size, self.seed = int(n), int(size), int(seed)
        self.abnormal_fraction, self.confounder = float(abnormal_fraction), float(confounder)
        self.body_parts, self.lesion_types = tuple(body_parts), tuple(lesion_types)
        self.transform = transform

    def __len__(self) -> int:
        return self.n

    def item_spec(self, index: int) -> dict:
        """The label-level choices of item `index` and the seed the renderer gets (for counterfactuals)."""
        if not 0 <= index < self.n:
            raise IndexError(f"index {index} out of range for {self.n} items")
        rng = np.random.default_rng([self.seed, index, 0])
        abnormal = bool(rng.random() < self.abnormal_fraction)
        lesion = self.lesion_types[int(rng.integers(len(self.lesion_types)))]
        part = self.body_parts[int(rng.integers(len(self.body_parts)))]
        # with probability `confounder` the corner is set by the label: abnormal top-left, normal bottom-right
        confounded = bool(rng.random() < self.confounder)
        corner = CORNERS[int(rng.integers(4))]
        if confounded:
            corner = "tl" if abnormal else "br"
        return dict(rng_or_seed=[self.seed, index, 1], body_part=part, lesion_type=lesion if abnormal else "none",
                    marker_corner=corner, confounded=confounded)

    def __getitem__(self, index: int) -> dict:
        if index < 0:
            index += self.n
        spec = self.item_spec(index)
        confounded = spec.pop("confounded")
        img, mask, meta = render_bone(size=self.size, **spec)
        meta["marker_confounded"] = int(confounded)
        sample = {"image": torch.from_numpy(img)[None],  # (1, H, W)
                  "label": torch.tensor(int(spec["lesion_type"] != "none"), dtype=torch.int64),
                  "mask": torch.from_numpy(mask),  # (H, W)
                  "meta": meta}
        return self.transform(sample) if self.transform is not None else sample
