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

from common.cli import add_common_args, make_parser  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.models import ARCHS, POOLINGS  # noqa: E402
from common.models.densenet import CAM_STRIDES  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import cleanup_distributed, is_main_process, log, setup_run  # noqa: E402
from common.viz import curves  # noqa: E402
from common.xray_train import DEMO, DEMO_MIN_AUROC, SCHEDULES, restart_config, train_classifier  # noqa: E402

DATASETS = ("phantom", "mura")


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "train", datasets=DATASETS, epochs=None, batch_size=8, lr=1e-4)
    p.add_argument("--arch", default="densenet169", choices=sorted(ARCHS),
                   help="DenseNet variant ('mini' / 'tiny' for CPU demos)")
    p.add_argument("--weights", default=None,
                   help="'imagenet' (torch hub cache) or a .pth file of ImageNet/torchvision weights; "
                        "default: random init")
    p.add_argument("--cam-stride", type=int, default=32, choices=CAM_STRIDES,
                   help="32 = torchvision's DenseNet; 16 / 8 / 4 drop the last transition pools for finer CAMs")
    p.add_argument("--pooling", default="avg", choices=POOLINGS,
                   help="global pool of the head: avg = torchvision's; lse = log-sum-exp of the class map (the demo's)")
    p.add_argument("--lse-r", type=float, default=1.0, help="sharpness r of --pooling lse (-> 0: mean, -> inf: max)")
    p.add_argument("--lse-r-start", type=float, default=None,
                   help="ramp r geometrically from this value (first epoch) to --lse-r (last epoch); default: constant")
    p.add_argument("--schedule", default="plateau", choices=SCHEDULES,
                   help="plateau = MURA's lr / 10 on a validation plateau; onecycle = the demo model's (stepped "
                        "per epoch); onecycle-batch = the same cycle stepped per batch")
    p.add_argument("--augment-degrees", type=float, default=30.0, help="random rotation range (MURA: 30)")
    p.add_argument("--size", type=int, default=320, help="input side in pixels (MURA: 320)")
    p.add_argument("--channels-last", action="store_true",
                   help="train in NHWC memory layout (faster convolutions on CPUs and on CUDA with AMP)")
    p.add_argument("--n-train", type=int, default=4000, help="phantom training images")
    p.add_argument("--n-val", type=int, default=800, help="phantom validation images")
    p.add_argument("--body-parts", nargs="+", default=None, help="restrict to these body parts / study types")
    p.add_argument("--confounder", type=float, default=0.0,
                   help="phantom only: probability that the L/R marker's corner encodes the label (shortcut demo)")
    p.add_argument("--val-confounder", type=float, default=None,
                   help="confounder of the validation set (default: same)")
    args = p.parse_args(argv)
    if args.quick:  # the demo model's settings (common.xray_train.DEMO): a small DenseNet, minutes on a CPU
        given = argv if argv is not None else sys.argv
        for key in ("arch", "cam_stride", "size", "n_train", "n_val", "batch_size", "lr", "schedule",
                    "augment_degrees", "epochs", "channels_last", "pooling", "lse_r", "lse_r_start"):
            if f"--{key.replace('_', '-')}" not in given:
                setattr(args, key, DEMO[key])
    args.epochs = args.epochs or 30
    if not args.lse_r > 0 or (args.lse_r_start is not None and not args.lse_r_start > 0):
        p.error(f"--lse-r and --lse-r-start must be > 0, got {args.lse_r} and {args.lse_r_start}")
    return args


def main(args):
    if args.dataset != "phantom" and args.data_root is None:  # checked before anything is written
        raise InputError(f"--dataset {args.dataset} needs --data-root", hint="pass the folder holding MURA-v1.1/")
    ctx = setup_run(args)
    model, result = train_classifier(args, ctx.device, ctx.out)
    ev = result["evaluation"]
    summary = {"image": ev["image"], "study": ev["study"], "per_body_part": ev["per_body_part"],
               "best_epoch": result["best_epoch"], "history": result["fit"]["history"]}
    if is_main_process():
        hist = result["fit"]["history"]
        epochs = [h["epoch"] for h in hist]
        losses = {"train loss": [h["train_loss"] for h in hist], "validation loss": [h["val_loss"] for h in hist]}
        curves(epochs, losses,
               ctx.out / "loss.png", "epoch", "weighted BCE", f"{args.arch} on {args.dataset}")
        rows = [{"level": "image", **ev["image"]}, {"level": "study", **ev["study"]}]
        rows += [{"level": f"study: {part}", **m} for part, m in ev["per_body_part"].items()]
        cols = ["level", "kappa", "auroc", "accuracy", "sensitivity", "specificity", "n"]
        # a --quick run on the phantom that stayed on the plateau where it knows the metal only (00 README)
        plateau = args.quick and args.dataset == "phantom" and ev["image"]["auroc"] < DEMO_MIN_AUROC
        restart = restart_config(ctx.out, args.seed)
        hint = (f"Validation AUROC is below the demo model's gate ({DEMO_MIN_AUROC}): a short from-scratch run "
                "sometimes learns the metal implants and not the fractures and lytic lesions. Continue it as the demo "
                f"model does (a warm restart, {restart['epochs']} epochs on new images): `python "
                f"00_Interpretability/train.py --quick --weights {restart['weights']} --epochs {restart['epochs']} "
                f"--lse-r-start {restart['lse_r_start']:g} --seed {restart['seed']} --out {ctx.out}_restart`.")
        write_report(ctx.out, f"Normal/abnormal classification ({args.arch}, {args.dataset}, {args.size} px)", [
            f"Best validation loss at epoch {result['best_epoch']} of {args.epochs}; checkpoint `best.pt`."
            + (f" {hint}" if plateau else ""), markdown_table(rows, cols), "![training curves](loss.png)"])
        save_json(ctx.out / "metrics.json", summary)
        log(f"validation (image level): AUROC {ev['image']['auroc']:.3f}, kappa {ev['image']['kappa']:.3f}; "
            f"study level kappa {ev['study']['kappa']:.3f}; wrote {ctx.out}")
        if plateau:
            log(f"note: {hint}")
    cleanup_distributed()
    return summary


if __name__ == "__main__":
    cli_main(main, get_args())
