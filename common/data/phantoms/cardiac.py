"""Procedural cardiac cine-MRI short-axis phantom shaped like ACDC, for offline weak-supervision demos.

Each volume is a stack of bSSFP-like short-axis slices from the base to the apex with ACDC labels
(0 background, 1 right-ventricle cavity, 2 left-ventricle myocardium, 3 left-ventricle cavity,
papillary muscles included in 3). The LV is deliberately not separable by an intensity threshold:
the RV cavity, epicardial and subcutaneous fat, the descending aorta, spinal fluid and (at the base)
the outflow tract are as bright as LV blood, and a smooth bias field plus Rician noise tilt the
intensities, so a segmenter has to use shape and context.

ACDC: Bernard et al. 2018, "Deep learning techniques for automatic MRI cardiac multi-structures
segmentation and diagnosis", IEEE TMI, https://doi.org/10.1109/TMI.2018.2837502 .
The phantom exists to measure Kervadec et al. 2019, "Constrained-CNN losses for weakly supervised
segmentation", Medical Image Analysis, https://arxiv.org/abs/1805.04628 .

Usage: ``vol, lab, meta = render_cardiac_volume(0, size=128)`` or
``CardiacPhantomSlices(n_volumes=40, size=96, seed=0)`` as a torch Dataset.
"""

from __future__ import annotations

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from common.data.phantoms import cardiac_shapes as sh
from common.errors import InputError

LABELS = {"background": 0, "rv": 1, "myo": 2, "lv": 3}
MIN_SLICES, MAX_SLICES = 6, 10


def _u(rng, lo, hi) -> float:
    return float(rng.uniform(lo, hi))


