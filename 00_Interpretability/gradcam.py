"""Explain a bone-radiograph classifier with CAM, Grad-CAM and kin, on all four dense blocks at once.

CAM: Zhou et al., CVPR 2016 (https://arxiv.org/abs/1512.04150); Grad-CAM: Selvaraju et al., ICCV 2017
(https://arxiv.org/abs/1610.02391); Grad-CAM++, Score-CAM, Layer-CAM, XGrad-CAM, Eigen-CAM in common/cam.
CAM and every gradient method on every block come from ONE forward and ONE backward pass per batch.
Block maps: blocks 1-3 are the outputs of ``features.denseblock{k}`` (before the transition layer);
block 4 is ``model.relu`` = ReLU(norm5(denseblock4)), the exact features the classifier pools.

Without --checkpoint the small demo DenseNet trained on the bone phantom is used (trained once on
first use, a few CPU minutes, then cached). Without --img a few phantom radiographs are explained.
Each map explains one class, stated in every output: the predicted one unless --target-class is given.
A 1-logit head reads as p(abnormal) = sigmoid(logit); a head with K >= 2 outputs as softmax over K classes.

Usage: python 00_Interpretability/gradcam.py --img xray.png [more.png folder/ 'scans/*.dcm'] --method cam,gradcam
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cam.context import class_probabilities, resolve_targets  # noqa: E402
from common.cam.options import add_cam_args, check_methods_layers, parse_layers, parse_methods  # noqa: E402
from common.cam.outputs import output_stems, remove_stale, written_before  # noqa: E402
from common.cam.raw import KeepRaw  # noqa: E402
from common.cam.tta import explain_tta  # noqa: E402
from common.cli import add_common_args, int_at_least, make_parser, set_help  # noqa: E402
from common.data.geometry import back_to_original, to_square  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import list_images, read_image, save_image, save_json, save_npz  # noqa: E402
from common.models import MIN_INPUT_SIZE, block_layers, to_model_input  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import log, setup_run  # noqa: E402
from common.tasks.bone_session import load_explained  # noqa: E402
from common.viz import HEATMAP_LABEL, MASK_COLOURS, image_grid, overlay  # noqa: E402

SCRIPT = "gradcam.py"
BINARY_CLASSES = {0: "normal", 1: "abnormal"}  # a 1-logit head: class 1 scores the logit, class 0 its negation
DEMO_ON_USER_IMAGES = ("note: no --checkpoint, so the demo model explains your images, and it has only ever seen "
                       "phantom bone radiographs: its p(abnormal) on anything else (a real radiograph, a CT slice, a "
                       "photograph) means nothing -- pass --checkpoint with a model trained on such images")


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "gradcam", train=False)
    set_help(p, "--quick", "accepted so every script takes it (reproduce.py --quick passes it); gradcam.py's "
                           "settings are CPU-sized already, so it changes nothing here")
    set_help(p, "--data-root", "not used by gradcam.py (an error if given): pass image files or folders with --img")
    set_help(p, "--out", "where everything this run writes goes (default: runs/gradcam). A rerun into the same "
                         "folder replaces the files gradcam.py wrote there before (its metrics.json lists them) and "
                         "removes those it does not write again, so report.md, metrics.json and the images beside "
                         "them are always one run's; other files there are left alone")
    p.add_argument("--img", nargs="+", default=None,
                   help="image files, folders or globs (PNG/JPEG/BMP/TIFF 8/16-bit, DICOM, NIfTI); an unreadable "
                        "file among them is skipped, named at the end, and the exit status is 2; default: phantom "
                        "images")
    p.add_argument("--checkpoint", type=Path, default=None,
                   help="a train.py checkpoint or a torchvision-style DenseNet state_dict, with 1 output "
                        "(p(abnormal)) or K >= 2 (softmax); default: the demo model")
    p.add_argument("--arch", default=None, help="DenseNet arch of --checkpoint (default: read from its keys)")
    add_cam_args(p)
    p.add_argument("--target-class", type=int_at_least(0), default=None,
                   help="class to explain: for a 1-output model 1 = abnormal, 0 = normal; for K outputs 0..K-1 "
                        "(default: the predicted class)")
    p.add_argument("--size", type=int_at_least(MIN_INPUT_SIZE), default=None,
                   help=f"input side in px, >= {MIN_INPUT_SIZE} (default: the size the checkpoint records, else 320)")
    p.add_argument("--batch-size", type=int_at_least(1), default=8, help="images explained together")
    p.add_argument("--save-maps", action="store_true",
                   help="also write <stem>_maps.npz per image, holding: <method>_block<k> = the map as drawn, "
                        "(size, size) float32 in [0, 1] (ReLU, bilinear upsampling, min-max; after --tta) in the "
                        "padded-square frame; raw_<method>_block<k> = the same map before ReLU, upsampling and "
                        "scaling, at the block's feature resolution (of the image itself, not its --tta flips); "
                        "target_class, p_target, predicted, probs (per class); image_shape (H, W); square_side and "
                        "crop_box (x0, y0, x1, y1): the image sits at crop_box in the zero-padded square of side "
                        "square_side, so resizing a map to square_side and cropping maps it onto the image; "
                        "source (the file), tta")
    p.add_argument("--n-phantom", type=int_at_least(1), default=4,
                   help="phantom images explained when --img is not given")
    args = p.parse_args(argv)
    if args.data_root is not None:
        p.error("--data-root is not used by gradcam.py: pass image files or folders with --img")
    return args


def read_inputs(args):
    """([{stem, source, image (H, W), mask None}], [InputError of each unreadable file]), every file read (and so
    checked) before anything is written; None for the phantom. No readable file at all is the first file's error."""
    if args.img is None:
        return None, []  # phantom images are made once the model's input size is known
    paths = list_images(args.img)  # a missing path, an empty folder or an unsupported extension stops here
    items, unreadable = [], []
    for stem, path in zip(output_stems(paths), paths, strict=True):
        try:
            image = read_image(path, gray=True)[0]
        except InputError as exc:
            unreadable.append(exc)
            continue
        items.append({"stem": stem, "source": str(path), "image": image, "mask": None})
    if not items:
        if len(unreadable) == 1:
            raise unreadable[0]
        for exc in unreadable[:-1]:
            print(f"error: {exc}", file=sys.stderr)
        raise unreadable[-1]
    return items, unreadable


