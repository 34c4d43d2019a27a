"""Figures: heatmap overlays, mask contours, image grids and curves with mean ± std bands.

Headless (Agg) and every figure is closed after saving, so long runs don't accumulate memory.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import matplotlib

if not os.environ.get("DISPLAY") or os.environ.get("MPLBACKEND", "").lower() == "agg":
    matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from common.io.atomic import atomic_path  # noqa: E402

MASK_COLOURS = ("#00ff00", "#ff3030", "#30a0ff", "#ffd000", "#ff00ff", "#00ffff")
# show_image draws masks[k] in MASK_COLOURS[k] and boxes[k] in BOX_COLOURS[k]
BOX_COLOURS = MASK_COLOURS[1:] + MASK_COLOURS[:1]
HEATMAP_LABEL = "map value (min-max scaled to [0, 1])"


def _as_rgb(image: np.ndarray) -> np.ndarray:
    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = np.moveaxis(img, 0, -1)  # (C, H, W) tensors straight from a dataset
    if img.ndim == 3 and img.shape[-1] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=-1)
    low, high = float(img.min()), float(img.max())
    if low < 0 or high > 1:
        img = (img - low) / (high - low + 1e-12)
    return np.clip(img, 0, 1)


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45, cmap: str = "jet") -> np.ndarray:
    """Blend a [0, 1] heatmap (H, W) over a gray or RGB image -> RGB float (H, W, 3)."""
    base = _as_rgb(image)
    heat = np.asarray(heatmap, dtype=np.float32)
    if heat.shape != base.shape[:2]:
        raise ValueError(f"heatmap {heat.shape} and image {base.shape[:2]} differ in size")
    colour = plt.get_cmap(cmap)(np.clip(heat, 0, 1))[..., :3]
    return np.clip((1 - alpha) * base + alpha * colour, 0.0, 1.0)


def save_figure(fig, path: str | Path, dpi: int = 120) -> Path:
    """Save atomically as PNG and close the figure."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    finally:
        plt.close(fig)
    return path


def heatmap_scale(cmap: str = "jet"):
    """The [0, 1] colour scale of the heatmaps ``overlay`` draws, for a colour bar."""
    return matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap=cmap)


def show_image(ax, image, title: str | None = None, heatmap=None, masks: Sequence | None = None,
               boxes: Sequence | None = None, alpha: float = 0.45, cmap: str = "jet", colorbar: bool = False,
               colorbar_label: str | None = None):
    """Draw an image on ``ax`` with an optional heatmap (+colour bar), mask contours and boxes (x0, y0, x1, y1)."""
    shown = overlay(image, heatmap, alpha, cmap) if heatmap is not None else _as_rgb(image)
    ax.imshow(shown, interpolation="nearest")
    if heatmap is not None and colorbar:
        bar = ax.figure.colorbar(heatmap_scale(cmap), ax=ax, fraction=0.046, pad=0.04)
        if colorbar_label:
            bar.set_label(colorbar_label, fontsize=8)
    for k, mask in enumerate(masks or []):
        m = np.asarray(mask)
        if m.any():
            ax.contour(m.astype(float), levels=[0.5], colors=[MASK_COLOURS[k % len(MASK_COLOURS)]], linewidths=1.2)
    for k, box in enumerate(boxes or []):
        if box is None:
            continue
        x0, y0, x1, y1 = box
        ax.add_patch(matplotlib.patches.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                                  edgecolor=BOX_COLOURS[k % len(BOX_COLOURS)], linewidth=1.5))
    if title:
        ax.set_title(title, fontsize=9)
    ax.set_axis_off()
    return ax


def image_grid(images: Sequence, path: str | Path, titles: Sequence[str] | None = None, ncols: int = 4,
               heatmaps: Sequence | None = None, masks: Sequence[Sequence] | None = None,
               boxes: Sequence[Sequence] | None = None, suptitle: str | None = None, colorbar: bool = False,
               cell: float = 2.6, shared_colorbar: str | None = None,
               legend: Sequence[tuple[str, str]] | None = None, row_labels: Sequence[str] | None = None) -> Path:
    """A grid of images with optional per-image heatmaps, mask contours and boxes, saved as PNG.

    colorbar: a colour bar beside every heatmap; shared_colorbar: instead one for the whole grid, labelled with
    this text. legend: (label, colour) pairs, e.g. what each outline colour means, drawn under the grid (a
    ``"box: "`` prefix draws the entry as a rectangle, otherwise as a line). row_labels: one per row, at its left.
    """
    n = len(images)
    if n == 0:
        raise ValueError("image_grid needs at least one image")
    ncols = min(ncols, n)
    nrows = (n + ncols - 1) // ncols
    if row_labels is not None and len(row_labels) != nrows:
        raise ValueError(f"{len(row_labels)} row labels for {nrows} rows")
    fig, axes = plt.subplots(nrows, ncols, figsize=(cell * ncols, cell * nrows + (0.4 if suptitle else 0)),
                             squeeze=False)
    for k, ax in enumerate(axes.flat):
        if k >= n:
            ax.set_axis_off()
            continue
        show_image(ax, images[k], titles[k] if titles else None, heatmaps[k] if heatmaps else None,
                   masks[k] if masks else None, boxes[k] if boxes else None,
                   colorbar=colorbar and not shared_colorbar)
    for r, label in enumerate(row_labels or []):
        axes[r, 0].text(-0.06, 0.5, label, transform=axes[r, 0].transAxes, rotation=90, ha="right", va="center",
                        fontsize=9)
    if shared_colorbar and heatmaps is not None and any(h is not None for h in heatmaps):
        bar = fig.colorbar(heatmap_scale(), ax=axes.ravel().tolist(), fraction=0.025 if ncols > 2 else 0.05,
                           pad=0.02, shrink=min(1.0, 0.5 + 0.25 * nrows))
        bar.set_label(shared_colorbar)
    height = fig.get_size_inches()[1]
    if legend:
        handles = [matplotlib.patches.Patch(facecolor="none", edgecolor=colour, linewidth=1.5,
                                            label=label.removeprefix("box: ")) if label.startswith("box: ")
                   else matplotlib.lines.Line2D([], [], color=colour, linewidth=2, label=label)
                   for label, colour in legend]
        bottom = min(ax.get_position().y0 for ax in axes.flat)  # right under the last row, not at the figure's foot
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 4), frameon=False,
                   bbox_to_anchor=(0.5, bottom - 0.05 / height), fontsize=9)
    if suptitle:
        top = max(ax.get_position().y1 for ax in axes.flat)  # right above the first row's titles
        fig.suptitle(suptitle, y=top + (0.45 if titles else 0.15) / height, va="bottom")
    return save_figure(fig, path)


def curves(x: Sequence, series: dict, path: str | Path, xlabel: str, ylabel: str, title: str | None = None,
           logx: bool = False) -> Path:
    """Line plot; each series value is either a 1D array or a 2D array (runs, len(x)) drawn as mean ± std band."""
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for name, values in series.items():
        v = np.asarray(values, dtype=np.float64)
        if v.ndim == 2:
            mean, std = v.mean(0), v.std(0)
            ax.plot(x, mean, label=f"{name} (n={v.shape[0]})")
            ax.fill_between(x, mean - std, mean + std, alpha=0.2)
        else:
            ax.plot(x, v, label=name)
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)
