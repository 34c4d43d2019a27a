"""Weakly supervised lesion localization from class activation maps: threshold, components, boxes.

Zhou et al., "Learning Deep Features for Discriminative Localization", CVPR 2016
(https://arxiv.org/abs/1512.04150): a classifier trained with image labels only (normal / abnormal)
localizes what it found by thresholding its CAM at a fraction of the maximum and boxing the largest
connected component. Scored against the bone phantom's true lesion masks: box IoU, the share of images
with box IoU >= 0.5 (the usual "correct localization"), and pixel IoU, per method, block and threshold.

Usage: python 01_WeaklySupervised/localize.py --quick                       (the demo model)
       python 01_WeaklySupervised/localize.py --checkpoint runs/train/best.pt --thresholds 0.2,0.3,0.5,otsu
"""

import argparse
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.cam.options import add_cam_args, check_methods_layers, parse_layers, parse_methods  # noqa: E402
from common.cam.scoring import explained_batches  # noqa: E402
from common.cli import add_common_args, int_at_least, make_parser, parse_args  # noqa: E402
from common.data.phantoms import BoneXrayPhantom  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.metrics import box_iou, iou, mask_to_box  # noqa: E402
from common.models import MIN_INPUT_SIZE, block_layers  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import setup_run  # noqa: E402
from common.tasks.bone_session import load_explained  # noqa: E402
from common.viz import BOX_COLOURS, HEATMAP_LABEL, MASK_COLOURS, image_grid  # noqa: E402
from common.weak.boxes import localize  # noqa: E402


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "localize", train=False, data_root=False)  # the phantom: its lesion masks score the boxes
    p.add_argument("--checkpoint", type=Path, default=None, help="classifier checkpoint (default: the demo model)")
    p.add_argument("--arch", default=None, help="DenseNet arch of --checkpoint (default: read from its keys)")
    add_cam_args(p, methods="cam,gradcam", layers="4,3")
    p.add_argument("--thresholds", type=parse_thresholds, default="0.2,0.35,0.5,otsu",
                   help="comma list of fractions of the map maximum in (0, 1), and/or 'otsu'")
    p.add_argument("--n", type=int_at_least(1), default=300, help="abnormal phantom images to localize")
    p.add_argument("--size", type=int_at_least(MIN_INPUT_SIZE), default=None,
                   help=f"image side, >= {MIN_INPUT_SIZE} (default: the size the checkpoint records, else 320)")
    p.add_argument("--batch-size", type=int_at_least(1), default=16, help="images explained together")
    return parse_args(p, argv, quick=dict(n=100))


def parse_thresholds(text: str) -> list:
    """argparse ``type=`` of --thresholds: '0.2,0.5,otsu' -> [0.2, 0.5, 'otsu'], each once (a repeat would be
    scored twice under one key)."""
    out = []
    for t in (x.strip() for x in text.split(",")):
        if not t:
            raise argparse.ArgumentTypeError(f"empty item in {text!r}: give fractions in (0, 1) and/or 'otsu'")
        if t == "otsu":
            value = t
        else:
            try:
                value = float(t)
            except ValueError:
                value = -1.0
            if not 0.0 < value < 1.0:  # nan and inf too
                where = "" if t == text.strip() else f" in {text!r}"
                raise argparse.ArgumentTypeError(f"{t!r}{where} is neither a fraction in (0, 1) nor 'otsu'")
        if value not in out:
            out.append(value)
    return out