def _draw_scene(rng: np.random.Generator, n_slices: int | None, phase: str | None, extra_slices: bool) -> dict:
    """All random geometry and contrast of one volume, independent of the output resolution."""
    drawn_d = int(rng.integers(MIN_SLICES, MAX_SLICES + 1))  # first draw: lets datasets count slices cheaply
    drawn_phase = "ES" if rng.random() < 0.5 else "ED"
    d = int(n_slices) if n_slices is not None else drawn_d
    es = (phase or drawn_phase) == "ES"
    s = {"n_slices": d, "phase": "ES" if es else "ED"}
    # Pose of the whole scene in the image (scene units = pixels at 256 x 256).
    s["rotation"] = _u(rng, -0.55, 0.55)
    s["shift"] = complex(_u(rng, -14, 14), _u(rng, -14, 14))
    s["scale"] = _u(rng, 0.92, 1.08)
    # LV: ellipsoidal cavity, radius shrinking from base to apex; systole shrinks it and thickens the wall.
    r_base, r_apex, wall = _u(rng, 17.5, 21.5), _u(rng, 6.5, 9.5), _u(rng, 5.0, 7.5)
    if es:
        r_base *= _u(rng, 0.72, 0.86)
        r_apex = max(6.3, r_apex * _u(rng, 0.75, 0.9))
        wall *= _u(rng, 1.3, 1.6)
    s["r_base"], s["wall"] = r_base, wall
    s["ell"] = float(np.sqrt(1.0 - min(r_apex / r_base, 0.95) ** 2))
    s["heart_rot"] = _u(rng, -0.3, 0.3)
    s["drift"] = complex(_u(rng, -6, 6), _u(rng, -6, 6))
    s["endo_a"], s["endo_b"] = sh.random_harmonics(rng, 0.10), sh.random_harmonics(rng, 0.10)
    s["wall_c"] = sh.random_harmonics(rng, 0.35, 3)
    # RV crescent hugging the septum, pointing to image left-up in the heart frame.
    s["rv_dir"] = np.pi + 0.35 + _u(rng, -0.25, 0.25)
    s["rv_h"] = _u(rng, 18, 27) * (_u(rng, 0.55, 0.75) if es else 1.0)
    s["rv_w"], s["rv_p"] = _u(rng, 1.4, 1.9), _u(rng, 0.5, 0.9)
    s["rv_end"], s["rv_wall"] = _u(rng, 0.85, 1.15), _u(rng, 1.5, 2.5)
    s["rv_c"] = sh.random_harmonics(rng, 0.15, 3)
    s["fat_t"], s["fat_c"] = _u(rng, 2.0, 6.0), sh.random_harmonics(rng, 1.2, 3)
    # Papillary muscles opposite the septum; labelled LV as in ACDC.
    s["pap"] = [(s["rv_dir"] + np.pi + sgn * _u(rng, 0.6, 1.0), _u(rng, 0.5, 0.7), _u(rng, 2.5, 4.0))
                for sgn in (-1, 1)]
    s["pap_end"] = _u(rng, 0.55, 0.85)
    # Slices without LV, as in ACDC stacks: one above the mitral valve, one through the apical cap.
    extra = d >= 5 and extra_slices
    s["atrial"], s["cap"] = bool(rng.random() < 0.4) and extra, bool(rng.random() < 0.3) and extra
    s["ao_off"], s["ao_r"] = complex(_u(rng, -4, 2), _u(rng, -6, 0)) / 20, _u(rng, 0.5, 0.62)
    s["la_off"], s["la_r"] = complex(_u(rng, 2, 12), _u(rng, 22, 30)) / 20, _u(rng, 0.8, 1.05)
    s["ra_off"], s["ra_r"] = complex(_u(rng, -34, -26), _u(rng, 6, 14)) / 20, _u(rng, 0.7, 0.95)
    s["la_c"], s["ra_c"] = sh.random_harmonics(rng, 0.15), sh.random_harmonics(rng, 0.15)
    s["cap_r"] = wall * _u(rng, 0.9, 1.3) + 2.0
    s["lvot"] = bool(rng.random() < 0.35)  # basal slice cut through the outflow tract: open myocardial ring
    s["lvot_dir"], s["lvot_gap"] = s["rv_dir"] + _u(rng, 0.5, 0.9), _u(rng, 0.35, 0.55)
    # Thorax: body with subcutaneous fat and muscle, lungs, liver (lower slices), spine, aorta.
    s["body"] = (complex(-22 + _u(rng, -5, 5), 8 + _u(rng, -4, 4)), _u(rng, 95, 112), _u(rng, 70, 84),
                 _u(rng, -0.1, 0.1), sh.random_harmonics(rng, 0.05))
    s["subcut"], s["muscle"] = _u(rng, 3, 9), _u(rng, 5, 10)
    s["layer_c"] = sh.random_harmonics(rng, 0.5, 3)
    s["lung_l"] = (complex(46 + _u(rng, -5, 5), -4 + _u(rng, -6, 6)), _u(rng, 32, 40), _u(rng, 55, 66),
                   _u(rng, -0.3, 0.3), sh.random_harmonics(rng, 0.12))
    s["lung_r"] = (complex(-78 + _u(rng, -5, 5), -6 + _u(rng, -6, 6)), _u(rng, 33, 40), _u(rng, 55, 66),
                   _u(rng, -0.3, 0.3), sh.random_harmonics(rng, 0.12))
    # Pulmonary vessels: small grey dots inside the lungs (offsets relative to each lung centre).
    s["vessels"] = [(complex(*rng.uniform(-0.6, 0.6, 2)), _u(rng, 1.2, 2.5)) for _ in range(8)]
    s["liver"] = (complex(-55 + _u(rng, -8, 8), 48 + _u(rng, -6, 6)), _u(rng, 45, 60), _u(rng, 35, 45),
                  _u(rng, -0.3, 0.3), sh.random_harmonics(rng, 0.1))
    s["liver_t0"] = _u(rng, 0.2, 0.55)
    spine = complex(-18 + _u(rng, -5, 5), 64 + _u(rng, -4, 4))
    s["spine"], s["spine_r"], s["canal_r"] = spine, _u(rng, 9, 12), _u(rng, 3, 4.5)
    s["aorta"], s["aorta_r"] = complex(6 + _u(rng, -6, 6), 46 + _u(rng, -4, 4)), _u(rng, 7, 10)
    # bSSFP-like contrast: blood and fat bright, myocardium and muscle dark, lungs black.
    blood = _u(rng, 0.8, 1.0)
    s["val"] = {"blood": blood, "rv_blood": blood * _u(rng, 0.9, 1.05), "aorta": blood * _u(rng, 0.85, 1.05),
                "myo": _u(rng, 0.18, 0.32), "fat": _u(rng, 0.65, 0.95), "muscle": _u(rng, 0.2, 0.32),
                "tissue": _u(rng, 0.2, 0.35), "lung": _u(rng, 0.02, 0.07), "liver": _u(rng, 0.4, 0.58),
                "vessel": _u(rng, 0.3, 0.6), "spine": _u(rng, 0.35, 0.55), "csf": _u(rng, 0.7, 0.95)}
    s["gamma"] = _u(rng, 0.8, 1.25)
    s["noise"], s["bias_amp"] = _u(rng, 0.025, 0.06), _u(rng, 0.1, 0.35)
    s["bias_grid"], s["bias_ramp"] = rng.standard_normal((4, 4)), _u(rng, 0.0, 0.25) * np.exp(1j * _u(rng, 0, 6.3))
    # Per-slice geometry: breath-hold misregistration, outline jitter, through-plane blur.
    s["jitter"] = rng.normal(0, 1.0, (d, 2))
    s["endo_j"] = [sh.random_harmonics(rng, 0.03) for _ in range(d)]
    s["psf"] = rng.uniform(0.7, 1.2, d)
    return s


