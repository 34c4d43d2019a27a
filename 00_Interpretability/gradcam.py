"""Explain a bone-radiograph classifier with CAM, Grad-CAM and kin, on all four dense blocks at once.

CAM: Zhou et al., CVPR 2016 (https://arxiv.org/abs/1512.04150); Grad-CAM: Selvaraju et al., ICCV 2017
(https://arxiv.org/abs/1610.02391); Grad-CAM++, Score-CAM, Layer-CAM, XGrad-CAM, Eigen-CAM in common/cam.
CAM and every gradient method on every block come from ONE forward and ONE backward pass per batch.
Block maps: blocks 1-3 are the outputs of ``features.denseblock{k}`` (before the transition layer);
block 4 is ``model.relu`` = ReLU(norm5(denseblock4)), the exact features the classifier pools.

Without --checkpoint the small demo DenseNet trained on the bone phantom is used (trained once on
first use, a few CPU minutes, then cached). Without --img a few phantom radiographs are explained.

Usage: python 00_Interpretability/gradcam.py --img xray.png [more.png folder/ 'scans/*.dcm'] --method cam,gradcam
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cam.augment import explain_tta  # noqa: E402
from common.cam.options import add_cam_args, check_methods_layers, parse_layers, parse_methods  # noqa: E402
from common.cli import add_common_args, make_parser  # noqa: E402
from common.datasets._common import pad_to_square, resize_image  # noqa: E402
from common.errors import cli_main  # noqa: E402
from common.io import list_images, read_image, save_image, save_json, save_npz  # noqa: E402
from common.models import block_layers, to_model_input  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import setup_run  # noqa: E402
from common.viz import image_grid, overlay  # noqa: E402
from common.xray_train import load_classifier  # noqa: E402


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "gradcam", train=False)
    p.add_argument("--img", nargs="+", default=None,
                   help="image files, folders or globs (PNG/JPEG/BMP/TIFF 8/16-bit, DICOM, NIfTI); "
                        "default: phantom images")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a train.py checkpoint or a torchvision-style DenseNet state_dict; default: the demo model")
    p.add_argument("--arch", default=None, help="DenseNet arch of --checkpoint (default: read from its keys)")
    add_cam_args(p)
    p.add_argument("--target-class", type=int, default=None, choices=(0, 1),
                   help="1 = abnormal, 0 = normal; default: the predicted class")
    p.add_argument("--size", type=int, default=None, help="input side (default: the checkpoint's, else 320)")
    p.add_argument("--batch-size", type=int, default=8, help="images explained together")
    p.add_argument("--save-maps", action="store_true", help="also write the raw maps as <stem>_maps.npz")
    p.add_argument("--n-phantom", type=int, default=4, help="phantom images explained when --img is not given")
    return p.parse_args(argv)


def read_inputs(args):
    """[(stem, original image (H, W), lesion mask or None)], all read (and so checked) before anything is written."""
    if args.img is None:
        return None  # phantom images are made once the model's input size is known
    items = []
    for path in list_images(args.img):
        img, _ = read_image(path, gray=True)
        items.append((path.name.split(".")[0], img, None))
    return items


def phantom_inputs(args, size: int):
    from common.phantoms import BoneXrayPhantom

    ds = BoneXrayPhantom(n=args.n_phantom, size=size, seed=args.seed + 7, abnormal_fraction=1.0)
    return [(f"phantom{i:02d}", ds[i]["image"][0].numpy(), ds[i]["mask"].numpy()) for i in range(len(ds))]


def to_square(img: np.ndarray, size: int):
    """Pad to square (MURA images are not square: pad, never stretch) and resize; returns (square, crop box)."""
    h, w = img.shape
    square = pad_to_square(img)
    n = square.shape[0]
    top, left = (n - h) // 2, (n - w) // 2
    return resize_image(square, size), (left, top, left + w, top + h)


def back_to_original(m: np.ndarray, box, shape) -> np.ndarray:
    """Map a (size, size) map of the padded square back onto the original (H, W) image."""
    import cv2

    n = max(shape)
    full = cv2.resize(m, (n, n), interpolation=cv2.INTER_LINEAR)
    x0, y0, x1, y1 = box
    return full[y0:y1, x0:x1]


def main(args):
    methods = parse_methods(args)
    blocks = parse_layers(args.layers)
    check_methods_layers(methods, blocks)
    ctx = setup_run(args)
    items = read_inputs(args)
    model, info = load_classifier(args.checkpoint, ctx.device, args.arch)
    size = args.size or info.get("size") or 320
    items = items if items is not None else phantom_inputs(args, size)
    items = [(stem, img, *to_square(img, size), mask) for stem, img, mask in items]
    print(f"model: {info['arch']} from {info['source']}; input {size}x{size}; {len(items)} image(s)")
    all_layers = block_layers(model)
    layers = {k: all_layers[k] for k in blocks}
    stems = [s for s, *_ in items]
    if len(set(stems)) != len(stems):  # same file name in two folders: keep outputs apart
        stems = [f"{s}_{k:03d}" for k, s in enumerate(stems)]
    rows = []
    for start in range(0, len(items), args.batch_size):
        chunk = items[start:start + args.batch_size]
        x = torch.from_numpy(np.stack([it[2] for it in chunk]))[:, None].to(ctx.device)  # (B, 1, S, S)
        logits, maps = explain_tta(model, to_model_input(x), methods, layers, target=args.target_class, tta=args.tta)
        probs = torch.sigmoid(logits[:, 0]).cpu().numpy()
        for b, (_, original, square, box, mask) in enumerate(chunk):
            stem = stems[start + b]
            per_image = {f"{m}_block{k}": maps[m][k][b].cpu().numpy() for m in maps for k in maps[m]}
            for key, m in per_image.items():
                save_image(ctx.out / f"{stem}_{key}.png", overlay(original, back_to_original(m, box, original.shape)))
            panel_keys = [(m, k) for m in maps for k in blocks if k in maps[m]]
            image_grid([original] + [original] * len(panel_keys), ctx.out / f"{stem}_panel.png",
                       titles=[f"input (p(abnormal)={probs[b]:.2f})"] + [f"{m} block {k}" for m, k in panel_keys],
                       heatmaps=[None] + [back_to_original(maps[m][k][b].cpu().numpy(), box, original.shape)
                                          for m, k in panel_keys],
                       masks=[[mask] if mask is not None else []] * (1 + len(panel_keys)),
                       ncols=min(6, 1 + len(panel_keys)), colorbar=True)
            if args.save_maps:
                save_npz(ctx.out / f"{stem}_maps.npz", **per_image)
            print(f"{stem}: p(abnormal) = {probs[b]:.3f}")
            rows.append({"image": stem, "p_abnormal": float(probs[b]), "predicted": int(probs[b] > 0.5)})
    result = {"model": info, "size": size, "methods": list(methods), "blocks": blocks, "images": rows}
    panels = "\n".join(f"![{r['image']}]({r['image']}_panel.png)" for r in rows[:4])
    write_report(ctx.out, "CAM and Grad-CAM on the four dense blocks", [
        f"Model: {info['arch']} ({info['source']}); maps from one forward and one backward pass per batch.",
        markdown_table(rows), panels])
    save_json(ctx.out / "metrics.json", result)
    return result


if __name__ == "__main__":
    cli_main(main, get_args())
