"""Modality gallery: real sample images shipped inside installed packages, read with common.io, and the phantoms.

The survey (Zhang et al. 2019, "A Survey on Deep Learning of Small Sample in Biomedical Image
Analysis", https://arxiv.org/abs/1908.00473) spans fundus photography, histopathology, MR, CT,
ultrasound, nuclear medicine and radiography. This script shows one real example of each that is
available offline -- scikit-image's sample images, pydicom's DICOM test files and nibabel's NIfTI test
volume -- the DICOM and NIfTI files read through ``common.io.read_image`` (CT in three windows), the
scikit-image samples as the arrays ``skimage.data`` returns -- and next to them the
three built-in phantoms with their ground truth drawn as contours. A sample whose file or decoder is
missing is skipped with a notice.

Writes ``<out>/package_data/gallery.png`` (third-party sample data: kept out of git),
``<out>/phantoms.png``, ``metrics.json`` and ``report.md``.

Usage: python MedicalImages/gallery.py --out runs/gallery [--quick]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import add_common_args, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import read_image, save_json  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.viz import image_grid  # noqa: E402

Panel = tuple[str, np.ndarray, dict]  # (title, image (H, W) or (H, W, 3) in [0, 1], facts for the table)


class SampleMissing(Exception):
    """A sample file or its decoder is not installed here: skip it with a notice."""


def notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ package samples


def skimage_panels(name: str, title: str) -> Callable[[], list[Panel]]:
    """A scikit-image sample array (uint8); some need the optional `pooch` download and are skipped."""

    def load() -> list[Panel]:
        import skimage.data

        try:
            arr = np.asarray(getattr(skimage.data, name)())
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: B036 -- under pytest, skimage turns a failed fetch into pytest.skip()
            raise SampleMissing(f"skimage.data.{name}() is not available offline ({type(exc).__name__})") from None
        facts = {"format": "array (skimage.data)", "shape": "x".join(map(str, arr.shape)), "bits": 8,
                 "photometric": "RGB" if arr.ndim == 3 else "gray"}
        return [(title, arr.astype(np.float32) / 255.0, facts)]

    return load


def dicom_panels(name: str, title: str, windows: tuple[str, ...] = (), frame: int | None = None):
    """A pydicom test file, read with common.io (optionally in several CT windows)."""

    def load() -> list[Panel]:
        try:
            from pydicom.data import get_testdata_file

            path = get_testdata_file(name, download=False)
        except Exception as exc:  # pydicom absent, or its data index changed
            raise SampleMissing(f"pydicom test file {name}: {type(exc).__name__}") from None
        if path is None:
            raise SampleMissing(f"pydicom test file {name} is not installed (it is downloaded on demand)")
        panels = []
        for window in windows or (None,):
            try:
                image, meta = read_image(path, window=window, frame=frame)
            except InputError as exc:  # e.g. a compressed transfer syntax without its decoder
                raise SampleMissing(str(exc)) from None
            facts = {"format": f"DICOM ({meta['modality']})", "shape": "x".join(map(str, image.shape)),
                     "bits": meta["bits_stored"], "photometric": meta["photometric"]}
            if "rescale_slope" in meta:
                facts["rescale"] = f"slope {meta['rescale_slope']:g}, intercept {meta['rescale_intercept']:g}"
            if window is not None:
                facts["window"] = f"{window} (C {meta['window'][0]:g}, W {meta['window'][1]:g})"
            elif meta.get("window") is not None:
                facts["window"] = f"the file's own (C {meta['window'][0]:g}, W {meta['window'][1]:g})"
            elif "rescale_slope" in meta:
                facts["window"] = "none: min-max"
            if meta["frames"] > 1:
                facts["frames"] = f"{meta['frames']} (showing {meta['frame']})"
            if meta.get("spacing"):  # PixelSpacing: row, column spacing in mm
                facts["spacing"] = "x".join(f"{v:g}" for v in meta["spacing"]) + " mm"
            label = f"{title}, {window.replace('_', ' ')} window" if window else title
            panels.append((label, image, facts))
        return panels

    return load


def nibabel_panels(name: str, title: str) -> Callable[[], list[Panel]]:
    """A NIfTI volume from nibabel's own test data, middle axial slice via common.io."""

    def load() -> list[Panel]:
        try:
            import nibabel as nib
        except ImportError:
            raise SampleMissing("nibabel is not installed") from None
        path = Path(nib.__file__).parent / "tests" / "data" / name
        if not path.is_file():
            raise SampleMissing(f"{path} is not installed (a slim nibabel build drops its test data)")
        n = nib.load(str(path)).shape[2]
        image, meta = read_image(path, slice_index=n // 2, axis=2)
        facts = {"format": "NIfTI", "shape": f"{'x'.join(map(str, meta['volume_shape']))} (slice {n // 2})",
                 "spacing": "x".join(f"{s:g}" for s in meta["spacing"]) + " mm", "photometric": "gray"}
        return [(title, image, facts)]

    return load


class Sample(NamedTuple):
    """One package sample: what it shows, where it comes from, and how to read it into panels."""

    modality: str
    source: str
    load: Callable[[], list[Panel]]


PACKAGE_SAMPLES: dict[str, Sample] = {
    "fundus": Sample("fundus photograph", "skimage.data.retina()", skimage_panels("retina", "Fundus photograph")),
    "microaneurysms": Sample("fundus (detail)", "skimage.data.microaneurysms()",
                             skimage_panels("microaneurysms", "Fundus: microaneurysms")),
    "histopathology": Sample("histopathology (IHC)", "skimage.data.immunohistochemistry()",
                             skimage_panels("immunohistochemistry", "Histopathology: IHC stain")),
    "microscopy": Sample("light microscopy", "skimage.data.cell()", skimage_panels("cell", "Microscopy: cell")),
    "skin_histology": Sample("histopathology (H&E, skin)", "skimage.data.skin()",
                             skimage_panels("skin", "Histopathology: skin (H&E)")),
    "ct": Sample("CT", "pydicom CT_small.dcm",
                 dicom_panels("CT_small.dcm", "CT", windows=("soft_tissue", "lung", "bone"))),
    "mr": Sample("MR", "pydicom MR_small.dcm", dicom_panels("MR_small.dcm", "MR (DICOM)")),
    "ultrasound": Sample("ultrasound (RGB)", "pydicom examples_rgb_color.dcm",
                         dicom_panels("examples_rgb_color.dcm", "Ultrasound, RGB")),
    "ultrasound_palette": Sample("ultrasound (palette colour)", "pydicom examples_palette.dcm",
                                 dicom_panels("examples_palette.dcm", "Ultrasound, palette colour")),
    "ultrasound_cine": Sample("ultrasound (multi-frame YBR)", "pydicom examples_ybr_color.dcm",
                              dicom_panels("examples_ybr_color.dcm", "Ultrasound cine, frame 0", frame=0)),
    "nuclear_medicine": Sample("nuclear medicine (planar bone scan)", "pydicom JPEG2000.dcm",
                               dicom_panels("JPEG2000.dcm", "NM whole-body bone scan")),
    "mr_nifti": Sample("MR (NIfTI)", "nibabel tests/data/anatomical.nii",
                       nibabel_panels("anatomical.nii", "MR (NIfTI), axial")),
}


def thumbnail(image: np.ndarray, max_side: int = 512) -> np.ndarray:
    """Area-downsample large images so the figure file stays small (display only)."""
    import cv2

    scale = max_side / max(image.shape[:2])
    if scale >= 1:
        return image
    size = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[0] * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


# ------------------------------------------------------------------ phantoms


def phantom_panels(size: int, n: int, seed: int) -> tuple[list, list, list, dict]:
    """(images, titles, contour masks, skipped) for the three phantoms; a missing phantom is skipped."""
    images, titles, masks, skipped = [], [], [], {}
    try:
        from common.data.phantoms.bone import BoneXrayPhantom

        phantom = BoneXrayPhantom(4 * n, size, seed)
        bone = [phantom[i] for i in range(len(phantom))]
        # mostly abnormal items (they carry a lesion mask to outline), plus one normal one
        abnormal = [it for it in bone if int(it["label"]) == 1]
        picked = abnormal[: n - 1] + [it for it in bone if int(it["label"]) == 0][:1]
        for item in picked:
            images.append(item["image"][0].numpy())
            lesion = item["meta"]["lesion_type"]
            note = "normal, no lesion" if lesion == "none" else f"lesion: {lesion} (green)"
            titles.append(f"Bone X-ray phantom ({item['meta']['body_part']})\n{note}")
            masks.append([item["mask"].numpy() > 0])
    except ImportError as exc:
        skipped["bone"] = f"common.data.phantoms.bone unavailable ({exc})"
    try:
        from common.data.phantoms.cardiac import CardiacPhantomSlices

        heart = CardiacPhantomSlices(n, size, seed)
        for item in (heart[i] for i in range(len(heart))):  # volumes are cached, so slices are cheap
            meta = item["meta"]
            if meta["slice"] != meta["n_slices"] // 2:
                continue
            lab = item["mask"].numpy()
            images.append(item["image"][0].numpy())
            titles.append(f"Cardiac MR phantom, {meta['phase']}, slice {meta['slice']}\nRV green, myo red, LV blue")
            masks.append([lab == 1, lab == 2, lab == 3])
    except ImportError as exc:
        skipped["cardiac"] = f"common.data.phantoms.cardiac unavailable ({exc})"
    try:
        from common.data.phantoms.fundus import FundusPhantom

        for domain in ("A", "B"):  # paired: the same eyes through both cameras
            eyes = FundusPhantom(n, size, domain, seed, paired=True)
            for i in range(len(eyes)):
                item = eyes[i]
                seg = item["seg"].numpy()
                images.append(np.moveaxis(item["image"].numpy(), 0, -1))
                titles.append(f"Fundus phantom, camera {domain}\ndisc green, cup red, vCDR {float(item['cdr']):.2f}")
                masks.append([seg >= 1, seg == 2])
    except ImportError as exc:
        skipped["fundus"] = f"common.data.phantoms.fundus unavailable ({exc})"
    return images, titles, masks, skipped


# ------------------------------------------------------------------ script


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "gallery", train=False, data_root=False)  # package samples and phantoms only
    p.add_argument("--size", type=int_at_least(32), default=128, help="phantom image side in pixels, >= 32")
    p.add_argument("--n", type=int_at_least(1), default=3, help="phantom samples per kind (one row each)")
    return parse_args(p, argv, quick=dict(n=2))


