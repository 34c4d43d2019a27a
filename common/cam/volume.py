"""Maps of volumes: written as NIfTI with the input's affine, and drawn as a panel of slices.

``explain`` on a (B, C, D, H, W) input returns maps (B, D, H, W) in the input's voxel order. A volume read with
:func:`common.io.nifti.read_nifti_volume` keeps NIfTI's stored order (x, y, z) and its affine; fed to the model in
that order, its map is written back with the same affine (:func:`save_map_nifti`), so a viewer overlays the two
voxel for voxel in world coordinates.

    vol, affine = read_nifti_volume(path)                         # (x, y, z), (4, 4)
    _, maps = explain(model3d, torch.from_numpy(vol)[None, None], ("gradcam",), layers)
    save_map_nifti(out / "gradcam.nii.gz", maps["gradcam"]["c2"][0], affine)
    slice_panel(vol, {"Grad-CAM": maps["gradcam"]["c2"][0]}, out / "gradcam_slices.png", axis=2)
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import torch

from common.io.nifti import write_nifti
from common.viz import image_grid


def _numpy(a) -> np.ndarray:
    return a.detach().float().cpu().numpy() if torch.is_tensor(a) else np.asarray(a, np.float32)


def save_map_nifti(path: str | Path, volume_map, affine: np.ndarray | None = None) -> Path:
    """One map volume (3 dims, the input's voxel order) as NIfTI with ``affine`` (the input's; identity if None)."""
    m = _numpy(volume_map)
    if m.ndim != 3:
        raise ValueError(f"a map volume has 3 dimensions, got {m.shape}")
    return write_nifti(Path(path), m, affine)


def slice_indices(depth: int, n: int) -> list[int]:
    """n slice indices spread evenly over a depth (all of them if n >= depth)."""
    return sorted({int(round(i)) for i in np.linspace(0, depth - 1, min(n, depth))})


def slice_panel(volume, maps: Mapping[str, object], path: str | Path, axis: int = 0, n: int = 6,
                masks: Sequence | None = None, title: str | None = None) -> Path:
    """A row per map, a column per slice along ``axis``: the volume's slice with the map over it, one colour bar.

    volume (3 dims) and each map (the same 3 dims) in any voxel order; ``masks``: volumes outlined on every slice.
    """
    vol = _numpy(volume)
    arrays = {name: _numpy(m) for name, m in maps.items()}
    for name, m in arrays.items():
        if m.shape != vol.shape:
            raise ValueError(f"map {name!r} {m.shape} vs volume {vol.shape}")
    lo, hi = float(vol.min()), float(vol.max())
    vol = (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)
    picks = slice_indices(vol.shape[axis], n)
    cells, heat, titles, outlines = [], [], [], []
    for name, m in arrays.items():
        for k in picks:
            cells.append(np.take(vol, k, axis=axis))
            heat.append(np.take(m, k, axis=axis))
            titles.append(f"{name}, slice {k}")
            outlines.append([np.take(_numpy(s), k, axis=axis) > 0.5 for s in masks or []])
    return image_grid(cells, path, titles, ncols=len(picks), heatmaps=heat, masks=outlines if masks else None,
                      shared_colorbar="map value (0-1)", row_labels=list(arrays), suptitle=title)