def phantom_inputs(args, size: int):
    from common.data.phantoms import BoneXrayPhantom

    seed = args.seed + 7
    ds = BoneXrayPhantom(n=args.n_phantom, size=size, seed=seed, abnormal_fraction=1.0)
    return [{"stem": f"phantom{i:02d}", "source": f"BoneXrayPhantom(seed={seed}) image {i}",
             "image": ds[i]["image"][0].numpy(), "mask": ds[i]["mask"].numpy()} for i in range(len(ds))]


def explaining(target: int, n_out: int, p: float, digits: int = 2) -> str:
    """'explaining class 1 (abnormal), p = 0.93': the class a map explains and its probability."""
    name = f"class {target} ({BINARY_CLASSES[target]})" if n_out == 1 else f"class {target}"
    return f"explaining {name}, p = {p:.{digits}f}"


def main(args):
    methods = parse_methods(args)
    blocks = parse_layers(args.layers)
    check_methods_layers(methods, blocks)
    items, unreadable = read_inputs(args)  # every image read and checked before --out is created
    user_images = items is not None
    ctx = setup_run(args)
    before = written_before(ctx.out, SCRIPT)
    with ctx.removing_out_on_error():  # a bad checkpoint leaves no empty --out behind
        clf = load_explained(args.checkpoint, ctx.device, args.arch, args.size)
        clf.check_class("--target-class", args.target_class)
    model, info, size, n_out = clf.model, clf.info, clf.size, clf.num_outputs
    items = items if user_images else phantom_inputs(args, size)
    notes = [DEMO_ON_USER_IMAGES.removeprefix("note: ")] if clf.is_demo and user_images else []
    if notes:
        log(DEMO_ON_USER_IMAGES)
    for it in items:
        it["square"], it["box"] = to_square(it["image"], size)
    print(f"model: {info['arch']} from {info['source']}; {n_out} output(s); input {size}x{size}; {len(items)} image(s)")
    all_layers = block_layers(model)
    layers = {k: all_layers[k] for k in blocks}
    rows, files = [], []

    def write(name, save, *a, **kw):  # every file this run writes is listed in metrics.json
        save(ctx.out / name, *a, **kw)
        files.append(name)

    for start in range(0, len(items), args.batch_size):
        chunk = items[start:start + args.batch_size]
        x = torch.from_numpy(np.stack([it["square"] for it in chunk]))[:, None].to(ctx.device)  # (B, 1, S, S)
        keep = {name: KeepRaw(m) for name, m in methods.items()} if args.save_maps else methods
        logits, maps = explain_tta(model, to_model_input(x), keep, layers, target=args.target_class, tta=args.tta)
        targets = resolve_targets(logits, args.target_class).cpu().numpy()  # (B,) the class each map explains
        probs = class_probabilities(logits).cpu().numpy()  # (B, classes)
        raw = {m: keep[m].by_layer(maps[m]) for m in maps} if args.save_maps else {}
        for b, it in enumerate(chunk):
            stem, original, box = it["stem"], it["image"], it["box"]
            target, predicted = int(targets[b]), int(probs[b].argmax())
            p_target = float(probs[b, target])
            per_image = {f"{m}_block{k}": maps[m][k][b].cpu().numpy() for m in maps for k in maps[m]}
            on_image = {key: back_to_original(m, box, original.shape) for key, m in per_image.items()}
            for key, m in on_image.items():
                write(f"{stem}_{key}.png", save_image, overlay(original, m))
            panel_keys = [(m, k) for m in maps for k in blocks if k in maps[m]]
            first = (f"input (p(abnormal)={probs[b, 1]:.2f})" if n_out == 1
                     else f"input (predicted {predicted}, p={probs[b, predicted]:.2f})")
            explained = explaining(target, n_out, p_target)
            mask = [it["mask"]] if it["mask"] is not None else []
            image_grid([original] + [original] * len(panel_keys), ctx.out / f"{stem}_panel.png",
                  titles=[first] + [f"{m} block {k}" for m, k in panel_keys],
                  heatmaps=[None] + [on_image[f"{m}_block{k}"] for m, k in panel_keys],
                  masks=[mask] * (1 + len(panel_keys)), ncols=min(6, 1 + len(panel_keys)),
                  shared_colorbar=HEATMAP_LABEL, suptitle=f"{stem}: {explained}",
                  legend=[("lesion (the phantom's mask)", MASK_COLOURS[0])] if mask else None)
            files.append(f"{stem}_panel.png")
            if args.save_maps:
                raw_maps = {f"raw_{m}_block{k}": r[b].numpy() for m in raw for k, r in raw[m].items()}
                write(f"{stem}_maps.npz", save_npz, **per_image, **raw_maps, target_class=np.int64(target),
                      p_target=np.float32(p_target), predicted=np.int64(predicted), probs=probs[b],
                      image_shape=np.array(original.shape, np.int64), square_side=np.int64(max(original.shape)),
                      crop_box=np.array(box, np.int64), source=np.array(it["source"]), tta=np.array(args.tta))
            if n_out == 1:
                print(f"{stem}: p(abnormal) = {probs[b, 1]:.3f}; {explaining(target, n_out, p_target, 3)}")
                row = {"image": stem, "p_abnormal": float(probs[b, 1]), "predicted": predicted}
            else:
                print(f"{stem}: predicted class {predicted}, p = {probs[b, predicted]:.3f}; "
                      f"{explaining(target, n_out, p_target, 3)}")
                row = {"image": stem, "predicted": predicted, "p_predicted": float(probs[b, predicted]),
                       "probs": [float(v) for v in probs[b]]}
            rows.append({**row, "target_class": target, "p_target": p_target, "source": it["source"]})
    classes = {str(c): BINARY_CLASSES[c] for c in BINARY_CLASSES} if n_out == 1 else None
    skipped = [{"source": str(exc.path), "error": exc.message} for exc in unreadable]
    files += ["report.md", "tables.json", "metrics.json"]
    result = {"script": SCRIPT, "model": info, "outputs": n_out, "classes": classes, "size": size,
              "methods": list(methods), "blocks": blocks, "tta": args.tta, "images": rows, "unreadable": skipped,
              "notes": notes, "files": files}
    panels = "\n".join(f"![{r['image']}]({r['image']}_panel.png)" for r in rows[:4])
    columns = [c for c in rows[0] if c != "probs"]
    unread = ([f"Not explained, unreadable ({len(skipped)}):\n\n" + "\n".join(f"- `{s['source']}`: {s['error']}"
                                                                           for s in skipped)] if skipped else [])
    write_report(ctx.out, "CAM and Grad-CAM on the four dense blocks", [
        f"Model: {info['arch']} ({info['source']}), {n_out} output(s): "
        + ("p(abnormal) = sigmoid of the logit" if n_out == 1 else f"softmax over {n_out} classes")
        + "; maps from one forward and one backward pass per batch. Each image's maps explain the class in "
        "`target_class` (" + ("the one given by --target-class" if args.target_class is not None
                              else "the predicted class") + "), whose probability is `p_target`.",
        *[f"**Note:** {n}." for n in notes], markdown_table(rows, columns, name="images"), *unread, panels])
    save_json(ctx.out / "metrics.json", result)
    removed = remove_stale(ctx.out, before, files)
    print(f"wrote {ctx.out} (report.md, metrics.json and {len(files) - 3} files for {len(rows)} image(s)"
          + (f"; removed {len(removed)} left from the previous run)" if removed else ")"))
    if unreadable:
        for exc in unreadable:
            print(f"skipped: {exc}", file=sys.stderr)
        raise InputError(f"{len(unreadable)} of {len(unreadable) + len(rows)} images could not be read (each named "
                         f"above); the other {len(rows)} {'is' if len(rows) == 1 else 'are'} explained in {ctx.out}",
                         hint="fix or remove those files and rerun")
    return result


if __name__ == "__main__":
    cli_main(main, get_args())