def main(args) -> dict:
    ctx = setup_run(args)
    images, titles, rows, skipped = [], [], [], {}
    for key, sample in PACKAGE_SAMPLES.items():
        try:
            panels = sample.load()
        except SampleMissing as exc:
            notice(f"skipping {key}: {exc}")
            skipped[key] = str(exc)
            continue
        for title, image, facts in panels:
            assert image.dtype == np.float32 and image.ndim in (2, 3), (key, image.shape)
            images.append(thumbnail(image))
            titles.append(f"{title}\n{sample.source}")
            rows.append({"sample": key, "modality": sample.modality, "source": sample.source, **facts})
    written = {}
    if images:
        written["gallery"] = image_grid(images, ctx.out / "package_data" / "gallery.png", titles, ncols=4,
                                        suptitle="Real sample images shipped with installed packages (via common.io)",
                                        cell=3.2)
    p_images, p_titles, p_masks, p_skipped = phantom_panels(args.size, args.n, args.seed)
    for key, reason in p_skipped.items():
        notice(f"skipping the {key} phantom: {reason}")
    if p_images:
        written["phantoms"] = image_grid(p_images, ctx.out / "phantoms.png", p_titles, ncols=args.n,
                                         masks=p_masks, cell=3.0,
                                         suptitle="Built-in phantoms with ground truth (contours)")
    rendered = sorted({r["sample"] for r in rows}, key=list(PACKAGE_SAMPLES).index)
    metrics = {"package_samples": rendered, "package_panels": len(rows), "skipped": skipped,
               "phantom_panels": len(p_images), "phantoms_skipped": p_skipped, "samples": rows,
               "files": {k: str(v.relative_to(ctx.out)) for k, v in written.items()}}
    columns = ["sample", "modality", "format", "shape", "bits", "photometric", "rescale", "window", "frames", "spacing"]
    sections = [
        f"{len(rows)} panels from {len(rendered)} package samples (files read with `common.io.read_image`, "
        "scikit-image's samples as its arrays); "
        f"the figure is `{metrics['files'].get('gallery', '(none)')}` (third-party data, not committed).",
        markdown_table(rows, columns),
    ]
    if skipped:
        reasons = "; ".join(f"`{k}` ({v})" for k, v in skipped.items())
        sections.append(f"Skipped (not available offline here): {reasons}")
    if p_images:
        sections.append("![phantoms with ground-truth contours](phantoms.png)")
    write_report(ctx.out, "Medical image modalities: package samples and phantoms", sections)
    save_json(ctx.out / "metrics.json", metrics)
    log(f"rendered {len(rows)} sample panels and {len(p_images)} phantom panels; wrote {ctx.out}")
    return metrics


if __name__ == "__main__":
    cli_main(main, get_args())
