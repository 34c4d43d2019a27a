"""Drawing primitives for the bone-radiograph phantom (private to :mod:`common.data.phantoms.bone`).

A radiograph is a projection: the displayed brightness grows with the attenuation integrated along
each ray, so a long bone (a hollow cylinder of cortex around a marrow cavity) shows chord lengths
through a tube -- brightest at the cortex edges, darker over the canal. Everything here works in
image-normalised coordinates (the image spans [-1, 1] on both axes, pixel centres) so one scene
renders identically at 128 or 320 px. Background on projection radiography: Bushberg et al.,
"The Essential Physics of Medical Imaging" (ch. 7); MURA dataset: Rajpurkar et al. 2017,
https://arxiv.org/abs/1712.06957.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

CORNERS = ("tl", "tr", "bl", "br")


@dataclass
class Segment:
    """One bone (or soft-tissue envelope) as a body of revolution around a straight axis."""

    cx: float  # axis centre, normalised image coordinates
    cy: float
    theta: float  # axis direction, radians (0 = +x)
    half_len: float
    r_shaft: float  # radius in the diaphysis
    r_end_a: float  # radius of the end at u = -half_len (epiphysis)
    r_end_b: float  # radius of the end at u = +half_len
    cortex: float = 0.4  # cortical thickness as a fraction of r_shaft
    bow: float = 0.0  # lateral bowing at mid-shaft, as a fraction of half_len
    lesionable: bool = True  # long enough to carry a shaft lesion

    def moved(self, rot: float, scale: float, tx: float, ty: float) -> "Segment":
        """The segment after the similarity transform x -> scale * R(rot) x + t."""
        c, s = np.cos(rot), np.sin(rot)
        k = scale
        return Segment(k * (c * self.cx - s * self.cy) + tx, k * (s * self.cx + c * self.cy) + ty,
                       self.theta + rot, k * self.half_len, k * self.r_shaft, k * self.r_end_a,
                       k * self.r_end_b, self.cortex, self.bow, self.lesionable)

    def point(self, u: float, v: float = 0.0) -> tuple[float, float]:
        """Image coordinates of the local point (u along the axis, v across it)."""
        c, s = np.cos(self.theta), np.sin(self.theta)
        return self.cx + u * c - v * s, self.cy + u * s + v * c


def grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Normalised pixel-centre coordinates as broadcastable rows/columns: X (1, W), Y (H, 1)."""
    c = ((np.arange(size, dtype=np.float32) + 0.5) * (2.0 / size) - 1.0).astype(np.float32)
    return c[None, :], c[:, None]


