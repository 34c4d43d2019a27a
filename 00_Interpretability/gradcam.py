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
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common.cam.base import BaseCAM, class_probabilities, resolve_targets  # noqa: E402
from common.cam.options import add_cam_args, check_methods_layers, parse_layers, parse_methods  # noqa: E402
from common.cam.tta import explain_tta  # noqa: E402
from common.cli import add_common_args, int_at_least, make_parser, set_help  # noqa: E402
from common.data.datasets.files import pad_to_square, resize_image  # noqa: E402
from common.errors import InputError, cli_main  # noqa: E402
from common.io import IMAGE_EXTENSIONS, list_images, read_image, save_image, save_json, save_npz  # noqa: E402
from common.models import MIN_INPUT_SIZE, block_layers, to_model_input  # noqa: E402
from common.report import markdown_table, write_report  # noqa: E402
from common.runtime import setup_run  # noqa: E402
from common.tasks.bone_demo import load_classifier  # noqa: E402
from common.viz import image_grid, overlay  # noqa: E402

BINARY_CLASSES = {0: "normal", 1: "abnormal"}  # a 1-logit head: class 1 scores the logit, class 0 its negation


def get_args(argv=None):
    p = make_parser(__doc__)
    add_common_args(p, "gradcam", train=False)
    set_help(p, "--quick", "accepted so every script takes it (reproduce.py --quick passes it); gradcam.py's "
                           "settings are CPU-sized already, so it changes nothing here")
    set_help(p, "--data-root", "not used by gradcam.py (an error if given): pass image files or folders with --img")
    p.add_argument("--img", nargs="+", default=None,
                   help="image files, folders or globs (PNG/JPEG/BMP/TIFF 8/16-bit, DICOM, NIfTI); "
                        "default: phantom images")
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


def image_stem(name: str) -> str:
    """A file name without its image extension (".nii.gz" as one; dots inside a DICOM UID name are kept)."""
    for ext in sorted(IMAGE_EXTENSIONS, key=len, reverse=True):
        if name.lower().endswith(ext) and len(name) > len(ext):
            return name[:-len(ext)]
    return name


def output_stems(paths) -> list[str]:
    """One output name per path: the image stem, and where two stems clash (compared case-insensitively, as
    macOS and Windows file systems do) a suffix _1, _2, ... on each of those only, so no output overwrites another."""
    stems = [image_stem(Path(p).name) for p in paths]
    count = Counter(s.lower() for s in stems)
    taken = {s.lower() for s in stems}
    seen: Counter = Counter()
    out = []
    for s in stems:
        if count[s.lower()] > 1:
            name = s
            while name.lower() in taken:
                seen[s.lower()] += 1
                name = f"{s}_{seen[s.lower()]}"
            taken.add(name.lower())
            s = name
        out.append(s)
    return out


def read_inputs(args):
    """[{stem, source, image (H, W), mask None}], all read (and so checked) before anything is written."""
    if args.img is None:
        return None  # phantom images are made once the model's input size is known
    paths = list_images(args.img)
    images = [read_image(path, gray=True)[0] for path in paths]
    return [{"stem": stem, "source": str(path), "image": img, "mask": None}
            for stem, path, img in zip(output_stems(paths), paths, images)]


def phantom_inputs(args, size: int):
    from common.data.phantoms import BoneXrayPhantom

    seed = args.seed + 7
    ds = BoneXrayPhantom(n=args.n_phantom, size=size, seed=seed, abnormal_fraction=1.0)
    return [{"stem": f"phantom{i:02d}", "source": f"BoneXrayPhantom(seed={seed}) image {i}",
             "image": ds[i]["image"][0].numpy(), "mask": ds[i]["mask"].numpy()} for i in range(len(ds))]


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


class KeepRaw(BaseCAM):
    """A CAM method that also keeps its raw maps (B, h, w): before ReLU, upsampling and min-max, at the layer's
    resolution, in the order ``explain`` computes them (layer by layer; under test-time augmentation the image's
    own view comes first)."""

    def __init__(self, method: BaseCAM):
        self.method, self.name, self.raw = method, method.name, []

    @property
    def uses_gradients(self) -> bool:
        return self.method.uses_gradients

    def applies_to(self, acts, ctx) -> bool:
        return self.method.applies_to(acts, ctx)

    def raw_map(self, acts, grads, ctx):
        raw = self.method.raw_map(acts, grads, ctx)  # (B, h, w)
        self.raw.append(raw.detach().float().cpu())
        return raw


def explaining(target: int, n_out: int, p: float, digits: int = 2) -> str:
    """'explaining class 1 (abnormal), p = 0.93': the class a map explains and its probability."""
    name = f"class {target} ({BINARY_CLASSES[target]})" if n_out == 1 else f"class {target}"
    return f"explaining {name}, p = {p:.{digits}f}"


