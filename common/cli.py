"""The flags every script shares, so ``--data-root``, ``--out``, ``--device`` ... mean the same everywhere."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from common.runtime import DEVICE_CHOICES


class OneLineErrorParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block above them), exit status 2 as argparse's."""

    def error(self, message: str):
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """Help that keeps the docstring's line breaks and shows defaults, except where the help text already says
    what its default is (or the default is None, which the help explains)."""

    def _get_help_string(self, action):
        text = action.help or ""
        return text if "default" in text or action.default is None else super()._get_help_string(action)


def make_parser(doc: str | None) -> argparse.ArgumentParser:
    """A parser whose description is the script's docstring, whose help shows defaults and whose errors are one line."""
    return OneLineErrorParser(description=doc, formatter_class=HelpFormatter)


def int_at_least(low: int):
    """argparse ``type=`` for an integer >= ``low``: a smaller or non-integer value is argparse's one-line error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer >= {low}, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value

    parse.__name__ = f"integer >= {low}"  # argparse names the type in its messages
    return parse


def float_range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
                high_open: bool = False):
    """argparse ``type=`` for a finite number between ``low`` and ``high`` (None: no bound; ``*_open``: the bound
    itself excluded): ``float_range(0, 1)`` for a probability, ``float_range(0, low_open=True)`` for a learning rate.
    Text, nan, inf or a value outside is argparse's one-line error, naming the flag."""
    if low is not None and high is not None:
        where = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    elif low is not None:
        where = f"{'>' if low_open else '>='} {low:g}"
    else:
        where = f"{'<' if high_open else '<='} {high:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number {where}, got {text!r}") from None
        below = low is not None and (value <= low if low_open else value < low)
        above = high is not None and (value >= high if high_open else value > high)
        if not math.isfinite(value) or below or above:
            raise argparse.ArgumentTypeError(f"must be a finite number {where}, got {text.strip()}")
        return value

    parse.__name__ = f"number {where}"  # argparse names the type in its messages
    return parse


def set_help(parser: argparse.ArgumentParser, flag: str, text: str) -> None:
    """Say what a shared flag (from add_common_args / add_cam_args) does in this script."""
    parser._option_string_actions[flag].help = text  # argparse has no public setter


def add_common_args(
    parser: argparse.ArgumentParser,
    script: str,
    *,
    datasets: tuple[str, ...] | None = None,
    epochs: int | None = None,
    batch_size: int | None = None,
    lr: float | None = None,
    train: bool = True,
    data_root: bool = True,
) -> argparse.ArgumentParser:
    """Add --dataset/--data-root/--out/--device/--seed/--quick and, when ``train``,
    --epochs/--batch-size/--lr/--resume. ``data_root=False``: a script that reads no dataset folder has no
    --data-root (argparse then refuses it in one line instead of ignoring it)."""
    if datasets:
        parser.add_argument("--dataset", default=datasets[0], choices=datasets,
                            help="built-in phantom (offline) or a real public dataset (needs --data-root)")
    if data_root:
        parser.add_argument("--data-root", type=Path, default=None,
                            help="folder of the real dataset in its published layout")
    parser.add_argument("--out", type=Path, default=Path("runs") / script, help="where everything this run writes goes")
    parser.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="auto = CUDA, then MPS, then CPU")
    parser.add_argument("--seed", type=int_at_least(0), default=0, help="random seed (>= 0)")
    parser.add_argument("--quick", action="store_true", help="small, fast settings for a CPU smoke run")
    if train:
        parser.add_argument("--epochs", type=int_at_least(1), default=epochs, help="training epochs")
        parser.add_argument("--batch-size", type=int_at_least(1), default=batch_size,
                            help="images per batch (per process under DDP)")
        parser.add_argument("--lr", type=float_range(0, low_open=True), default=lr, help="learning rate (> 0)")
        parser.add_argument("--resume", action="store_true", help="continue from <out>/last.pt")
        parser.add_argument("--workers", type=int_at_least(0), default=0, help="data-loader worker processes")
    return parser



def parse_args(parser: argparse.ArgumentParser, argv=None, quick: dict | None = None) -> argparse.Namespace:
    """``parser.parse_args(argv)``; with --quick, the values in ``quick`` are the defaults instead (a flag given on the
    command line still wins: ``--quick --size 96`` trains at 96)."""
    if quick:
        known, _ = parser.parse_known_args(argv)
        if getattr(known, "quick", False):
            unknown = sorted(set(quick) - {a.dest for a in parser._actions})
            assert not unknown, f"quick defaults for flags the parser lacks: {unknown}"
            parser.set_defaults(**quick)
    return parser.parse_args(argv)


def comma_list(choices, what: str = "name(s)"):
    """argparse ``type=`` for a comma list of names out of ``choices``, duplicates dropped, order kept; an unknown
    or empty list is argparse's one-line error (``argument --x: unknown or no name(s) [...]; choose from ...``)."""

    def parse(text: str) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
        unknown = [n for n in names if n not in choices]
        if unknown or not names:
            raise argparse.ArgumentTypeError(f"unknown or no {what} {unknown or text!r}; choose from "
                                             f"{', '.join(choices)}")
        return names

    parse.__name__ = "comma list"
    return parse
