"""common.runtime (seeding, device choice), common.errors (one-line exit) and common.viz (figures written)."""

import numpy as np
import pytest
import torch

from common.errors import InputError
from common.runtime import choose_device, seed_everything


def test_seeding_repeats_every_generator():
    import random

    seed_everything(3)
    a = (random.random(), np.random.rand(), torch.rand(1).item())
    seed_everything(3)
    assert a == (random.random(), np.random.rand(), torch.rand(1).item())


def test_device_choice():
    assert choose_device("cpu").type == "cpu"
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    assert choose_device("auto").type == ("cuda" if torch.cuda.is_available() else "mps" if mps else "cpu")
    with pytest.raises(InputError, match="unknown device"):
        choose_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA GPU"):
            choose_device("cuda")


def test_cli_main_turns_input_error_into_one_line_exit_2(capsys):
    from common.errors import cli_main

    def main(args):
        raise InputError("file is corrupt", path="x.png", hint="re-export it")

    with pytest.raises(SystemExit) as exit_:
        cli_main(main, None)
    assert exit_.value.code == 2
    assert capsys.readouterr().err.strip() == "error: x.png: file is corrupt -- re-export it"


def test_figures_are_written_and_closed(tmp_path):
    import matplotlib.pyplot as plt

    from common.viz import curves, image_grid, overlay

    img = np.random.default_rng(0).random((16, 16)).astype(np.float32)
    heat = np.zeros((16, 16), np.float32)
    heat[4:8, 4:8] = 1
    blended = overlay(img, heat, alpha=0.5)
    assert blended.shape == (16, 16, 3) and blended.max() <= 1
    with pytest.raises(ValueError, match="differ in size"):
        overlay(img, heat[:8])
    before = len(plt.get_fignums())
    image_grid([img, img[None]], tmp_path / "g.png", titles=["a", "b"], heatmaps=[heat, None],
               masks=[[heat > 0], []], boxes=[[(4, 4, 8, 8)], []], colorbar=True)
    curves([1, 2, 3], {"runs": np.ones((3, 3)), "one": [1, 2, 3]}, tmp_path / "c.png", "x", "y", "t")
    assert (tmp_path / "g.png").stat().st_size > 1000 and (tmp_path / "c.png").exists()
    assert len(plt.get_fignums()) == before