def smoothstep(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def local_coords(seg: Segment, X: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Axis coordinate u and signed distance v from the axis, each (H, W)."""
    c, s = np.float32(np.cos(seg.theta)), np.float32(np.sin(seg.theta))
    dx, dy = X - np.float32(seg.cx), Y - np.float32(seg.cy)
    return dx * c + dy * s, dy * c - dx * s


def tube(seg: Segment, u: np.ndarray, v: np.ndarray):
    """Chord lengths through a hollow tube of revolution: (outer, inner, epiphysis weight w).

    The radius flares from the shaft to the ends (epiphyses) and closes with a rounded cap; the
    cortex is thick in the shaft and thin at the ends, where cancellous bone fills the inside.
    """
    h = seg.half_len
    if seg.bow:
        v = v - np.float32(seg.bow * h) * (1.0 - np.clip(u / h, -1.0, 1.0) ** 2)
    au = np.abs(u)
    r_end = np.where(u < 0, np.float32(seg.r_end_a), np.float32(seg.r_end_b))
    flare = np.minimum(2.5 * r_end, 0.9 * h)  # metaphysis length scales with the joint end
    w = smoothstep((au - (h - flare)) / flare)
    R = seg.r_shaft + (r_end - seg.r_shaft) * w
    cap = 0.9 * r_end
    e = np.maximum(au - (h - cap), 0.0) / cap
    R = R * np.sqrt(np.clip(1.0 - e * e, 0.0, 1.0))
    r_in = np.maximum(R - (seg.cortex * seg.r_shaft * (1.0 - w) + 0.12 * R * w), 0.0)
    v2 = v * v
    outer = 2.0 * np.sqrt(np.maximum(R * R - v2, 0.0))
    inner = 2.0 * np.sqrt(np.maximum(r_in * r_in - v2, 0.0))
    return outer, inner, w


def ellipse_q(X, Y, cx, cy, a, b, theta) -> np.ndarray:
    """Normalised elliptic radius squared: q < 1 inside the ellipse (semi-axes a along theta, b across)."""
    c, s = np.float32(np.cos(theta)), np.float32(np.sin(theta))
    dx, dy = X - np.float32(cx), Y - np.float32(cy)
    return ((dx * c + dy * s) / np.float32(a)) ** 2 + ((dy * c - dx * s) / np.float32(b)) ** 2


def line_distance(u, v, p0, p1) -> np.ndarray:
    """Distance from each (u, v) to the line segment p0-p1 (local coordinates)."""
    du, dv = p1[0] - p0[0], p1[1] - p0[1]
    t = np.clip(((u - p0[0]) * du + (v - p0[1]) * dv) / (du * du + dv * dv + 1e-12), 0.0, 1.0)
    return np.sqrt((u - p0[0] - t * du) ** 2 + (v - p0[1] - t * dv) ** 2)


def smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Band-limited noise in [-1, 1]-ish: a coarse random grid upsampled bicubically, (H, W)."""
    coarse = rng.standard_normal((cells, cells)).astype(np.float32)
    return cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)


def collimation(rng: np.random.Generator, X, Y) -> tuple[np.ndarray, float]:
    """Soft-edged field mask of a slightly tilted collimator rectangle; 1 inside, 0 on the shutters."""
    edges = [rng.uniform(0.72, 0.97) if rng.random() < 0.5 else 1.5 for _ in range(4)]
    tilt = np.float32(rng.uniform(-0.05, 0.05))
    xr, yr = X + tilt * Y, Y - tilt * X
    soft = np.float32(0.01)
    inside = (smoothstep((xr + edges[0]) / soft) * smoothstep((edges[1] - xr) / soft)
              * smoothstep((yr + edges[2]) / soft) * smoothstep((edges[3] - yr) / soft))
    level = rng.uniform(0.6, 0.95) if rng.random() < 0.6 else rng.uniform(0.0, 0.05)
    return inside.astype(np.float32), float(level)


def text_layer(size: int, text: str, corner: str | None, rng: np.random.Generator,
               scale_range=(0.45, 0.7), boxed: bool = False):
    """Anti-aliased text drawn with cv2.putText; returns (layer (H, W) in [0, 1], (x0, y0, x1, y1)).

    corner places it in that image corner; None centres it on a random image edge.
    """
    k = size / 128.0
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = k * rng.uniform(*scale_range)
    thick = max(1, int(round(k * rng.uniform(1.0, 2.2))))
    (tw, th), base = cv2.getTextSize(text, font, scale, thick)
    pad = max(1, int(round(2 * k)))
    margin = int(round(size * rng.uniform(0.02, 0.07)))
    bw, bh = tw + 2 * pad, th + base + 2 * pad
    if corner is None:
        side = rng.integers(4)
        mid_x, mid_y = (size - bw) // 2, (size - bh) // 2
        x0, y0 = [(mid_x, margin), (mid_x, size - margin - bh), (margin, mid_y),
                  (size - margin - bw, mid_y)][side]
        x0 += int(rng.integers(-size // 8, size // 8 + 1)) if side < 2 else 0
        y0 += int(rng.integers(-size // 8, size // 8 + 1)) if side >= 2 else 0
    else:
        x0 = margin if corner[1] == "l" else size - margin - bw
        y0 = margin if corner[0] == "t" else size - margin - bh
    canvas = np.zeros((size, size), np.uint8)
    cv2.putText(canvas, text, (x0 + pad, y0 + pad + th), font, scale, 255, thick, cv2.LINE_AA)
    if boxed:
        cv2.rectangle(canvas, (x0, y0), (x0 + bw - 1, y0 + bh - 1), 255, max(1, thick // 2),
                      cv2.LINE_AA)
    box = (max(x0, 0), max(y0, 0), min(x0 + bw, size), min(y0 + bh, size))
    return canvas.astype(np.float32) * np.float32(1 / 255), box


# ---------------------------------------------------------------- bone, lesions and look-alikes

def shaft_range(seg: Segment) -> tuple[float, float]:
    """Axis interval of the diaphysis, where shaft lesions and nutrient canals sit."""
    return -seg.half_len + 2.8 * seg.r_end_a, seg.half_len - 2.8 * seg.r_end_b


def sample_lesion(rng: np.random.Generator, kind: str, seg: Segment, u0: float, px: float) -> dict:
    """Random parameters of one lesion of `kind` centred at axis position u0 of `seg`."""
    r, sign = seg.r_shaft, lambda: float(rng.choice((-1.0, 1.0)))
    if kind == "fracture":
        width = max(1.0 * px, 0.14 * r)
        return dict(kind=kind, u0=u0, psi=rng.uniform(-0.6, 0.6), alpha=sign() * rng.uniform(0.05, 0.2),
                    dv=sign() * rng.uniform(0.25, 0.6) * r, du=rng.uniform(0.0, 0.35) * r,
                    width=width, depth=rng.uniform(0.75, 1.0), jag=rng.uniform(0.0, 0.25) * r,
                    jag_f=rng.uniform(2.0, 5.0) / r, jag_p=rng.uniform(0, 2 * np.pi),
                    half=1.5 * width + 1.5 * px)
    if kind == "lytic":
        return dict(kind=kind, u0=u0, v0=rng.uniform(-0.25, 0.25) * r, a=rng.uniform(1.2, 2.4) * r,
                    b=rng.uniform(0.55, 0.85) * r, tilt=rng.uniform(-0.3, 0.3),
                    depth=rng.uniform(0.55, 0.9), rim=rng.uniform(0.15, 0.4),
                    lobes=int(rng.integers(2, 5)), wobble=rng.uniform(0.0, 0.15),
                    phase=rng.uniform(0, 2 * np.pi))
    if kind == "hardware":
        plate = rng.random() < 0.75
        n = int(rng.integers(3, 6)) if plate else int(rng.integers(1, 3))
        # proportions of a small-fragment plate on a forearm bone: plate ~ half the bone's width
        return dict(kind=kind, u0=u0, plate=plate, half_len=rng.uniform(2.2, 3.8) * r,
                    pw=rng.uniform(0.7, 1.0) * r, pv=rng.uniform(-0.5, 0.5) * r,
                    n=n, sw=max(1.5 * px, rng.uniform(0.3, 0.45) * r),
                    level=rng.uniform(0.85, 1.0), tilt=rng.uniform(-0.25, 0.25) if not plate else 0.0)
    raise ValueError(f"unknown lesion type {kind!r}")


def sample_marks(rng: np.random.Generator, seg: Segment) -> list[dict]:
    """Harmless look-alikes on a normal bone: nutrient canal, growth plate, bone island."""
    marks, r = [], seg.r_shaft
    lo, hi = shaft_range(seg)
    if rng.random() < 0.35 and hi > lo:  # nutrient canal: oblique dark channel through one cortex
        u, side, ang = rng.uniform(lo, hi), float(rng.choice((-1.0, 1.0))), rng.uniform(0.3, 0.7)
        length = rng.uniform(0.8, 1.6) * r
        p0 = (u, side * 1.05 * r)
        marks.append(dict(kind="nutrient", p0=p0, p1=(u + length * np.cos(ang), p0[1] - side * length * np.sin(ang)),
                          width=0.06 * r, depth=rng.uniform(0.3, 0.6)))
    if rng.random() < 0.3:  # physis: a wavy transverse line in the metaphysis, near a joint end
        end = float(rng.choice((-1.0, 1.0)))
        r_end = seg.r_end_b if end > 0 else seg.r_end_a
        marks.append(dict(kind="physis", u=end * (seg.half_len - rng.uniform(1.0, 1.6) * r_end),
                          width=0.07 * r_end, depth=rng.uniform(0.3, 0.6), amp=rng.uniform(0.05, 0.15) * r_end,
                          f=rng.uniform(2.0, 4.0) / r_end))
    if rng.random() < 0.25 and hi > lo:  # bone island: small dense spot
        marks.append(dict(kind="island", u=rng.uniform(lo, hi), v=rng.uniform(-0.4, 0.4) * r,
                          a=rng.uniform(0.2, 0.45) * r, gain=rng.uniform(0.2, 0.45)))
    return marks


def _darken_line(dist, width, depth):
    return 1.0 - np.float32(depth) * np.exp(-0.5 * (dist / np.float32(width)) ** 2)


def window(seg: Segment, X, Y, pad: float = 0.0) -> tuple[slice, slice]:
    """Row/column slices of the pixels a segment can touch (its bounding box plus pad)."""
    reach = max(seg.r_shaft, seg.r_end_a, seg.r_end_b) + pad
    ends = [seg.point(-seg.half_len), seg.point(seg.half_len)]
    bow = abs(seg.bow) * seg.half_len
    x0, x1 = min(e[0] for e in ends) - reach - bow, max(e[0] for e in ends) + reach + bow
    y0, y1 = min(e[1] for e in ends) - reach - bow, max(e[1] for e in ends) + reach + bow
    xs, ys = X[0], Y[:, 0]
    return (slice(int(np.searchsorted(ys, y0)), int(np.searchsorted(ys, y1))),
            slice(int(np.searchsorted(xs, x0)), int(np.searchsorted(xs, x1))))


def render_segment(seg: Segment, X, Y, tex, marks=(), lesion: dict | None = None):
    """Bone attenuation of one segment, its footprint, the lesion's metal layer and mask, on the
    window `win` = (row slice, column slice) of the image that the segment can touch.

    Attenuation is chord length weighted by density: cortex 1, marrow 0.3, cancellous 0.55.
    """
    # a displaced fragment or a plate can reach past the intact outline: pad the window for lesions
    win = window(seg, X, Y, pad=seg.r_shaft if lesion else 0.0)
    X, Y, tex = X[:, win[1]], Y[win[0], :], tex[win]
    u, v = local_coords(seg, X, Y)
    kind = lesion["kind"] if lesion else None
    if kind == "fracture":
        L = lesion
        outer0 = tube(seg, u, v)[0]
        cp, sp = np.float32(np.cos(L["psi"])), np.float32(np.sin(L["psi"]))
        s = (u - L["u0"]) * cp + v * sp
        s = s + np.float32(L["jag"]) * np.sin(v * np.float32(L["jag_f"]) + np.float32(L["jag_p"]))
        ca, sa = np.float32(np.cos(L["alpha"])), np.float32(np.sin(L["alpha"]))
        du = u - L["u0"]
        # distal fragment: rotated about the fracture point and shifted (angulation + displacement)
        u = np.where(s > 0, L["u0"] + du * ca - v * sa - L["du"], u)
        v = np.where(s > 0, du * sa + v * ca - L["dv"], v)
    outer, inner, w = tube(seg, u, v)
    bone = (outer - inner) + inner * (0.3 * (1.0 - w) + 0.55 * w * (1.0 + 0.35 * tex))
    for m in marks:
        if m["kind"] == "nutrient":
            bone = bone * _darken_line(line_distance(u, v, m["p0"], m["p1"]), m["width"], m["depth"])
        elif m["kind"] == "physis":
            d = np.abs(u - m["u"] - m["amp"] * np.sin(v * np.float32(m["f"])))
            bone = bone * _darken_line(d, m["width"], m["depth"])
        else:  # island
            q = ((u - m["u"]) ** 2 + (v - m["v"]) ** 2) / np.float32(m["a"] ** 2)
            bone = bone * (1.0 + np.float32(m["gain"]) * np.sqrt(np.clip(1.0 - q, 0.0, 1.0)))
    foot = outer > 0
    metal, mask = None, None
    if kind == "fracture":
        bone = bone * _darken_line(s, L["width"], L["depth"])
        mask = (np.abs(s) <= L["half"]) & (foot | (outer0 > 0))
    elif kind == "lytic":
        L = lesion
        du, dv = u - L["u0"], v - L["v0"]
        ct, st = np.float32(np.cos(L["tilt"])), np.float32(np.sin(L["tilt"]))
        a, b = du * ct + dv * st, dv * ct - du * st
        ang = np.arctan2(b / L["b"], a / L["a"])
        # lobulated outline: the radius wobbles with angle (geographic lytic lesions are not ellipses)
        wobble = 1.0 + L["wobble"] * np.sin(L["lobes"] * ang + L["phase"])
        rho = np.sqrt((a / L["a"]) ** 2 + (b / L["b"]) ** 2) / wobble
        hole = 1.0 - np.float32(L["depth"]) * np.sqrt(np.clip(1.0 - rho * rho, 0.0, 1.0))
        rim = 1.0 + np.float32(L["rim"]) * np.exp(-0.5 * ((rho - 1.0) / 0.12) ** 2)
        bone = bone * hole * rim
        mask = (rho <= 1.0) & foot
    elif kind == "hardware":
        L = lesion
        du = u - L["u0"]
        screws = np.zeros(u.shape, bool)
        offsets = np.linspace(-1.0, 1.0, L["n"]) * (L["half_len"] - L["pw"]) if L["n"] > 1 else [0.0]
        reach = 1.2 * seg.r_shaft
        for off in offsets:
            su = du - off - v * np.float32(np.tan(L["tilt"]))
            screws |= (np.abs(su) <= L["sw"] / 2) & (np.abs(v) <= reach)
        metal = screws
        if L["plate"]:
            along = np.maximum(np.abs(du) - (L["half_len"] - L["pw"] / 2), 0.0)
            metal = metal | (along ** 2 + (v - L["pv"]) ** 2 <= (L["pw"] / 2) ** 2)
        mask = metal
        metal = metal.astype(np.float32) * np.float32(L["level"])
    return win, bone, foot, metal, mask