def main(args):
    thresholds = args.thresholds  # a list: parse_thresholds ran as the flag's type
    if args.n < 1 or args.batch_size < 1:
        raise InputError(f"--n {args.n} and --batch-size {args.batch_size} must both be at least 1")
    methods = parse_methods(args)
    blocks = parse_layers(args.layers)
    check_methods_layers(methods, blocks)
    ctx = setup_run(args)
    with ctx.removing_out_on_error():  # a bad checkpoint leaves no empty --out behind
        clf = load_explained(args.checkpoint, ctx.device, args.arch, args.size)
    model, info, size = clf.model, clf.info, clf.size
    data = BoneXrayPhantom(n=args.n, size=size, seed=args.seed + 500_000, abnormal_fraction=1.0)
    layers = {k: block_layers(model)[k] for k in blocks}
    scores = defaultdict(lambda: defaultdict(list))
    figure = []  # (image, mask, map, region, box, gt box) for the first images
    for start, batch, _, maps in explained_batches(model, data, methods, layers, ctx.device, target=1,
                                                   batch_size=args.batch_size, tta=args.tta):
        masks = batch["mask"].numpy().astype(bool)  # (B, H, W)
        for m in maps:
            for k, block_maps in maps[m].items():
                for i, sal in enumerate(block_maps.cpu().numpy()):
                    gt_box = mask_to_box(masks[i])
                    for t in thresholds:
                        region, box = localize(sal, t)
                        key = (m, k, str(t))
                        b_iou = box_iou(box, gt_box)
                        scores[key]["box_iou"].append(b_iou)
                        scores[key]["correct@0.5"].append(b_iou >= 0.5)
                        scores[key]["pixel_iou"].append(iou(region, masks[i]))
                        if start + i < 4 and m == next(iter(maps)) and k == blocks[0] and t == thresholds[0]:
                            figure.append((batch["image"][i, 0].numpy(), masks[i], sal, region, box, gt_box))
    rows = [{"method": m, "block": k, "threshold": t, "n": len(v["box_iou"]),
             **{name: float(np.mean(vals)) for name, vals in v.items()}} for (m, k, t), v in scores.items()]
    best = max(rows, key=lambda r: (r["correct@0.5"], r["box_iou"]))  # ties (often all 0 %): the better boxes
    titles, images, heat, cont, boxes = [], [], [], [], []
    for img, mask, sal, region, box, gt in figure:
        images += [img, img, img]
        cut = "Otsu" if thresholds[0] == "otsu" else f">= {thresholds[0]} x max"
        titles += [f"{next(iter(methods))} block {blocks[0]}", f"binary ({cut})", "box (pred) vs lesion box"]
        heat += [sal, None, None]
        cont += [[mask], [mask, np.zeros_like(mask), region], [mask]]  # green lesion; blue: the predicted region
        boxes += [[], [], [gt, box]]
    image_grid(images, ctx.out / "localization.png", titles=titles, heatmaps=heat, masks=cont, boxes=boxes,
               ncols=3, cell=2.4, shared_colorbar=HEATMAP_LABEL,
               suptitle=f"From CAM to box: {next(iter(methods))} block {blocks[0]} on the first abnormal images",
               legend=[("lesion outline", MASK_COLOURS[0]), ("predicted region", MASK_COLOURS[2]),
                       ("box: lesion box (truth)", BOX_COLOURS[0]), ("box: predicted box", BOX_COLOURS[1])])
    cols = ["method", "block", "threshold", "n", "box_iou", "correct@0.5", "pixel_iou"]
    write_report(ctx.out, "Lesion localization from CAMs (weak supervision: image labels only)", [
        f"Model: {info['arch']} ({info['source']}); {len(data)} abnormal phantom radiographs at {size} px. "
        f"Best: {best['method']} block {best['block']} at threshold {best['threshold']}: "
        f"{best['correct@0.5']:.1%} of boxes with IoU >= 0.5.", markdown_table(rows, cols, name="boxes"),
        "![heatmap, binary region and boxes: green = lesion outline, blue = predicted region / box, red = lesion box]"
        "(localization.png)"])
    result = {"model": info, "n": len(data), "rows": rows, "best": best}
    save_json(ctx.out / "metrics.json", result)
    print(markdown_table(rows, cols))
    print(f"wrote {ctx.out} (report.md, metrics.json, localization.png)")
    return result


if __name__ == "__main__":
    cli_main(main, get_args())
