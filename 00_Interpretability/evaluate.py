"""Score CAM, Grad-CAM and kin against the true lesion masks of the bone phantom, block by block.

Localisation: pointing game with a tolerance (Zhang et al. 2016, https://arxiv.org/abs/1608.00507),
energy-based pointing game (Wang et al. 2020, https://arxiv.org/abs/1910.01279), IoU of the map
thresholded at a fraction of its maximum; faithfulness: deletion / insertion AUC (Petsiuk et al. 2018,
https://arxiv.org/abs/1806.07421). Real MURA has no lesion masks, so only the phantom can be scored.

Usage: python 00_Interpretability/evaluate.py --quick          (the demo model; trains it on first use)
       python 00_Interpretability/evaluate.py --checkpoint runs/train/best.pt --method cam,gradcam,scorecam
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from common.cam.evidence import cam_evidence_offsets, summarize_offsets  # noqa: E402
from common.cam.options import add_cam_args, check_methods_layers, parse_layers, parse_methods  # noqa: E402
from common.cam.scoring import pointing_tolerance, score_dataset  # noqa: E402
from common.cli import add_common_args, float_range, int_at_least, make_parser, parse_args  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import save_json  # noqa: E402
from common.models import MIN_INPUT_SIZE, block_layers  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import setup_run  # noqa: E402
from common.tasks.bone_session import load_explained  # noqa: E402
from common.viz import HEATMAP_LABEL, MASK_COLOURS, image_grid  # noqa: E402

GOAL_POINTING = 0.8
EXAMPLE_MAPS = 4  # map columns of examples.png beside the input: readable at a README's width


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "evaluate", datasets=("phantom", "mura"), train=False)
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="classifier checkpoint: one output, p(abnormal), or K classes with --abnormal-class "
                        "(default: the demo model)")
    p.add_argument("--arch", default=None, help="DenseNet arch of --checkpoint (default: read from its keys)")
    add_cam_args(p, methods="cam,gradcam,gradcampp,layercam,xgradcam,eigencam,scorecam", topk=32)
    p.add_argument("--abnormal-class", type=int_at_least(0), default=1,
                   help="the output index of 'abnormal' in a K-class head (softmax); a 1-output head's logit is "
                        "class 1")
    p.add_argument("--n", type=int_at_least(1), default=400, help="abnormal phantom images to score")
    p.add_argument("--size", type=int_at_least(MIN_INPUT_SIZE), default=None,
                   help=f"image side in px, >= {MIN_INPUT_SIZE} (default: the size the checkpoint records, else 320)")
    p.add_argument("--tolerance", type=int_at_least(0), default=None,
                   help="pointing-game tolerance in pixels (default: 1/16 of the image side, 8 px at 128; Zhang et al. "
                        "used 15 px at 224)")
    p.add_argument("--threshold", type=float_range(0, 1, low_open=True), default=0.5,
                   help="IoU: map >= threshold x max, in (0, 1]")
    p.add_argument("--faithfulness", type=int_at_least(0), default=100,
                   help="images that also get deletion/insertion AUC")
    p.add_argument("--batch-size", type=int_at_least(1), default=16,
                   help="images explained and scored together")
    # --quick: deletion / insertion (34 forward passes per image and map, half the run) over 16 images: each mean
    # stayed within 1.4 standard errors of its 24-image value (2026-12-02, the demo model, all 25 maps)
    return parse_args(p, argv, quick=dict(n=120, faithfulness=16))


def main(args):
    if args.dataset != "phantom":
        raise InputError(f"--dataset {args.dataset} has no lesion masks, so explanations cannot be scored against "
                         "them", hint="score on the phantom; on MURA, look at gradcam.py's maps instead")
    methods = parse_methods(args)
    blocks = parse_layers(args.layers)
    check_methods_layers(methods, blocks)
    ctx = setup_run(args)
    with ctx.removing_out_on_error():  # a bad checkpoint leaves no empty --out behind
        clf = load_explained(args.checkpoint, ctx.device, args.arch, args.size)
        # the maps, p(abnormal) and the deletion / insertion curves follow the abnormal class
        clf.check_class("--abnormal-class", args.abnormal_class, one_output=(1,),
                        one_output_hint="leave --abnormal-class at 1 for a 1-output head: its logit is class 1 "
                                        "(abnormal)")
    model, info, size = clf.model, clf.info, clf.size
    if args.tolerance is None:
        args.tolerance = pointing_tolerance(size)
    from common.data.phantoms import BoneXrayPhantom

    data = BoneXrayPhantom(n=args.n, size=size, seed=args.seed + 200_000, abnormal_fraction=1.0)
    layers = {k: block_layers(model)[k] for k in blocks}
    target = args.abnormal_class
    res = score_dataset(model, data, methods, layers, ctx.device, target=target, tolerance=args.tolerance,
                        threshold=args.threshold, faithfulness=args.faithfulness, batch_size=args.batch_size,
                        tta=args.tta)
    rows = res["rows"]
    detected = float((res["predicted"] == target).mean())
    split = pointing_by_detection(res, ("cam", 4, "lesion"), target)
    examples_figure(res, rows, ctx.out / "examples.png")
    cam4 = next((r for r in rows if r["method"] == "cam" and r["block"] == 4), None)
    verdict = ("" if cam4 is None else
               f"CAM pointing game at block 4: **{cam4['pointing_game']:.3f}** (goal >= {GOAL_POINTING}: "
               f"{'met' if cam4['pointing_game'] >= GOAL_POINTING else 'NOT met'}).")
    cam4_other = None
    if cam4 is not None:  # the other reading of the same maps, so every run reports both
        other = "flips" if args.tta == "none" else "none"
        again = score_dataset(model, data, {"cam": methods["cam"]}, {4: layers[4]}, ctx.device, target=target,
                              tolerance=args.tolerance, keep=0, batch_size=args.batch_size, tta=other)
        cam4_other = {"tta": other, "pointing_game": again["rows"][0]["pointing_game"]}
        verdict += f" With `--tta {other}`: {cam4_other['pointing_game']:.3f}."
    cols = ["method", "block", "n", "pointing_game", "energy_pg", "iou", "deletion_auc", "insertion_auc"]
    # Where the block-4 CAM peak looks: a miss with the evidence on the lesion is a displaced explanation
    ev = summarize_offsets(cam_evidence_offsets(model, data, ctx.device, batch_size=args.batch_size, target=target),
                           args.tolerance)
    evidence = (f"Where the block-4 CAM peak looks (`common/cam/evidence.py`): the peak lies within "
                f"{args.tolerance} px of the lesion in {ev['peak_pointing_game']:.0%} of the images (median distance "
                f"{ev['median_peak_px']:.1f} px); the input pixel with the largest gradient of the peak value does "
                f"in {ev['evidence_pointing_game']:.0%} (median {ev['median_evidence_px']:.1f} px). In "
                f"{ev['displaced']:.0%} the peak misses while its evidence is on the lesion: the model used the "
                "lesion but its features carry it to a cell beside it.")
    write_report(ctx.out, "Scoring explanations against the phantom's lesion masks", [
        f"Model: {info['arch']} ({info['source']}); {len(data)} abnormal phantom images at {size} px, "
        f"{detected:.0%} of them classified abnormal. Maps: test-time augmentation {args.tta!r}. Pointing-game "
        f"tolerance {args.tolerance} px; IoU at "
        f"{args.threshold} x max; deletion/insertion over {args.faithfulness} images (lower deletion and higher "
        "insertion AUC = more faithful).", verdict, split["text"], markdown_table(rows, cols, name="scores"), evidence,
        "![the first phantom images: the input and the best-scoring maps, the lesion outlined](examples.png)"])
    result = {"model": info, "n": len(data), "detected": detected, "tolerance": args.tolerance, "tta": args.tta,
              "rows": rows, "cam_evidence": ev,
              "cam_block4_by_detection": {k: v for k, v in split.items() if k != "text"},
              "cam_block4_pointing_game": cam4["pointing_game"] if cam4 else None,
              "cam_block4_other_tta": cam4_other}
    save_json(ctx.out / "metrics.json", result)
    print(markdown_table(rows, cols))
    if verdict:
        print(verdict.replace("**", ""))
    print(split["text"])
    print(evidence.replace("`", ""))
    print(f"wrote {ctx.out} (report.md, metrics.json, examples.png)")
    return result


def examples_figure(res: dict, rows: list, path) -> None:
    """The first images (rows): the input with its lesion, then up to EXAMPLE_MAPS maps, each method at its best
    block by pointing game, the best methods first; a map equal to one already shown (CAM and Grad-CAM coincide at
    block 4) is left out."""
    ex = res["examples"]
    best = {}
    for r in sorted(rows, key=lambda r: (-r["pointing_game"], -r["block"])):
        best.setdefault(r["method"], r)  # each method's best block
    chosen = []
    for r in sorted(best.values(), key=lambda r: -r["pointing_game"]):
        key = (r["method"], r["block"])
        if key not in ex["maps"]:
            continue
        same = any(np.abs(np.stack(ex["maps"][key]) - np.stack(ex["maps"][(c["method"], c["block"])])).max() < 1e-4
                   for c in chosen)
        if not same:
            chosen.append(r)
        if len(chosen) == EXAMPLE_MAPS:
            break
    n_ex, cols = len(ex["images"]), len(chosen) + 1
    titles = ["input + lesion"] + [f"{c['method']} block {c['block']}\npointing game {c['pointing_game']:.2f}"
                                   for c in chosen]
    image_grid([img for img in ex["images"] for _ in range(cols)], path,
               titles=titles + [""] * (cols * (n_ex - 1)),
               heatmaps=[h for i in range(n_ex) for h in [None] + [ex["maps"][(c["method"], c["block"])][i]
                                                                   for c in chosen]],
               masks=[ex["masks"][i] for i in range(n_ex) for _ in range(cols)], ncols=cols, cell=2.4,
               row_labels=[f"image {i} (p(abnormal) {res['probs'][i]:.2f})" for i in range(n_ex)],
               shared_colorbar=HEATMAP_LABEL, legend=[("lesion (the phantom's mask)", MASK_COLOURS[0])],
               suptitle=f"The best {len(chosen)} of {len(rows)} method x block maps by pointing game (each method at "
                        "its best block; all in report.md's table)")


def pointing_by_detection(res: dict, key: tuple, target: int = 1) -> dict:
    """Pointing game of one map over the images the model classifies abnormal (its predicted class is ``target``)
    and over those it misses."""
    hits = res["hits"].get(key)
    if hits is None:
        return {"text": ""}
    found, scored = res["predicted"] == target, ~np.isnan(hits)
    out = {}
    for name, sel in (("detected", found & scored), ("missed", ~found & scored)):
        out[name] = {"n": int(sel.sum()), "pointing_game": float(hits[sel].mean()) if sel.any() else None}

    def fmt(d):
        return "n/a" if d["pointing_game"] is None else f"{d['pointing_game']:.3f} (n = {d['n']})"

    method, block, _ = key
    out["text"] = (f"{method.upper() if method == 'cam' else method} block {block} pointing game over the images "
                   f"the model classifies abnormal: {fmt(out['detected'])}; over those it misses: "
                   f"{fmt(out['missed'])}.")
    return out


if __name__ == "__main__":
    cli_main(main, get_args())
