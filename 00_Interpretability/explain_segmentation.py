"""Where does a segmenter look to call a pixel LV? SEG-Grad-CAM and the CAM family on an ENet, scored against truth.

A class activation map explains a score; for a segmentation network the score is the sum of one class's logits over
a region (SEG-Grad-CAM: Vinogradova, Dibrov, Myers, AAAI 2020 student abstract, https://arxiv.org/abs/2002.11434):
the pixels the ENet (Paszke et al. 2016, https://arxiv.org/abs/1606.02147) predicts as LV, the true LV, or one pixel
at the LV's centre. Every method runs on every chosen ENet stage from one forward and one backward pass
(``common.cam.explain``; FullGrad, which explains the whole network at once, from its own). Each map is scored by
the share of its energy inside the LV + myocardium, beside the share a uniform map would have (the heart's area
fraction): a method and layer above that baseline look at the heart, one at it look everywhere.

The LV ENet is trained on the cardiac phantom (or ACDC with --dataset acdc --data-root) with full supervision once and
cached (``common.tasks.lv_explain``); --checkpoint explains your own 2-class ENet instead.

Usage: python 00_Interpretability/explain_segmentation.py --quick
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cam import SegmentationTarget, explain  # noqa: E402
from common.cam.fullgrad import FullGrad  # noqa: E402
from common.cam.registry import METHODS  # noqa: E402
from common.cli import add_common_args, int_at_least, make_parser, parse_args  # noqa: E402
from common.engine import checkpoint  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.models.enet import ENet  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import setup_run  # noqa: E402
from common.tasks.lv_explain import (  # noqa: E402
    DEMO,
    LAYERS,
    LV,
    MYO,
    SegmenterConfig,
    demo_segmenter,
    energy_share,
    enet_layers,
    heart_region,
    load_split,
)
from common.viz import MASK_COLOURS, image_grid  # noqa: E402

# what the demo runs by default: the one-pass methods (Score-CAM / Ablation-CAM cost a forward pass per channel)
DEFAULT_METHODS = "gradcam,gradcampp,xgradcam,layercam,hirescam,gradcam_elementwise,eigengradcam,eigencam,fullgrad"
CHOICES = (*METHODS, "fullgrad")
TARGETS = {"predicted": "the LV logits summed over the pixels predicted LV (SEG-Grad-CAM)",
           "truth": "the LV logits summed over the true LV",
           "pixel": "the LV logit at the true LV's centre pixel"}
QUICK = {"n_val": 2, "slices": 12, "threads": 1}


def get_args(argv=None):
    p = make_parser(__doc__.split("\n")[0])
    add_common_args(p, "explain_segmentation", datasets=("phantom", "acdc"), epochs=DEMO.epochs, lr=DEMO.lr,
                    batch_size=1)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a 2-class ENet checkpoint ({'model': state_dict}) to explain instead of the cached demo ENet")
    p.add_argument("--size", type=int_at_least(32), default=DEMO.size, help="slice side (multiple of 8)")
    p.add_argument("--n-train", type=int_at_least(1), default=DEMO.n_train, help="training volumes of the demo ENet")
    p.add_argument("--n-val", type=int_at_least(1), default=4, help="validation volumes whose LV slices are explained")
    p.add_argument("--slices", type=int_at_least(1), default=40, help="at most this many LV slices explained")
    p.add_argument("--method", default=DEFAULT_METHODS, help=f"comma list of {', '.join(CHOICES)}")
    p.add_argument("--layers", default=",".join(LAYERS), help=f"ENet stages to explain, comma list of {LAYERS}")
    p.add_argument("--target", default="predicted", choices=tuple(TARGETS),
                   help="; ".join(f"{k}: {v}" for k, v in TARGETS.items()))
    p.add_argument("--threads", type=int_at_least(0), default=0,
                   help="torch CPU threads (0 = torch's default; 1 avoids OpenMP spinning on a shared CPU)")
    return parse_args(p, argv, quick=QUICK)


def parse_list(text: str, choices, flag: str) -> list[str]:
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [n for n in names if n not in choices]
    if bad or not names:
        raise InputError(f"{flag} {','.join(bad) or '(empty)'} not understood",
                         hint=f"choose from {', '.join(choices)}")
    return list(dict.fromkeys(names))


def load_model(args, cfg: SegmenterConfig, device) -> tuple[ENet, dict]:
    if args.checkpoint is None:
        return demo_segmenter(device, cfg)
    if not args.checkpoint.is_file():
        raise InputError("no such checkpoint (--checkpoint)", path=args.checkpoint)
    saved = checkpoint.load(args.checkpoint, map_location=device)
    model = ENet(in_channels=1, num_classes=2)
    try:
        model.load_state_dict(saved.get("model", saved) if isinstance(saved, dict) else saved)
    except (RuntimeError, TypeError, AttributeError) as exc:
        raise InputError(f"not a 2-class, 1-channel ENet checkpoint ({str(exc).splitlines()[0]})",
                         path=args.checkpoint) from None
    return model.to(device).eval(), saved.get("metrics", {}) if isinstance(saved, dict) else {}


def lv_slices(cfg: SegmenterConfig, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """Validation slices with an LV, evenly spread over the volumes: images (N, H, W), labels (N, H, W)."""
    images, labels = load_split(cfg, "val")
    img, lab = np.concatenate(images), np.concatenate(labels)
    keep = np.flatnonzero((lab == LV).any((1, 2)))
    if keep.size == 0:
        raise InputError("no validation slice shows an LV", hint="use more --n-val volumes")
    keep = keep[np.linspace(0, keep.size - 1, min(limit, keep.size)).round().astype(int)]
    return img[keep].astype(np.float32), lab[keep]


def make_target(kind: str, labels: np.ndarray):
    lv = labels == LV  # (N, H, W)
    if kind == "predicted":
        return SegmentationTarget(1)
    if kind == "truth":
        return SegmentationTarget(1, torch.from_numpy(lv))
    centres = [np.argwhere(m).mean(0).round().astype(int) for m in lv]  # inside a convex LV; close to it otherwise
    return [lambda out, y=int(y), x=int(x): out[1, y, x] for y, x in centres]


def main(args):
    if args.size % 8:
        raise InputError(f"--size {args.size} is not a multiple of 8", hint="ENet downsamples by 8")
    if args.dataset == "acdc" and args.data_root is None:
        raise InputError("--dataset acdc needs --data-root", hint="pass the ACDC folder that holds training/")
    if args.checkpoint is not None and not args.checkpoint.is_file():
        raise InputError("no such checkpoint (--checkpoint)", path=args.checkpoint)
    names = parse_list(args.method, CHOICES, "--method")
    layers = parse_list(args.layers, LAYERS, "--layers")
    cfg = SegmenterConfig(dataset=args.dataset, data_root=None if args.data_root is None else str(args.data_root),
                          size=args.size, n_train=args.n_train, epochs=args.epochs, lr=args.lr, seed=args.seed)
    ctx = setup_run(args)
    threads = torch.get_num_threads()
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        return run(args, cfg, ctx, names, layers)
    finally:  # main() is also called in-process (tests, reproduce.py): leave torch's thread count as it was
        torch.set_num_threads(threads)


def run(args, cfg: SegmenterConfig, ctx, names: list[str], layers: list[str]) -> dict:
    with ctx.removing_out_on_error():  # a checkpoint that is no ENet leaves no empty output folder behind
        model, info = load_model(args, cfg, ctx.device)
    images, labels = lv_slices(SegmenterConfig(**{**vars(cfg), "n_val": args.n_val}), args.slices)
    x = torch.from_numpy(images)[:, None].to(ctx.device)  # (N, 1, H, W)
    target = make_target(args.target, labels)
    layer_methods = [n for n in names if n != "fullgrad"]
    maps: dict[str, dict[str, torch.Tensor]] = {}
    if layer_methods:
        output, maps = explain(model, x, layer_methods, enet_layers(model, layers), target=target)
    else:
        with torch.no_grad():
            output = model(x)
    if "fullgrad" in names:
        maps["fullgrad"] = {"all": FullGrad()(model, x, target=target)}
    heart = heart_region(labels)
    pred = output.argmax(1).cpu().numpy() == 1
    dice = 2 * (pred & (labels == LV)).sum() / max(pred.sum() + (labels == LV).sum(), 1)
    uniform = float(heart.mean((1, 2)).mean())
    share = {m: {k: energy_share(v.cpu().numpy(), heart) for k, v in per.items()} for m, per in maps.items()}
    mean = {m: {k: float(np.nanmean(v)) for k, v in per.items()} for m, per in share.items()}

    cols = [*layers, "all"] if "fullgrad" in names else layers
    rows = [{"method": m, **{k: mean[m].get(k, float("nan")) for k in cols},
             "best layer": max(mean[m], key=mean[m].get)} for m in maps]
    table = markdown_table(rows, ["method", *cols, "best layer"], name="share")
    context = markdown_table([{"slices": len(x), "target": args.target, "uniform share": uniform,
                               "Dice of the explained slices": float(dice),
                               "ENet val 3D Dice": info.get("val_dice3d", float("nan"))}], name="setting")
    fig = figure(images, labels, maps, mean, ctx.out / "explain_segmentation.png", args.target)
    intro = (f"Share of each map's energy inside the LV + myocardium ({len(x)} validation slices with an LV, target: "
             f"{TARGETS[args.target]}); a uniform map scores the heart's area fraction ({uniform:.3f}).")
    write_report(ctx.out, "Explaining an LV segmenter", [intro, table, context, f"![maps]({fig.name})"])
    print("\n".join(["", intro, "", str(table), str(context)]))
    metrics = {"share": mean, "uniform_share": uniform, "slices": len(x), "target": args.target,
               "slice_dice": float(dice), "val_dice3d": info.get("val_dice3d"),
               "above_uniform": {m: {k: v > uniform for k, v in per.items()} for m, per in mean.items()}}
    save_json(ctx.out / "metrics.json", metrics)
    return metrics


def figure(images, labels, maps, mean, path: Path, target: str) -> Path:
    """One slice (the median LV area among those explained): a row per method, a column per layer."""
    lv_area = (labels == LV).sum((1, 2))
    i = int(np.argsort(lv_area)[len(lv_area) // 2])
    cols = list(dict.fromkeys(k for per in maps.values() for k in per))
    cells, heat, titles, masks = [], [], [], []
    outline = [labels[i] == LV, labels[i] == MYO]
    for m, per in maps.items():
        for k in cols:
            cells.append(images[i])
            heat.append(per[k][i].cpu().numpy() if k in per else None)
            titles.append(f"{m} @ {k}: {mean[m][k]:.2f}" if k in per else "")
            masks.append(outline if k in per else [])
    return image_grid(cells, path, titles, ncols=len(cols), heatmaps=heat, masks=masks, cell=2.2,
                      shared_colorbar="map value (0-1)", row_labels=list(maps),
                      legend=[("true LV", MASK_COLOURS[0]), ("true myocardium", MASK_COLOURS[1])],
                      suptitle=f"Where the ENet looks to call pixels LV (target: {target}); title: energy share "
                               "inside LV + myocardium")


if __name__ == "__main__":
    cli_main(main, get_args())