def main(args):
    methods = parse_methods(args)
    blocks = parse_layers(args.layers)
    check_methods_layers(methods, blocks)
    items = read_inputs(args)  # every image read and checked before --out is created
    ctx = setup_run(args)
    with ctx.removing_out_on_error():  # a bad checkpoint leaves no empty --out behind
        model, info = load_classifier(args.checkpoint, ctx.device, args.arch)
        n_out = int(model.num_outputs)
        n_classes = 2 if n_out == 1 else n_out
        if args.target_class is not None and args.target_class >= n_classes:
            raise InputError(f"--target-class {args.target_class} is not a class of this model ({n_out} output"
                             f"{'s' if n_out > 1 else ''}: classes 0..{n_classes - 1})", path=info["source"],
                             hint=f"choose 0..{n_classes - 1}")
    size = args.size or info.get("size") or 320
    items = items if items is not None else phantom_inputs(args, size)
    for it in items:
        it["square"], it["box"] = to_square(it["image"], size)
    print(f"model: {info['arch']} from {info['source']}; {n_out} output(s); input {size}x{size}; {len(items)} image(s)")
    all_layers = block_layers(model)
    layers = {k: all_layers[k] for k in blocks}
    rows = []
    for start in range(0, len(items), args.batch_size):
        chunk = items[start:start + args.batch_size]
        x = torch.from_numpy(np.stack([it["square"] for it in chunk]))[:, None].to(ctx.device)  # (B, 1, S, S)
        keep = {name: KeepRaw(m) for name, m in methods.items()} if args.save_maps else methods
        logits, maps = explain_tta(model, to_model_input(x), keep, layers, target=args.target_class, tta=args.tta)
        targets = resolve_targets(logits, args.target_class).cpu().numpy()  # (B,) the class each map explains
        probs = class_probabilities(logits).cpu().numpy()  # (B, classes)
        # the first len(maps[m]) raw maps are the image's own view, one per block in maps[m]'s order
        raw = {m: dict(zip(maps[m], keep[m].raw)) for m in maps} if args.save_maps else {}
        for b, it in enumerate(chunk):
            stem, original, box = it["stem"], it["image"], it["box"]
            target, predicted = int(targets[b]), int(probs[b].argmax())
            p_target = float(probs[b, target])
            per_image = {f"{m}_block{k}": maps[m][k][b].cpu().numpy() for m in maps for k in maps[m]}
            for key, m in per_image.items():
                save_image(ctx.out / f"{stem}_{key}.png", overlay(original, back_to_original(m, box, original.shape)))
            panel_keys = [(m, k) for m in maps for k in blocks if k in maps[m]]
            first = (f"input (p(abnormal)={probs[b, 1]:.2f})" if n_out == 1
                     else f"input (predicted {predicted}, p={probs[b, predicted]:.2f})")
            explained = explaining(target, n_out, p_target)
            image_grid([original] + [original] * len(panel_keys), ctx.out / f"{stem}_panel.png",
                       titles=[first] + [f"{m} block {k}" for m, k in panel_keys],
                       heatmaps=[None] + [back_to_original(maps[m][k][b].cpu().numpy(), box, original.shape)
                                          for m, k in panel_keys],
                       masks=[[it["mask"]] if it["mask"] is not None else []] * (1 + len(panel_keys)),
                       ncols=min(6, 1 + len(panel_keys)), colorbar=True, suptitle=f"{stem}: {explained}")
            if args.save_maps:
                raw_maps = {f"raw_{m}_block{k}": r[b].numpy() for m in raw for k, r in raw[m].items()}
                save_npz(ctx.out / f"{stem}_maps.npz", **per_image, **raw_maps, target_class=np.int64(target),
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
    result = {"model": info, "outputs": n_out, "classes": classes, "size": size, "methods": list(methods),
              "blocks": blocks, "tta": args.tta, "images": rows}
    panels = "\n".join(f"![{r['image']}]({r['image']}_panel.png)" for r in rows[:4])
    columns = [c for c in rows[0] if c != "probs"] if rows else None
    write_report(ctx.out, "CAM and Grad-CAM on the four dense blocks", [
        f"Model: {info['arch']} ({info['source']}), {n_out} output(s): "
        + ("p(abnormal) = sigmoid of the logit" if n_out == 1 else f"softmax over {n_out} classes")
        + "; maps from one forward and one backward pass per batch. Each image's maps explain the class in "
        "`target_class` (" + ("the one given by --target-class" if args.target_class is not None
                              else "the predicted class") + "), whose probability is `p_target`.",
        markdown_table(rows, columns), panels])
    save_json(ctx.out / "metrics.json", result)
    return result


if __name__ == "__main__":
    cli_main(main, get_args())
