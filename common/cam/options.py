"""Command-line options shared by the scripts that compute CAMs (--method, --layers, Score-CAM top-k)."""

from __future__ import annotations

from common.cam.registry import METHODS
from common.cam.scorecam import ScoreCAM
from common.cam.tta import TTA
from common.cli import int_at_least
from common.errors import InputError


def add_cam_args(parser, methods: str = "cam,gradcam", layers: str = "1,2,3,4", topk: int = 64,
                 tta: str = "none") -> None:
    parser.add_argument("--method", default=methods, help=f"comma list of {', '.join(METHODS)} (cam at block 4 "
                        "only: it weights the features the classifier pools; the others at every --layers block)")
    parser.add_argument("--layers", default=layers, help="dense blocks to explain (comma list of 1-4)")
    parser.add_argument("--scorecam-topk", type=int_at_least(0), default=topk,
                        help="Score-CAM: score only the top-k channels (0 = all)")
    parser.add_argument("--scorecam-rank", default="activation", choices=("activation", "gradient"),
                        help="Score-CAM: rank channels by mean activation or by Grad-CAM weight")
    parser.add_argument("--tta", default=tta, choices=tuple(TTA),
                        help="test-time augmentation: average the maps of flipped copies (flips = the image and its "
                             "horizontal, vertical and double flip; hflip-intensity = pytorch-grad-cam's aug_smooth)")


def parse_methods(args) -> dict:
    """--method 'cam,gradcam,...' -> {name: configured method instance}."""
    names = [m.strip() for m in args.method.split(",") if m.strip()]
    unknown = [m for m in names if m not in METHODS]
    if unknown or not names:
        raise InputError(f"unknown --method {','.join(unknown) or '(empty)'}", hint=f"choose from {', '.join(METHODS)}")
    return {name: ScoreCAM(top_k=args.scorecam_topk or None, rank_by=args.scorecam_rank) if name == "scorecam"
            else METHODS[name]() for name in names}


def parse_layers(text: str) -> list[int]:
    """--layers '1,2,3,4' -> [4, 3, 2, 1] (deepest first, as the survey's figures show them)."""
    try:
        blocks = sorted({int(b) for b in text.split(",") if b.strip()}, reverse=True)
    except ValueError:
        blocks = []
    if not blocks or any(b not in (1, 2, 3, 4) for b in blocks):
        raise InputError(f"--layers {text!r} must be a comma list of dense blocks 1-4")
    return blocks


def check_methods_layers(methods: dict, blocks: list[int]) -> None:
    """CAM is defined on the features the linear head pools (block 4): refuse it without block 4, before any work."""
    if "cam" in methods and 4 not in blocks:
        raise InputError(f"--method cam needs block 4 in --layers (got {','.join(map(str, blocks))})",
                         hint="CAM weights the features the classifier pools; use gradcam or layercam for blocks 1-3")
