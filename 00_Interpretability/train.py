"""Train a DenseNet to tell normal from abnormal bone radiographs, following the MURA protocol.

Rajpurkar et al., "MURA: Large Dataset for Musculoskeletal Radiographs", 2017 (https://arxiv.org/abs/1712.06957);
Huang et al., "Densely Connected Convolutional Networks", CVPR 2017 (https://arxiv.org/abs/1608.06993).
Runs on the built-in bone-radiograph phantom by default, or on MURA-v1.1 with --dataset mura --data-root DIR.
Evaluates at image and study level (Cohen's kappa, AUROC, sensitivity, specificity, per body part).

Usage: python 00_Interpretability/train.py --quick
       torchrun --nproc_per_node=4 00_Interpretability/train.py --dataset mura --data-root /data --arch densenet169
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import add_common_args, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.data.datasets.mura import BODY_PARTS as MURA_BODY_PARTS  # noqa: E402
from common.data.phantoms.bone import BODY_PARTS as PHANTOM_BODY_PARTS  # noqa: E402
from common.engine.schedules import SCHEDULES  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.models import ARCHS, MIN_INPUT_SIZE, POOLINGS  # noqa: E402
from common.models.densenet import CAM_STRIDES  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import cleanup_distributed, is_main_process, log, setup_run  # noqa: E402
from common.tasks.bone_classifier import ClassifierConfig, train_classifier  # noqa: E402
from common.tasks.bone_demo import (  # noqa: E402
    DEMO,
    DEMO_MIN_AUROC,
    demo_path,
    is_demo_recipe,
    restart_config,
    save_demo,
    train_demo,
)
from common.viz import curves  # noqa: E402

DATASETS = ("phantom", "mura")
BODY_PARTS = {"phantom": tuple(PHANTOM_BODY_PARTS), "mura": MURA_BODY_PARTS}
POSITIVE = float_range(0, low_open=True)
PROBABILITY = float_range(0, 1)


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "train", datasets=DATASETS, epochs=30, batch_size=8, lr=1e-4)
    p.add_argument("--arch", default="densenet169", choices=sorted(ARCHS),
                   help="DenseNet variant ('mini' / 'tiny' for CPU demos)")
    p.add_argument("--weights", default=None,
                   help="'imagenet' (torch hub cache) or a .pth file of ImageNet/torchvision weights; "
                        "default: random init")
    p.add_argument("--cam-stride", type=int, default=32, choices=CAM_STRIDES,
                   help="32 = torchvision's DenseNet; 16 / 8 / 4 drop the last transition pools for finer CAMs")
    p.add_argument("--pooling", default="avg", choices=POOLINGS,
                   help="global pool of the head: avg = torchvision's; lse = log-sum-exp of the class map (the demo's)")
    p.add_argument("--lse-r", type=POSITIVE, default=1.0, help="sharpness r of --pooling lse (-> 0: mean, -> inf: max)")
    p.add_argument("--lse-r-start", type=POSITIVE, default=None,
                   help="ramp r geometrically from this value (first epoch) to --lse-r (last epoch); default: constant")
    p.add_argument("--schedule", default="plateau", choices=SCHEDULES,
                   help="plateau = MURA's lr / 10 on a validation plateau; onecycle = the demo model's (stepped "
                        "per epoch); onecycle-batch = the same cycle stepped per batch")
    p.add_argument("--augment-degrees", type=float_range(0, 180), default=30.0,
                   help="random rotation range in degrees, 0-180 (MURA: 30)")
    p.add_argument("--size", type=int_at_least(MIN_INPUT_SIZE), default=320,
                   help=f"input side in pixels, >= {MIN_INPUT_SIZE} (MURA: 320)")
    p.add_argument("--train-crop", type=float_range(0, 1, low_open=True), default=None,
                   help="train on random square crops of this fraction of the side, at the image's own scale "
                        "(validation: whole images); the demo's 0.8: 128 of 160 px")
    p.add_argument("--channels-last", action="store_true",
                   help="train in NHWC memory layout (faster convolutions on CPUs and on CUDA with AMP)")
    p.add_argument("--n-train", type=int_at_least(1), default=4000, help="phantom training images")
    p.add_argument("--n-val", type=int_at_least(1), default=800, help="phantom validation images")
    p.add_argument("--body-parts", nargs="+", default=None,
                   help="restrict to these body parts / study types: phantom " + ", ".join(BODY_PARTS["phantom"])
                        + "; MURA " + ", ".join(BODY_PARTS["mura"]))
    p.add_argument("--confounder", type=PROBABILITY, default=0.0,
                   help="phantom only: probability that the L/R marker's corner encodes the label (shortcut demo)")
    p.add_argument("--val-confounder", type=PROBABILITY, default=None,
                   help="confounder of the validation set (default: same)")
    # --quick: the demo model's settings (common.tasks.bone_demo.DEMO), a small DenseNet trained in minutes on a CPU
    quick = {k: getattr(DEMO, k) for k in ("arch", "cam_stride", "size", "n_train", "n_val", "batch_size", "lr",
                                            "schedule", "augment_degrees", "train_crop", "epochs", "channels_last",
                                            "pooling", "lse_r", "lse_r_start")}
    args = parse_args(p, argv, quick=quick)
    unknown = [part for part in args.body_parts or () if part not in BODY_PARTS[args.dataset]]
    if unknown:  # checked here: the datasets would refuse them only after --out is made
        p.error(f"argument --body-parts: unknown {args.dataset} body part(s) {', '.join(unknown)}; choose from "
                f"{', '.join(BODY_PARTS[args.dataset])}")
    return args


def main(args):
    if args.dataset != "phantom" and args.data_root is None:  # checked before anything is written
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the folder holding MURA-v1.1/")
    if args.weights not in (None, "imagenet") and not Path(args.weights).is_file():  # else found after the data
        raise InputError("no such file (--weights)", path=args.weights,
                         hint="pass a .pth state_dict, 'imagenet', or no --weights for random init")
    ctx = setup_run(args)
    cfg = ClassifierConfig.from_args(args)
    demo = is_demo_recipe(cfg)
    if demo:  # the demo model's run: the same gate and warm restart, and its result cached for the other demos
        model, result, cfg = train_demo(ctx.device, ctx.out, ctx.out / "restart", resume=args.resume)
        if not demo_path().exists():
            log(f"cached as the demo model that gradcam.py, evaluate.py, shortcut.py and localize.py explain: "
                f"{save_demo(model, cfg, result)}")
    else:
        model, result = train_classifier(cfg, ctx.device, ctx.out)
    ev = result["evaluation"]
    summary = {"image": ev["image"], "study": ev["study"], "per_body_part": ev["per_body_part"],
               "best_epoch": result["best_epoch"], "history": result["fit"]["history"]}
    if is_main_process():
        hist = result["fit"]["history"]
        epochs = [h["epoch"] for h in hist]
        losses = {"train loss": [h["train_loss"] for h in hist], "validation loss": [h["val_loss"] for h in hist]}
        curves(epochs, losses,
               ctx.out / "loss.png", "epoch", "weighted BCE", f"{cfg.arch} on {cfg.dataset}")
        rows = [{"level": "image", **ev["image"]}, {"level": "study", **ev["study"]}]
        rows += [{"level": f"study: {part}", **m} for part, m in ev["per_body_part"].items()]
        cols = ["level", "kappa", "auroc", "accuracy", "sensitivity", "specificity", "n"]
        # a --quick run on the phantom that stayed on the plateau where it knows the metal only (00 README)
        plateau = args.quick and not demo and args.dataset == "phantom" and ev["image"]["auroc"] < DEMO_MIN_AUROC
        restart = restart_config(ctx.out, args.seed)
        hint = (f"Validation AUROC is below the demo model's gate ({DEMO_MIN_AUROC}): a short from-scratch run "
                "sometimes learns the metal implants and not the fractures and lytic lesions. Continue it as the demo "
                f"model does (a warm restart, {restart.epochs} epochs on new images): `python "
                f"00_Interpretability/train.py --quick --weights {restart.weights} --epochs {restart.epochs} "
                f"--lse-r-start {restart.lse_r_start:g} --seed {restart.seed} --out {ctx.out}_restart`.")
        restarted = (f" The first run ended below the demo model's gate (validation AUROC {DEMO_MIN_AUROC}) and was "
                     f"continued by a warm restart on seed {cfg.seed}'s images (`restart/`); its numbers are these."
                     if cfg.restart_of_seed is not None else "")
        write_report(ctx.out, f"Normal/abnormal classification ({cfg.arch}, {cfg.dataset}, {cfg.size} px)", [
            f"Best validation loss at epoch {result['best_epoch']} of {cfg.epochs}; checkpoint "
            f"`{'restart/' if restarted else ''}best.pt`." + restarted + (f" {hint}" if plateau else ""),
            markdown_table(rows, cols, name="classification"), "![training curves](loss.png)"])
        save_json(ctx.out / "metrics.json", summary)
        log(f"validation (image level): AUROC {ev['image']['auroc']:.3f}, kappa {ev['image']['kappa']:.3f}; "
            f"study level kappa {ev['study']['kappa']:.3f}; wrote {ctx.out}")
        if plateau:
            log(f"note: {hint}")
    cleanup_distributed()
    return summary


if __name__ == "__main__":
    cli_main(main, get_args())