def _slice_plan(s: dict) -> list[tuple[str, float]]:
    """(kind, long-axis position) per slice: optional atrial slice, ventricular slices base->apex, apical cap."""
    d, top, cap = s["n_slices"], int(s["atrial"]), int(s["cap"])
    n_lv = d - top - cap
    plan = [("atrial", -0.2)] * top + [("ventricle", j / max(n_lv - 1, 1)) for j in range(n_lv)]
    return plan + [("apical_cap", 1.1)] * cap


def _paint_ventricles(img, labels, grid, centre, s, i, t, k) -> None:
    """Short-axis cut through the ventricles at position t (0 base, 1 apex): RV, myocardium, LV, papillaries."""
    v = s["val"]
    r, u = sh.polar(grid, centre, s["heart_rot"])
    r_lv = s["r_base"] * np.sqrt(max(1.0 - (s["ell"] * t) ** 2, 0.0))
    endo_c = (1 - t) * s["endo_a"] + t * s["endo_b"] + s["endo_j"][i]
    r_endo = r_lv * (1.0 + sh.harmonics(u, endo_c))
    r_epi = r_endo + s["wall"] * (1.0 + sh.harmonics(u, s["wall_c"]))
    height = s["rv_h"] * max(1 - t / s["rv_end"], 0.0) ** 0.6
    labels[sh.paint_rv(img, r, u, r_epi, s, height, s["rv_w"] * (1 - 0.35 * t), k)] = LABELS["rv"]
    alpha_myo = sh.coverage(r - r_epi, k)
    gap = np.zeros(grid.shape, bool)
    if i == int(s["atrial"]) and s["lvot"]:  # basal cut through the outflow tract opens the ring
        off = np.arccos(np.clip((u * np.complex64(np.exp(-1j * s["lvot_dir"]))).real, -1, 1))
        alpha_gap = np.clip(0.5 + (s["lvot_gap"] - off) * r * k, 0, 1)
        gap = off < s["lvot_gap"]
        sh.paint(img, sh.coverage(r - r_epi - 10.0, k) * alpha_gap, v["blood"])
        labels[(r < r_epi + 10.0) & gap] = LABELS["background"]
        alpha_myo = alpha_myo * (1 - alpha_gap)
    sh.paint(img, alpha_myo, v["myo"])
    labels[(r < r_epi) & ~gap] = LABELS["myo"]
    alpha_lv = sh.coverage(r - r_endo, k)
    sh.paint(img, alpha_lv, v["blood"] * (1 - 0.12 * t))  # slower apical flow is a little darker
    labels[r < r_endo] = LABELS["lv"]
    if t < s["pap_end"]:
        for ang_p, rho, rad in s["pap"]:
            dist = min(rho * r_lv, r_lv - 0.6 * rad)
            if dist > rad:
                pc = centre + dist * np.exp(1j * (ang_p + s["heart_rot"]))
                sh.paint(img, sh.coverage(sh.star_distance(grid, pc, rad), k) * alpha_lv, v["myo"] * 1.15)


def _render_slice(grid, maps, s, i, kind, t, k):
    """Noise-free intensity (H, W) float32 and ACDC labels (H, W) uint8 of slice i."""
    img = sh.paint_thorax(grid, maps, s, t, k)
    labels = np.zeros(grid.shape, np.uint8)
    centre = s["drift"] * t + complex(*s["jitter"][i])
    if kind == "atrial":  # above the mitral valve ACDC labels no LV: atria, aortic root, RV outflow
        rv, chambers = sh.paint_atria(img, grid, centre, s, k)
        labels[rv & ~chambers] = LABELS["rv"]
    elif kind == "ventricle":
        _paint_ventricles(img, labels, grid, centre, s, i, t, k)
    else:  # below the cavity: only the myocardial cap of the apex
        dist = sh.star_distance(grid, centre, s["cap_r"], None, 0.0, s["endo_j"][i])
        sh.paint(img, sh.coverage(dist - s["fat_t"] * 0.5, k), s["val"]["fat"])
        sh.paint(img, sh.coverage(dist, k), s["val"]["myo"])
        labels[dist < 0] = LABELS["myo"]
    return img, labels


