"""02_TransferLearning/domain_adaptation.py: the table on tiny settings (quick rows, full mode's seeds, REFUGE's
layout), --img on photographs, and bad input (one line, exit 2)."""

import json

import numpy as np
import pytest
from PIL import Image

from common.data.phantoms.fundus import FundusPhantom
from tests.helpers.scripts import load_script, run_main

script = load_script("02_TransferLearning", "domain_adaptation")
TINY = ["--size", "64", "--crop", "32", "--n-source", "6", "--n-target", "6", "--n-val", "4", "--epochs", "1",
        "--width", "4", "--depth", "2", "--batch-size", "4", "--jobs", "1"]


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("da") / "quick"
    metrics = script.main(script.get_args(["--quick", *TINY, "--out", str(out)]))
    return out, metrics


def test_quick_table_rows_figures_and_models(quick_run):
    out, metrics = quick_run
    rows = {r["key"]: r for r in metrics["rows"]}
    assert list(rows) == [*script.QUICK_METHODS, "survey"]
    for key in script.QUICK_METHODS:
        assert 0.0 <= rows[key]["cup_dice"] <= 1.0 and 0.0 <= rows[key]["disc_dice"] <= 1.0
        assert rows[key]["vcdr_mae"] >= 0.0 and rows[key]["n_seeds"] == 1
        assert (out / key / "seed0" / "model.pt").exists()
    assert rows["survey"]["cup_dice"] == 0.8246
    table = json.loads((out / "tables.json").read_text())["table"]
    assert table["columns"][:4] == ["method", "disc_dice", "disc_dice_std", "cup_dice"]
    assert {"vcdr_mae", "vcdr_mae_std"} <= set(table["columns"])
    assert (out / "examples.png").exists() and (out / "curves.png").exists()
    history = json.loads((out / "dann" / "seed0" / "metrics.json").read_text())["history"]
    assert {"val_cup_dice", "val_train_seg_loss", "val_train_d_loss"} <= set(history[0])
    assert "cup_gap" in metrics["goals"]


def test_the_run_scores_its_own_predictions(quick_run):
    """A run's reported Cup Dice is the REFUGE metric of its saved predictions (first val crops, recomputed)."""
    from common.metrics.fundus import fundus_scores

    out, _ = quick_run
    fig = np.load(out / "oracle" / "seed0" / "figure.npz")
    run = json.loads((out / "oracle" / "seed0" / "metrics.json").read_text())
    assert run["n_val"] == 4 and len(fig["pred"]) == 4  # every val crop is in the figure file here
    assert fundus_scores(fig["pred"], fig["truth"])["cup_dice"] == pytest.approx(run["cup_dice"])


def test_full_mode_seeds_give_a_std(tmp_path):
    argv = [*TINY, "--methods", "source_only,oracle", "--seeds", "2", "--out", str(tmp_path / "full")]
    rows = {r["key"]: r for r in script.main(script.get_args(argv))["rows"]}
    assert rows["oracle"]["n_seeds"] == 2 and rows["oracle"]["cup_dice_std"] >= 0.0


def test_img_segments_photographs_of_any_size(quick_run, tmp_path):
    import skimage.data

    out, _ = quick_run
    photos = tmp_path / "photos"
    photos.mkdir()
    retina = skimage.data.retina()[::6, ::5]  # a real fundus photograph, not square
    Image.fromarray(retina).save(photos / "retina.jpg")
    Image.fromarray((FundusPhantom(n=1, size=80, domain="B")[0]["image"].numpy().transpose(1, 2, 0) * 255)
                    .astype(np.uint8)).save(photos / "phantom.tif")
    res = script.main(script.get_args(["--img", str(photos), "--checkpoint", str(out / "histmatch" / "seed0" /
                                                                                  "model.pt"),
                                       "--out", str(tmp_path / "seg")]))
    assert len(res["images"]) == 2
    mask = np.asarray(Image.open(tmp_path / "seg" / "retina_mask.png"))
    assert mask.shape == retina.shape[:2] and set(np.unique(mask)) <= {0, 128, 255}
    assert (tmp_path / "seg" / "retina_overlay.png").exists()
    assert (tmp_path / "seg" / "vcdr.csv").read_text().count("\n") == 3


def _refuge_layout(root, splits=("train", "val", "test"), bad_mask=False):
    for split in splits:
        ds = FundusPhantom(n=3, size=64, domain="A" if split == "train" else "B", seed=len(split))
        (root / split / "images").mkdir(parents=True)
        (root / split / "masks").mkdir()
        for i in range(3):
            item = ds[i]
            image = (item["image"].numpy().transpose(1, 2, 0) * 255).astype(np.uint8)
            Image.fromarray(image).save(root / split / "images" / f"e{i}.png")
            mask = item["mask"].numpy()
            if bad_mask and split == "train":
                mask = (mask == 0).astype(np.uint8)  # a 0/1 cup map, not REFUGE's 0/128/255
            Image.fromarray(mask).save(root / split / "masks" / f"e{i}.png")


def test_refuge_layout_runs(tmp_path):
    _refuge_layout(tmp_path / "REFUGE")
    argv = [*TINY, "--dataset", "refuge", "--data-root", str(tmp_path / "REFUGE"), "--methods", "source_only",
            "--out", str(tmp_path / "out")]
    rows = script.main(script.get_args(argv))["rows"]
    assert rows[0]["key"] == "source_only" and 0.0 <= rows[0]["cup_dice"] <= 1.0


@pytest.mark.parametrize("case", ["no masks", "empty folder", "not refuge levels"])
def test_bad_data_is_one_line_exit_2(tmp_path, case):
    root = tmp_path / "REFUGE"
    if case == "no masks":
        (root / "train" / "images").mkdir(parents=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "train" / "images" / "a.png")
    elif case == "empty folder":
        (root / "train" / "images").mkdir(parents=True)
        (root / "train" / "masks").mkdir()
    else:
        _refuge_layout(root, bad_mask=True)
    out = tmp_path / "out"
    res = run_main("02_TransferLearning", "domain_adaptation", *TINY, "--dataset", "refuge", "--data-root", root,
                   "--out", out)
    lines = [ln for ln in res.stdout.splitlines() + res.stderr.splitlines() if ln.startswith("error:")]
    assert res.returncode == 2 and len(lines) == 1, res.stdout + res.stderr
    assert {"no masks": "masks", "empty folder": "no images", "not refuge levels": "background"}[case] in lines[0]
    assert not out.exists() or not any(out.rglob("*.npz"))  # nothing half-written


def test_bad_flags_and_checkpoint(tmp_path):
    res = run_main("02_TransferLearning", "domain_adaptation", "--crop", "30", "--out", tmp_path / "o")
    assert res.returncode == 2 and "crop" in (res.stdout + res.stderr)
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    img = tmp_path / "a.png"
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(img)
    res = run_main("02_TransferLearning", "domain_adaptation", "--img", img, "--checkpoint", junk,
                   "--out", tmp_path / "o2")
    assert res.returncode == 2 and "checkpoint" in (res.stdout + res.stderr)
    res = run_main("02_TransferLearning", "domain_adaptation", "--checkpoint", junk)
    assert res.returncode == 2 and "only with --img" in (res.stdout + res.stderr)
