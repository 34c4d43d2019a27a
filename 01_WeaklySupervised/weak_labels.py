"""Weak labels drawn from full masks: eroded mask, random point, centroid and bounding box.

Kervadec et al., "Constrained-CNN losses for weakly supervised segmentation", Medical Image Analysis 2019,
https://arxiv.org/abs/1805.04628, Sec. 4.1 (their generator: gen_weak.py of github.com/LIVIAETS/SizeLoss_WSS).
For every slice that contains the class (default 3 = LV cavity) each kind of weak label is saved as a PNG
(0 background, 1 foreground, 255 unlabelled) under <out>/<kind>/, with a figure per kind showing image, full mask
and weak label. Runs on the cardiac phantom, on ACDC (--dataset acdc --data-root DIR), or on one image/mask pair
(--image FILE --mask FILE).

Usage: python 01_WeaklySupervised/weak_labels.py --quick
       python 01_WeaklySupervised/weak_labels.py --image slice.png --mask slice_gt.png --label 3
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.cli import add_common_args, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import read_image, save_image, save_json  # noqa: E402
from common.io.labels import describe_classes, read_label_map  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.tasks.lv_weak_seg import WEAK_KINDS, load_cardiac, weak_options  # noqa: E402
from common.viz import image_grid  # noqa: E402
from common.weak.labels import IGNORE, check_same_size, make_weak_label  # noqa: E402

DATASETS = ("phantom", "acdc")


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "weak_labels", datasets=DATASETS, train=False)
    p.add_argument("--kinds", nargs="+", default=list(WEAK_KINDS), choices=list(WEAK_KINDS),
                   help=f"weak labels to draw: {', '.join(WEAK_KINDS)}")
    p.add_argument("--label", type=int, default=3, help="class of the mask to weaken (ACDC: 3 = LV cavity)")
    p.add_argument("--size", type=int_at_least(32), default=128,
                   help="image side in pixels, >= 32 (phantom / ACDC; --quick: 64)")
    p.add_argument("--n-volumes", type=int_at_least(1), default=10,
                   help="volumes to read (phantom; cap for ACDC; --quick: 2)")
    p.add_argument("--image", type=Path, default=None, help="one image file instead of a dataset (needs --mask)")
    p.add_argument("--mask", type=Path, default=None, help="its label map, same height and width")
    p.add_argument("--n-show", type=int_at_least(1), default=4, help="slices per figure")
    return parse_args(p, argv, quick=dict(size=64, n_volumes=2))


def load_pairs(args) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image (H, W), binary mask (H, W)) for every slice that holds the class."""
    if (args.image is None) != (args.mask is None):
        raise InputError("--image and --mask go together", hint="pass both files, or neither to use --dataset")
    if args.image is not None:
        image, _ = read_image(args.image)
        labels, _ = read_label_map(args.mask)  # class indices (a palette PNG's indices, not its colours)
        image = image.mean(-1) if image.ndim == 3 else image
        check_same_size(image, labels, args.mask)
        mask = labels == args.label
        if not mask.any():
            raise InputError(f"class {args.label} is not in the label map (it holds {describe_classes(labels)})",
                             path=args.mask, hint="pass one of those with --label")
        return [(args.image.stem, image, mask)]
    images, labels, ids = load_cardiac(args.dataset, "all" if args.dataset == "acdc" else "train", args.size,
                                       args.n_volumes, args.seed, args.data_root)
    pairs = []
    for vid, vol, lab in zip(ids, images, labels):
        for s in range(len(vol)):
            mask = lab[s] == args.label
            if mask.any():
                pairs.append((f"vol{vid:03d}_slice{s:02d}", vol[s], mask))
    if not pairs:
        raise InputError(f"no slice holds label {args.label}", hint="check --label (ACDC: 1 RV, 2 myo, 3 LV)")
    return pairs


def main(args):
    unknown = [k for k in args.kinds if k not in WEAK_KINDS]
    if unknown:
        raise InputError(f"unknown weak label kind {unknown[0]!r}", hint=f"use {', '.join(WEAK_KINDS)}")
    pairs = load_pairs(args)  # before setup_run, so bad input leaves no output folder behind
    ctx = setup_run(args)
    stats = []
    for kind in args.kinds:
        folder = ctx.out / kind
        folder.mkdir(parents=True, exist_ok=True)
        weak_all = []
        for k, (name, image, mask) in enumerate(pairs):
            weak = make_weak_label(WEAK_KINDS[kind], mask, seed=[args.seed, k],
                                   **weak_options(kind, mask.shape[-1]))
            save_image(folder / f"{name}.png", weak)
            weak_all.append(weak)
        fg = np.mean([(w == 1).sum() / m.sum() for w, (_, _, m) in zip(weak_all, pairs)])
        labelled = np.mean([(w != IGNORE).mean() for w in weak_all])
        stats.append({"kind": kind, "slices": len(pairs), "foreground seed / mask": float(fg),
                      "labelled pixels": float(labelled)})
        pick = np.linspace(0, len(pairs) - 1, min(args.n_show, len(pairs))).astype(int)
        images, titles, masks = [], [], []
        for i in pick:
            name, image, mask = pairs[i]
            weak = weak_all[i]
            # Unlabelled pixels grey, background black, foreground white.
            shown = np.where(weak == IGNORE, 0.5, weak.astype(np.float32))
            images += [image, mask.astype(np.float32), shown]
            titles += [name, "full mask", f"{kind} label"]
            masks += [[mask], [], [weak == 1]]
        image_grid(images, ctx.out / f"{kind}.png", titles, ncols=3, masks=masks,
                   suptitle=f"{kind}: image, full mask, weak label (white fg, black bg, grey unlabelled)")
    save_json(ctx.out / "metrics.json", {"kinds": stats, "n_slices": len(pairs)})
    write_report(ctx.out, f"Weak labels of class {args.label} ({len(pairs)} slices)",
                 [markdown_table(stats, name="weak_labels"), *[f"![{k}]({k}.png)" for k in args.kinds]])
    log(markdown_table(stats) + f"wrote {ctx.out}")
    return {"kinds": stats, "n_slices": len(pairs)}


if __name__ == "__main__":
    cli_main(main, get_args())