def draw_n_slices(seed: int, index: int) -> int:
    """Number of slices of volume `index`, without rendering it (the first draw of its generator)."""
    return int(np.random.default_rng([seed, index]).integers(MIN_SLICES, MAX_SLICES + 1))


def render_cardiac_volume(rng_or_seed, size: int = 128, n_slices: int | None = None, phase: str | None = None,
                          noise: float = 1.0, bias: float = 1.0, extra_slices: bool = True):
    """Render one ACDC-like short-axis cine volume (Bernard et al. 2018): image, labels and parameters.

    `rng_or_seed` is anything ``np.random.default_rng`` accepts (``[seed, index]`` in the datasets);
    `noise` and `bias` scale the drawn Rician noise level and bias-field amplitude (0 turns them off);
    `extra_slices` allows, as in ACDC stacks, a slice above the mitral valve and one through the apical
    cap, neither with an LV label (``meta["kinds"]`` says which slice is which).
    Returns ``volume`` float32 (D, H, W) in [0, 1] (per-volume percentile normalisation as in ACDC
    preprocessing), ``labels`` uint8 (D, H, W) with values in {0, 1, 2, 3}, and a ``meta`` dict.
    """
    if size < 32:
        raise InputError(f"phantom size {size} is too small", hint="use --size 32 or more")
    if n_slices is not None and n_slices < 2:
        raise InputError(f"n_slices={n_slices} is too few", hint="use 2 or more slices (ACDC has 6-10)")
    if phase not in (None, "ED", "ES"):
        raise InputError(f"unknown cardiac phase {phase!r}", hint="use 'ED', 'ES' or leave it random")
    rng = np.random.default_rng(rng_or_seed)
    s = _draw_scene(rng, n_slices, phase, extra_slices)
    noise_rng = np.random.default_rng(rng.integers(2**63))  # size-dependent draws live on their own stream
    d = s["n_slices"]
    grid = sh.pixel_grid(size, s["rotation"], s["shift"], s["scale"])
    k = s["scale"] * size / sh.CANONICAL_FOV  # output pixels per scene unit
    maps = sh.thorax_maps(grid, s, k)
    plan = _slice_plan(s)
    # Coil sensitivity: one smooth multiplicative field for the whole stack.
    img_axis = (np.arange(size, dtype=np.float32) + 0.5) / size - 0.5
    ramp = s["bias_ramp"].real * img_axis[None, :] + s["bias_ramp"].imag * img_axis[:, None]
    field = sh.smooth_field(s["bias_grid"] / max(s["bias_grid"].std(), 1e-6), size)
    bias_field = np.exp(bias * (s["bias_amp"] * field + 2 * ramp)).astype(np.float32)
    volume = np.empty((d, size, size), np.float32)
    labels = np.empty((d, size, size), np.uint8)
    for i, (kind, t) in enumerate(plan):
        img, labels[i] = _render_slice(grid, maps, s, i, kind, t, k)
        texture = sh.smooth_field(noise_rng.standard_normal((6, 6)), size)
        img *= 1.0 + 0.04 * texture
        sigma = (s["psf"][i] + 0.8 * min(max(t, 0), 1)) * size / sh.CANONICAL_FOV  # apex: more through-plane blur
        if sigma > 0.3:
            img = cv2.GaussianBlur(img, (0, 0), sigma)
        volume[i] = sh.rician(img * bias_field, noise * s["noise"], noise_rng)
    lo, hi = np.percentile(volume, [0.5, 99.5])
    volume = np.clip((volume - lo) / max(hi - lo, 1e-6), 0.0, 1.0) ** s["gamma"]
    meta = {"n_slices": d, "phase": s["phase"], "scale": s["scale"],
            "rotation_deg": float(np.degrees(s["rotation"])), "noise_sigma": noise * s["noise"],
            "bias_amp": bias * s["bias_amp"], "has_lvot": int(s["lvot"]),
            "positions": [t for _, t in plan], "kinds": [kind for kind, _ in plan],
            "lv_area": [int((lab == LABELS["lv"]).sum()) for lab in labels],
            "has_rv": [int((lab == LABELS["rv"]).any()) for lab in labels]}
    assert volume.shape == labels.shape == (d, size, size)
    return volume.astype(np.float32), labels, meta


