"""Test configuration: put the repository root on sys.path and keep matplotlib headless."""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("MPLBACKEND", "Agg")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """The demo DenseNet layout ('mini', --quick) trained for one epoch on 24 phantom images at 64 px by train.py."""
    from tests.helpers.scripts import load_script

    out = tmp_path_factory.mktemp("train")
    train = load_script("00_Interpretability", "train")
    args = train.get_args(["--quick", "--n-train", "24", "--n-val", "8", "--size", "64", "--epochs", "1",
                           "--batch-size", "8", "--out", str(out), "--device", "cpu"])
    result = train.main(args)
    assert {"image", "study", "per_body_part"} <= set(result)
    assert (out / "best.pt").exists() and (out / "report.md").exists() and (out / "loss.png").exists()
    # a --quick run below the demo's AUROC gate says so and how to continue it (the demo model's warm restart)
    suggested = f"--weights {out / 'best.pt'} --epochs 6 --lse-r-start 1 --seed 1 --out {out}_restart"
    assert (suggested in (out / "report.md").read_text()) == (result["image"]["auroc"] < 0.85)
    return out / "best.pt"


@pytest.fixture(scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a shared CPU OpenMP barriers can cost 100x: a module that
    uses it (``pytestmark = pytest.mark.usefixtures("one_thread")``) runs torch on one thread, then restores it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
