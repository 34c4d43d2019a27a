"""Speed of common.cam against pytorch-grad-cam on DenseNet169, side by side in one run.

Methods: CAM (Zhou et al. 2016, https://arxiv.org/abs/1512.04150), Grad-CAM (Selvaraju et al. 2017,
https://arxiv.org/abs/1610.02391), Score-CAM (Wang et al. 2020, https://arxiv.org/abs/1910.01279);
reference implementation: pytorch-grad-cam (https://github.com/jacobgil/pytorch-grad-cam).

(a) per image: ours CAM + Grad-CAM on all four dense blocks (one forward, one backward) against theirs
    Grad-CAM on one layer, and on the four layers as four calls;
(b) Score-CAM at block 4: both libraries on the same fixed channel subset at --size, and exact (all
    1664 channels, ~1664 forward passes per image) at the smaller --exact-size; our top-k mode there:
    seconds/image and Pearson correlation with our exact map;
(c) batched throughput (images/s) of ours and theirs;
(d) the floor beside each of our one-pass rows -- a bare forward + backward to the earliest explained layer with no
    parameter gradients, the cost no method can beat -- for 2D (DenseNet, CAM + Grad-CAM, four blocks), 3D (a small
    3D CNN on a volume, Grad-CAM + Layer-CAM + HiResCAM, four blocks) and a segmentation target (ENet, SEG-Grad-CAM
    of the predicted LV class, Grad-CAM + Layer-CAM + HiResCAM, four stages), each against pytorch-grad-cam's
    Grad-CAM called once per layer. (d) is timed in CPU seconds of this process (``time.process_time``, one thread),
    which other work on a shared machine does not inflate; ``--rows-only`` runs only (d).
Weights are random (seeded) -- nothing can be downloaded -- and inputs are smooth synthetic blobs.
Prints markdown tables and writes metrics.json, report.md and tables.json under --out (the README's speed table is
the generated block ``results:benchmarks/results/cam_speed/speed``). Usage::

    python benchmarks/cam_speed.py --quick
    python benchmarks/cam_speed.py --out benchmarks/results/cam_speed                       (the committed run)
    python benchmarks/cam_speed.py --from-json benchmarks/results/cam_speed/metrics.json    (tables again, no timing)
    python benchmarks/cam_speed.py --rows-only --out benchmarks/results/cam_speed/floor        (the floor rows, (d))
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cam import ScoreCAM, SegmentationTarget, explain  # noqa: E402
from common.cam.context import make_scorer  # noqa: E402
from common.cam.hooks import LayerCapture, frozen  # noqa: E402
from common.cli import OneLineErrorParser, int_at_least  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io.atomic import save_json  # noqa: E402
from common.models import ARCHS, MIN_INPUT_SIZE, block_layers, build_densenet  # noqa: E402
from common.models.enet import ENet  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402


def get_args(argv=None):
    p = OneLineErrorParser(description=__doc__.split("\n")[0],
                           formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    size, count = int_at_least(MIN_INPUT_SIZE), int_at_least(1)
    p.add_argument("--arch", default="densenet169", choices=sorted(ARCHS))
    p.add_argument("--size", type=size, default=320, help="input height = width")
    p.add_argument("--images", type=count, default=3, help="images timed one by one in (a) and (b)")
    p.add_argument("--batch-size", type=count, default=8, help="batch for the throughput test (c)")
    p.add_argument("--subset", type=count, default=64,
                   help="Score-CAM channels scored by both libraries in (b), at most the block-4 channels")
    p.add_argument("--top-k", type=count, nargs="+", default=[64, 256], help="our Score-CAM top-k settings")
    p.add_argument("--exact-images", type=count, default=1, help="images for the exact Score-CAM reference of top-k")
    p.add_argument("--exact-size", type=size, default=160, help="input size for exact Score-CAM (both) and top-k")
    p.add_argument("--scorecam-batch", type=count, default=16, help="masked images per forward pass (both libraries)")
    p.add_argument("--threads", type=count, default=1, help="torch CPU threads (1 keeps ratios stable on a shared CPU)")
    p.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    p.add_argument("--seed", type=int_at_least(0), default=0)
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run in about a minute")
    p.add_argument("--out", default="runs/cam_speed", help="folder for metrics.json, report.md and tables.json")
    p.add_argument("--rows-only", action="store_true", help="time only (d): the one-pass rows beside their floor")
    p.add_argument("--volume", type=size, default=48, help="(d) 3D row: volume side")
    p.add_argument("--seg-size", type=size, default=256, help="(d) segmentation row: ENet input side")
    p.add_argument("--from-json", type=Path, default=None,
                   help="time nothing: write the report and tables of an earlier run's metrics.json (into its folder)")
    return p.parse_args(argv)


class BinaryTarget:
    """pytorch-grad-cam target for a 1-logit head (class 1 = the logit)."""

    def __init__(self, cls):
        self.cls = cls

    def __call__(self, output):
        return output[..., 0] if self.cls == 1 else -output[..., 0]


def blobs(n, size, generator):
    """Smooth synthetic images (a few Gaussian blobs + noise), ImageNet-normalised scale, (n, 3, S, S)."""
    yy, xx = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    imgs = torch.zeros(n, size, size)
    for i in range(n):
        for _ in range(3):
            cy, cx, s = torch.rand(3, generator=generator) * torch.tensor([1.0, 1.0, 0.15]) + torch.tensor([0, 0, 0.05])
            imgs[i] += torch.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * s**2))
    imgs = imgs + 0.05 * torch.randn(n, size, size, generator=generator)
    imgs = (imgs - imgs.mean()) / imgs.std()
    return imgs[:, None].expand(-1, 3, -1, -1).contiguous()


def timed(fn, device):
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def per_image(fn, xs, device):
    """Seconds per image, one image at a time, after one warm-up call."""
    fn(xs[:1])
    return sum(timed(lambda i=i: fn(xs[i:i + 1]), device)[0] for i in range(len(xs))) / len(xs)


def corr(a, b):
    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")


def cpu_per_call(fn, x, repeats: int) -> float:
    """CPU seconds of this process per call of fn(x), after one warm-up call (contention does not inflate it)."""
    fn(x)
    start = time.process_time()
    for _ in range(repeats):
        fn(x)
    return (time.process_time() - start) / repeats


def floor_pass(model, x, earliest, target):
    """The floor of every one-pass row: forward, then backward from the target score to the earliest explained
    layer only, no parameter gradients (what one_pass cannot avoid doing)."""
    with frozen(model), LayerCapture({0: earliest}, track_grad=True) as capture:
        out = model(x)
        scorer, _, _ = make_scorer(out.detach(), target)
        return capture.gradients(scorer(out).sum())


class Small3D(torch.nn.Module):
    """A small 3D CNN classifier: four conv blocks (the explained layers) at 1, 1/2, 1/4, 1/8 of the volume."""

    def __init__(self, width=16, classes=2):
        super().__init__()
        chans = [1, width, 2 * width, 4 * width, 8 * width]
        self.blocks = torch.nn.ModuleList(torch.nn.Sequential(
            torch.nn.MaxPool3d(2) if k else torch.nn.Identity(), torch.nn.Conv3d(chans[k], chans[k + 1], 3, padding=1),
            torch.nn.BatchNorm3d(chans[k + 1]), torch.nn.ReLU()) for k in range(4))
        self.fc = torch.nn.Linear(chans[-1], classes)

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return self.fc(x.mean((2, 3, 4)))


def floor_rows(args, pg, device) -> dict:
    """(d): ours / floor / theirs (Grad-CAM once per layer) in CPU s per call, for the 2D, 3D and segmentation rows."""
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget, SemanticSegmentationTarget

    gen = torch.Generator().manual_seed(args.seed)
    rows = {}
    repeats = max(args.images, 1)

    def row(name, model, x, layers, methods, target, their_targets):
        earliest = next(iter(layers.values()))  # the layers are given in forward order

        def theirs(x_):
            for layer in layers.values():
                with pg.GradCAM(model, [layer]) as cam:
                    cam(x_, their_targets)
            model.zero_grad(set_to_none=True)

        r = {"ours_s": cpu_per_call(lambda x_: explain(model, x_, methods, layers, target=target), x, repeats),
             "floor_s": cpu_per_call(lambda x_: floor_pass(model, x_, earliest, target), x, repeats),
             "theirs_s": cpu_per_call(theirs, x, repeats), "methods": list(methods), "layers": len(layers),
             "input": list(x.shape)}
        rows[name] = r
        log_row(name, r)

    torch.manual_seed(args.seed)
    dense = build_densenet(args.arch, num_outputs=1).to(device).eval()
    x2 = blobs(1, args.size, gen).to(device)
    row("2D", dense, x2, block_layers(dense), ("cam", "gradcam"), 1, [BinaryTarget(1)])
    vol = Small3D().to(device).eval()
    x3 = torch.randn(1, 1, args.volume, args.volume, args.volume, generator=gen).to(device)
    row("3D", vol, x3, {k: b for k, b in enumerate(vol.blocks)}, ("gradcam", "layercam", "hirescam"), 1,
        [ClassifierOutputTarget(1)])
    enet = ENet(in_channels=1, num_classes=2).to(device).eval()
    xs = blobs(1, args.seg_size, gen)[:, :1].to(device)
    with torch.no_grad():
        pred = (enet(xs).argmax(1)[0] == 1).float().cpu().numpy()
    row("segmentation", enet, xs, {k: getattr(enet, k) for k in ("stage1", "stage3", "stage4", "stage5")},
        ("gradcam", "layercam", "hirescam"), SegmentationTarget(1), [SemanticSegmentationTarget(1, pred)])
    return rows


def log_row(name, r):
    print(f"(d) {name}: ours {r['ours_s']:.3f} s, floor {r['floor_s']:.3f} s ({r['ours_s'] / r['floor_s']:.2f}x), "
          f"theirs {r['theirs_s']:.3f} s ({r['theirs_s'] / r['ours_s']:.2f}x faster)", flush=True)


def floor_table(rows: dict):
    return markdown_table([{"row": f"{name}: {'+'.join(r['methods'])}, {r['layers']} layers, input "
                                   f"{'x'.join(map(str, r['input'][2:]))}",
                            "ours CPU s": r["ours_s"], "floor CPU s": r["floor_s"],
                            "ours / floor": f"{r['ours_s'] / r['floor_s']:.2f}x", "goal (floor)": "<= 1.1x",
                            "theirs Grad-CAM, per layer, CPU s": r["theirs_s"],
                            "speed-up vs theirs": f"{r['theirs_s'] / r['ours_s']:.2f}x", "goal (theirs)": ">= 4x"}
                           for name, r in rows.items()], name="floor")


def main(args):
    import pytorch_grad_cam as pg  # benchmark-only dependency (requirements-dev.txt)

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    if args.quick:
        args.size, args.images, args.batch_size, args.subset = 128, 2, 4, 16
        args.top_k, args.exact_images, args.exact_size = [16, 64], 1, 96
    if args.device == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA GPU is visible", hint="use --device cpu or auto")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available() else
                          ("cpu" if args.device == "auto" else args.device))
    print("resolved arguments:", json.dumps({**vars(args), "device": str(device)}))

    if args.rows_only:
        rows = floor_rows(args, pg, device)
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        saved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
        save_json(out / "metrics.json", {"args": {**saved, "device": str(device)}, "results": {"floor": rows}})
        setting = (f"CPU seconds per call (time.process_time, {args.threads} thread(s)), {args.images} call(s) after a "
                   "warm-up; floor = forward + backward to the earliest explained layer, no parameter gradients")
        table = floor_table(rows)
        write_report(out, "common.cam one-pass rows beside their floor", [setting, table])
        print("\n".join(["", setting, "", table]))
        return rows

    model = build_densenet(args.arch, num_outputs=1).to(device).eval()
    if args.subset > model.num_features:  # np.linspace would repeat channels: fewer scored than asked
        raise InputError(f"--subset {args.subset} is more than the {model.num_features} block-4 channels of "
                         f"{args.arch}", hint=f"use --subset {model.num_features} or less")
    layers = block_layers(model)
    gen = torch.Generator().manual_seed(args.seed)
    xs = blobs(max(args.images, args.batch_size), args.size, gen).to(device)
    target = 1  # the "abnormal" logit, in both libraries
    targets = lambda x: [BinaryTarget(target)] * len(x)  # noqa: E731
    r = {}

    # (a) ---------------------------------------------------------------- gradient methods, per image
    def theirs_gradcam(x, which):
        out = []
        for layer in which:
            with pg.GradCAM(model, [layer]) as cam:
                out.append(cam(x, targets(x)))
        return out

    img = xs[: args.images]
    r["ours_cam_gradcam_4blocks_s"] = per_image(
        lambda x: explain(model, x, methods=("cam", "gradcam"), layers=layers, target=target), img, device)
    r["theirs_gradcam_1layer_s"] = per_image(lambda x: theirs_gradcam(x, [model.relu]), img, device)
    r["theirs_gradcam_4calls_s"] = per_image(lambda x: theirs_gradcam(x, list(layers.values())), img, device)
    model.zero_grad(set_to_none=True)  # theirs leave parameter gradients behind

    # (b) ---------------------------------------------------------------- Score-CAM, block 4
    C = model.num_features
    subset = np.linspace(0, C - 1, args.subset).round().astype(int).tolist()

    class SubsetScoreCAM(pg.ScoreCAM):
        def get_cam_image(self, input_tensor, layer, targets_, activations, grads, eigen_smooth):
            return super().get_cam_image(input_tensor, layer, targets_, activations[:, subset], None, eigen_smooth)

    def theirs_score(x):
        with SubsetScoreCAM(model, [model.relu]) as cam:
            cam.batch_size = args.scorecam_batch
            return cam(x, targets(x))

    ours_subset = ScoreCAM(channels=subset, batch_size=args.scorecam_batch)
    r["scorecam_channels_scored"] = len(subset)
    r["ours_scorecam_subset_s"] = per_image(lambda x: ours_subset(model, x, model.relu, target=target), img, device)
    r["theirs_scorecam_subset_s"] = per_image(theirs_score, img, device)
    model.zero_grad(set_to_none=True)

    # Exact Score-CAM (every channel) in both libraries, at a size where ~1664 forward passes stay affordable.
    exact_size = args.exact_size or args.size
    ex = blobs(args.exact_images, exact_size, gen).to(device)
    t_exact, (_, exact) = timed(lambda: explain(model, ex, methods={"exact": ScoreCAM(batch_size=args.scorecam_batch)},
                                                layers={4: model.relu}, target=target), device)
    exact = exact["exact"][4]

    def theirs_exact():
        with pg.ScoreCAM(model, [model.relu]) as cam:
            cam.batch_size = args.scorecam_batch
            return cam(ex, targets(ex))

    t_theirs_exact, ref = timed(theirs_exact, device)
    model.zero_grad(set_to_none=True)
    r["exact_size"] = exact_size
    r["ours_scorecam_exact_s"] = t_exact / len(ex)
    r["theirs_scorecam_exact_s"] = t_theirs_exact / len(ex)
    r["scorecam_exact_max_abs_diff"] = float(np.abs(exact.cpu().numpy() - ref).max())
    for k in args.top_k:
        for rank_by in ("activation", "gradient"):
            method = ScoreCAM(top_k=k, rank_by=rank_by, batch_size=args.scorecam_batch)
            key = f"topk{k}_{rank_by}"
            t_k, approx = timed(lambda m=method: m(model, ex, model.relu, target=target), device)
            r[f"{key}_s"] = t_k / len(ex)
            pairs = zip(approx, exact, strict=True)
            r[f"{key}_corr_exact"] = float(np.mean([corr(a.cpu(), b.cpu()) for a, b in pairs]))

    # (c) ---------------------------------------------------------------- batched throughput
    xb = xs[: args.batch_size]
    explain(model, xb, methods=("cam", "gradcam"), layers=layers, target=target)
    t_ours, _ = timed(lambda: explain(model, xb, methods=("cam", "gradcam"), layers=layers, target=target), device)
    t_theirs, _ = timed(lambda: theirs_gradcam(xb, [model.relu]), device)
    model.zero_grad(set_to_none=True)
    r["ours_batched_img_per_s"] = len(xb) / t_ours
    r["theirs_batched_1layer_img_per_s"] = len(xb) / t_theirs
    r["ours_unbatched_img_per_s"] = 1.0 / r["ours_cam_gradcam_4blocks_s"]

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    saved = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    metrics = {"args": {**saved, "device": str(device), "block4_channels": C}, "results": r}
    save_json(out / "metrics.json", metrics)
    report(r, metrics["args"], out)
    print(f"wrote {out}")
    return r


def report(r: dict, args: dict, out: Path) -> None:
    """Print the tables and write them to ``out`` (report.md, tables.json) from one run's results."""
    C = args.get("block4_channels", 1664)
    a = r["ours_cam_gradcam_4blocks_s"]
    rows = [
        ("(a) ours CAM+Grad-CAM 4 blocks vs theirs Grad-CAM 1 layer", a, r["theirs_gradcam_1layer_s"], "<= 0.9x time"),
        ("(a) ours CAM+Grad-CAM 4 blocks vs theirs Grad-CAM 4 calls", a, r["theirs_gradcam_4calls_s"], ">= 4x faster"),
        (f"(b) Score-CAM, {r['scorecam_channels_scored']} channels, both", r["ours_scorecam_subset_s"],
         r["theirs_scorecam_subset_s"], ">= 1.5x faster"),
        (f"(b) Score-CAM exact, all {C} channels, at {r['exact_size']} px", r["ours_scorecam_exact_s"],
         r["theirs_scorecam_exact_s"], ">= 1.5x faster"),
    ]
    speed = markdown_table([{"comparison": name, "ours s/img": ours, "theirs s/img": theirs,
                             "ours/theirs time": f"{ours / theirs:.2f}x", "speed-up": f"{theirs / ours:.2f}x",
                             "goal": goal} for name, ours, theirs, goal in rows], name="speed")
    topk = markdown_table([{"our Score-CAM top-k": f"k={k}, by {rank_by}", "s/img": r[f"topk{k}_{rank_by}_s"],
                            "speed-up vs our exact": f"{r['ours_scorecam_exact_s'] / r[f'topk{k}_{rank_by}_s']:.1f}x",
                            "Pearson r with exact": r[f"topk{k}_{rank_by}_corr_exact"]}
                           for k in args["top_k"] for rank_by in ("activation", "gradient")], name="topk")
    throughput = markdown_table([
        {"CAM + Grad-CAM": f"ours, batch {args['batch_size']}, 4 blocks", "images/s": r["ours_batched_img_per_s"]},
        {"CAM + Grad-CAM": "ours, one image at a time, 4 blocks", "images/s": r["ours_unbatched_img_per_s"]},
        {"CAM + Grad-CAM": f"theirs Grad-CAM, batch {args['batch_size']}, 1 layer",
         "images/s": r["theirs_batched_1layer_img_per_s"]}], digits=2, name="throughput")
    setting = (f"{args['arch']} {args['size']}x{args['size']}, device {args['device']}, {args['threads']} thread(s); "
               "seconds per image")
    exact = f"Score-CAM exact, ours vs theirs: max |difference| of the maps = {r['scorecam_exact_max_abs_diff']:.1e}"
    write_report(out, "common.cam vs pytorch-grad-cam", [setting, speed, exact, topk, throughput])
    print("\n".join(["", setting, "", speed, exact, "", topk, throughput]))


def main_or_tables(args):
    if args.from_json is None:
        return main(args)
    if not args.from_json.is_file():
        raise InputError("no such file (--from-json)", path=args.from_json, hint="pass a metrics.json of cam_speed.py")
    metrics = json.loads(args.from_json.read_text())
    if "floor" in metrics["results"]:
        write_report(args.from_json.parent, "common.cam one-pass rows beside their floor",
                     [floor_table(metrics["results"]["floor"])])
        return metrics["results"]
    report(metrics["results"], metrics["args"], args.from_json.parent)
    return metrics["results"]


if __name__ == "__main__":
    cli_main(main_or_tables, get_args())