def _check_count(n_volumes: int, offset: int, size: int) -> None:
    if size < 32:
        raise InputError(f"phantom size {size} is too small", hint="use --size 32 or more")
    if n_volumes < 1 or offset < 0:
        raise InputError(f"n_volumes={n_volumes}, offset={offset}: need at least one volume and offset >= 0",
                         hint="pass --n-volumes 1 or more")


class CardiacPhantomVolumes(Dataset):
    """ACDC-like phantom volumes (Bernard et al. 2018): {"image": (1, D, H, W), "mask": (D, H, W), "meta"}.

    Volume ``j`` is ``render_cardiac_volume([seed, offset + j])``, so disjoint ``offset`` ranges give
    disjoint patients (split train/test by volume, never by slice). Rendered volumes are kept in memory.
    """

    def __init__(self, n_volumes: int = 20, size: int = 128, seed: int = 0, offset: int = 0,
                 n_slices: int | None = None, phase: str | None = None, noise: float = 1.0, bias: float = 1.0,
                 extra_slices: bool = True, cache: bool = True):
        _check_count(n_volumes, offset, size)
        self.ids = list(range(offset, offset + n_volumes))
        self.size, self.seed, self.cache = size, seed, cache
        self.kwargs = {"n_slices": n_slices, "phase": phase, "noise": noise, "bias": bias,
                       "extra_slices": extra_slices}
        self._store: dict[int, tuple] = {}

    def __len__(self) -> int:
        return len(self.ids)

    def n_slices(self, index: int) -> int:
        """Slice count of volume `index` without rendering it."""
        fixed = self.kwargs["n_slices"]
        return int(fixed) if fixed is not None else draw_n_slices(self.seed, self.ids[index])

    def volume(self, index: int) -> tuple[np.ndarray, np.ndarray, dict]:
        """Numpy volume (D, H, W) float32, labels (D, H, W) uint8 and full meta of volume `index`."""
        if index in self._store:
            return self._store[index]
        out = render_cardiac_volume([self.seed, self.ids[index]], size=self.size, **self.kwargs)
        if self.cache:
            self._store[index] = out
        return out

    def __getitem__(self, index: int) -> dict:
        vol, lab, meta = self.volume(index)
        info = {"volume": self.ids[index], "n_slices": meta["n_slices"], "phase": meta["phase"],
                "seed": self.seed, "has_lvot": meta["has_lvot"]}
        return {"image": torch.from_numpy(vol[None].copy()),  # (1, D, H, W)
                "mask": torch.from_numpy(lab.astype(np.int64)), "meta": info}  # (D, H, W)


class CardiacPhantomSlices(Dataset):
    """All short-axis slices of :class:`CardiacPhantomVolumes`: {"image": (1, H, W), "mask": (H, W), "meta"}.

    ``meta`` holds volume, slice, n_slices, position (0 base .. 1 apex of the LV cavity; -0.2 for the
    slice above the mitral valve, 1.1 for the apical cap), kind ("atrial", "ventricle", "apical_cap"),
    phase ("ED"/"ES"), has_rv and lv_area (pixels), so ``default_collate`` batches it.
    """

    def __init__(self, n_volumes: int = 20, size: int = 128, seed: int = 0, offset: int = 0, **kwargs):
        self.volumes = CardiacPhantomVolumes(n_volumes, size, seed, offset, **kwargs)
        self.index = [(v, s) for v in range(len(self.volumes)) for s in range(self.volumes.n_slices(v))]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, index: int) -> dict:
        v, s = self.index[index]
        vol, lab, meta = self.volumes.volume(v)
        info = {"volume": self.volumes.ids[v], "slice": s, "n_slices": meta["n_slices"],
                "position": float(meta["positions"][s]), "kind": meta["kinds"][s], "phase": meta["phase"],
                "has_rv": meta["has_rv"][s], "lv_area": meta["lv_area"][s]}
        return {"image": torch.from_numpy(vol[s][None].copy()),  # (1, H, W)
                "mask": torch.from_numpy(lab[s].astype(np.int64)), "meta": info}  # (H, W)
