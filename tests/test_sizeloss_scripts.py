"""Smoke and oracle tests of 01_WeaklySupervised/weak_labels.py, train_sizeloss.py and common.tasks.lv_weak_seg
(Kervadec 2019)."""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from common.errors import cli_main
from common.losses import IGNORE_INDEX, partial_cross_entropy
from common.tasks.lv_weak_seg import (
    VARIANTS,
    WeakVolumes,
    collate_volumes,
    dice_by_volume,
    make_step,
    volume_dice_metric,
    weak_label_stack,
)

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ROOT / "01_WeaklySupervised"


def _load(name):
    spec = importlib.util.spec_from_file_location(f"wss_{name}", SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ------------------------------------------------------------------------------------------ common.tasks.lv_weak_seg


def test_dice_by_volume_hand_computed():
    pred = np.zeros((3, 4, 4), bool)
    gt = np.zeros((3, 4, 4), bool)
    gt[0, :2, :2] = True            # volume 0: slices 0, 1
    pred[0, :2, :1] = True          # 2 of 4 pixels -> 2*2/(2+4)
    pred[2, 0, 0] = True            # volume 1: slice 2, prediction but no truth -> 0
    out = dice_by_volume(pred, gt, np.array([0, 0, 1]))
    assert out["dice3d"] == pytest.approx((4 / 6 + 0.0) / 2)
    # Per slice: 4/6, empty/empty = 1, 0.
    assert out["dice2d"] == pytest.approx((4 / 6 + 1 + 0) / 3)


def test_volume_dice_metric_diagnostics():
    """Prediction = half of the truth: precision 1, recall 0.5; soft size from sigmoid(logit gap) by hand."""
    truth = torch.zeros(2, 8, 8, dtype=torch.int64)
    truth[0, 2:6, 2:4] = 1                                   # 8 pixels
    logits = torch.zeros(2, 2, 8, 8)
    logits[:, 1] = -3.0
    logits[0, 1, 2:4, 2:4] = 3.0                             # 4 predicted pixels, all inside the truth
    out = volume_dice_metric(np.array([0, 0]))(logits, truth)
    assert out["precision"] == pytest.approx(1.0) and out["recall"] == pytest.approx(0.5)
    assert out["hard_size_ratio"] == pytest.approx(0.5) and out["dice3d"] == pytest.approx(2 * 4 / 12)
    soft = 4 * torch.sigmoid(torch.tensor(3.0)) + (128 - 4) * torch.sigmoid(torch.tensor(-3.0))
    assert out["soft_size_ratio"] == pytest.approx(float(soft) / 8, rel=1e-5)


def test_weak_label_stack_empty_slices():
    masks = np.zeros((2, 32, 32), np.int64)
    masks[0, 8:20, 8:20] = 1
    seeds = weak_label_stack("erosion", masks)
    assert (seeds[1] == IGNORE_INDEX).all()                       # no LV: nothing labelled
    assert (seeds[0] == 1).any() and not ((seeds[0] == 1) & (masks[0] == 0)).any()
    boxes = weak_label_stack("box", masks)
    assert (boxes[1] == 0).all()                                  # no box drawn: all background
    assert (boxes[0][8:20, 8:20] == IGNORE_INDEX).all() and boxes[0][0, 0] == 0


def _one_volume(weak: str, cols: slice):
    """A batch of one 2-slice 16x16 volume whose LV (label 3) is rows 4:10, ``cols`` of slice 0; random logits."""
    torch.manual_seed(0)
    masks = np.zeros((1, 2, 16, 16), np.int64)
    masks[0, 0, 4:10, cols] = 3
    ds = WeakVolumes([np.random.default_rng(0).random((2, 16, 16))], list(masks), weak)
    return collate_volumes([ds[0]]), torch.randn(2, 2, 16, 16)


def test_step_matches_hand_wired_losses():
    """presize = partial CE + 0.05 * mean_i C(V_i)/(H W) with [0.9 s, 1.1 s]; fs = CE on all pixels."""
    batch, logits = _one_volume("erosion", slice(4, 10))
    model = lambda x: logits  # noqa: E731
    loss, _, _ = make_step(VARIANTS["presize"])(model, batch, "cpu")
    size = torch.softmax(logits, 1)[:, 1].sum((1, 2))
    true = torch.tensor([36.0, 0.0])
    low, high = 0.9 * true, 1.1 * true
    pen = torch.where(size > high, (size - high) ** 2, torch.where(size < low, (size - low) ** 2, 0 * size))
    expected = partial_cross_entropy(logits, batch["weak"]) + 0.05 * (pen / 256).mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    fs, _, _ = make_step(VARIANTS["fs"])(model, batch, "cpu")
    assert float(fs) == pytest.approx(float(torch.nn.functional.cross_entropy(logits, batch["mask"])), rel=1e-6)
    vol, _, _ = make_step(VARIANTS["3d_size"])(model, batch, "cpu")   # exact volume size 36, margin 0
    expected3d = partial_cross_entropy(logits, batch["weak"]) + 0.01 * (size.sum() - 36.0) ** 2 / 256
    assert float(vol) == pytest.approx(float(expected3d), rel=1e-5)


def test_box_step_measures_the_size_inside_the_box_only():
    """3d_size with a box label: the volume's soft size sums the box interiors; outside is CE background."""
    batch, logits = _one_volume("box", slice(5, 9))
    inside = batch["weak"] != 0                                      # (2, 16, 16): the box of slice 0, nothing in 1
    assert int(inside.sum()) == 24 and not inside[1].any()
    vol, _, _ = make_step(VARIANTS["3d_size"])(lambda x: logits, batch, "cpu")
    size = (torch.softmax(logits, 1)[:, 1] * inside).sum()
    expected = partial_cross_entropy(logits, batch["weak"]) + 0.01 * (size - 24.0) ** 2 / 256
    assert float(vol) == pytest.approx(float(expected), rel=1e-5)


# ------------------------------------------------------------------------------------------------ scripts


def test_weak_labels_script(tmp_path):
    mod = _load("weak_labels")
    out = mod.main(mod.get_args(["--size", "32", "--n-volumes", "1", "--out", str(tmp_path), "--device", "cpu"]))
    assert [k["kind"] for k in out["kinds"]] == ["erosion", "random", "centroid", "box"]
    for kind in ("erosion", "random", "centroid", "box"):
        files = sorted((tmp_path / kind).glob("*.png"))
        assert len(files) == out["n_slices"] > 0
        values = np.unique(np.concatenate([np.unique(np.asarray(Image.open(f))) for f in files]))
        assert set(values.tolist()) <= {0, 1, 255}
        assert (tmp_path / f"{kind}.png").exists()
    stats = {k["kind"]: k for k in out["kinds"]}
    assert stats["box"]["foreground seed / mask"] == 0 and 0 < stats["erosion"]["foreground seed / mask"] < 1


def _exit_line(mod, argv, capsys) -> tuple[int, list[str]]:
    """The script's command line run in this process (no torch import a case): its exit status and stderr lines."""
    with pytest.raises(SystemExit) as stop:
        cli_main(mod.main, mod.get_args(argv))
    return stop.value.code, [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]


@pytest.mark.parametrize("case", ["size_mismatch", "empty_mask", "unknown_kind", "rgb_photo", "jpeg", "float_map"])
def test_weak_labels_bad_input(tmp_path, case, capsys):
    img = np.zeros((32, 32), np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[10:20, 10:20] = 3
    mask_name = "mask.png"
    if case == "size_mismatch":
        mask = np.zeros((24, 32), np.uint8)
    if case == "empty_mask":
        mask[:] = 0
        mask[0, 0] = 255
    if case == "rgb_photo":
        mask = (np.random.default_rng(0).random((32, 32, 3)) * 255).astype(np.uint8)
    if case == "jpeg":
        mask_name = "mask.jpg"
    if case == "float_map":
        mask, mask_name = mask.astype(np.float32) / 7, "mask.tif"  # a probability-like map, not class indices
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / mask_name)
    extra = ["--kinds", "scribble"] if case == "unknown_kind" else []
    code, lines = _exit_line(_load("weak_labels"), ["--image", str(tmp_path / "img.png"), "--mask",
                                                    str(tmp_path / mask_name), *extra, "--out", str(tmp_path / "o"),
                                                    "--device", "cpu"], capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:"), lines
    assert {"size_mismatch": "24x32", "empty_mask": "class 3 is not in the label map (it holds 0, 255)",
            "unknown_kind": "scribble", "rgb_photo": "a colour image, not a label map",
            "jpeg": "a JPEG cannot hold a label map", "float_map": "non-integer values"}[case] in lines[0]
    assert not (tmp_path / "o").exists()


def test_weak_labels_reads_a_palette_masks_indices_not_its_colours(tmp_path):
    img = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 3
    pal = Image.fromarray(mask, mode="P")
    pal.putpalette([0, 0, 0, 128, 0, 0, 0, 128, 0, 200, 40, 40] + [0, 0, 0] * 252)  # class 3 drawn reddish
    Image.fromarray(img).save(tmp_path / "img.png")
    pal.save(tmp_path / "mask.png")
    mod = _load("weak_labels")
    out = mod.main(mod.get_args(["--image", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"),
                                 "--label", "3", "--kinds", "box", "--out", str(tmp_path / "o"), "--device", "cpu"]))
    weak = np.asarray(Image.open(tmp_path / "o" / "box" / "img.png"))
    assert out["n_slices"] == 1 and (weak[8:24, 8:24] != 0).all() and (weak == 0).sum() == 32 * 32 - 16 * 16


def test_weak_labels_single_pair(tmp_path):
    img = (np.random.default_rng(0).random((32, 32)) * 255).astype(np.uint8)
    mask = np.zeros((32, 32), np.uint8)
    mask[8:24, 8:24] = 3
    Image.fromarray(img).save(tmp_path / "img.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    mod = _load("weak_labels")
    out = mod.main(mod.get_args(["--image", str(tmp_path / "img.png"), "--mask", str(tmp_path / "mask.png"),
                                 "--kinds", "centroid", "--out", str(tmp_path / "o"), "--device", "cpu"]))
    weak = np.asarray(Image.open(tmp_path / "o" / "centroid" / "img.png"))
    # Centroid (15.5, 15.5) rounds to (16, 16); the radius 4 at 256 px scales to 1 px at 32: a 5-pixel cross.
    assert out["n_slices"] == 1 and weak[16, 16] == 1 and weak[0, 0] == 255
    assert sorted(map(tuple, np.argwhere(weak == 1))) == [(15, 16), (16, 15), (16, 16), (16, 17), (17, 16)]


TINY = ["--size", "32", "--n-train", "2", "--n-val", "1", "--epochs", "1", "--device", "cpu", "--lr", "1e-3",
        "--threads", "1"]


def test_train_sizeloss_one_epoch_and_resume(tmp_path):
    mod = _load("train_sizeloss")
    out = mod.main(mod.get_args([*TINY, "--variant", "3d_size", "--weak", "random", "--out", str(tmp_path)]))
    assert 0.0 <= out["best_dice3d"] <= 1.0 and out["best_epoch"] == 1 and out["n_val_volumes"] == 1
    assert (tmp_path / "last.pt").exists() and (tmp_path / "predictions.png").exists()
    args = mod.get_args([*TINY, "--variant", "3d_size", "--weak", "random", "--out", str(tmp_path), "--resume"])
    args.epochs = 2
    again = mod.main(args)
    hist = json.loads((tmp_path / "metrics.json").read_text())["history"]
    assert [h["epoch"] for h in hist] == [1, 2]
    best = max(hist, key=lambda h: h["val_dice3d"])  # the first of equal maxima, as the engine keeps it
    assert (again["best_epoch"], again["best_dice3d"]) == (best["epoch"], best["val_dice3d"])


def test_train_sizeloss_refuses_to_resume_another_variants_run(tmp_path):
    """A finished presize run's folder resumed as fs would report presize's history under fs's name: refused."""
    from common.errors import InputError

    mod = _load("train_sizeloss")
    mod.main(mod.get_args([*TINY, "--variant", "presize", "--out", str(tmp_path)]))
    before = (tmp_path / "metrics.json").read_text()
    with pytest.raises(InputError, match="last.pt: written by a run with other settings: variant = presize there"):
        mod.main(mod.get_args([*TINY, "--variant", "fs", "--out", str(tmp_path), "--resume"]))
    assert (tmp_path / "metrics.json").read_text() == before


def test_train_sizeloss_resume_skips_a_finished_run(tmp_path, monkeypatch):
    """A run whose metrics.json says it finished with this configuration is reused without its checkpoints."""
    mod = _load("train_sizeloss")
    argv = [*TINY, "--variant", "presize", "--out", str(tmp_path), "--resume"]
    first = mod.main(mod.get_args(argv))
    for name in ("last.pt", "best.pt"):
        (tmp_path / name).unlink()
    monkeypatch.setattr(mod, "fit", lambda *a, **k: pytest.fail("a finished run was trained again"))
    again = mod.main(mod.get_args(argv))
    assert again == first
    with pytest.raises(BaseException, match="trained again"):  # another lr is another run: it trains
        mod.main(mod.get_args([*argv, "--lr", "2e-3"]))
    with pytest.raises(BaseException, match="trained again"):  # so does another variant in the same folder
        mod.main(mod.get_args([*argv[:-3], "--variant", "size", "--out", str(tmp_path), "--resume"]))


def test_train_sizeloss_table(tmp_path, monkeypatch):
    mod = _load("train_sizeloss")
    monkeypatch.setattr(mod, "TABLE_ROWS", [("fs", "erosion", 0.8502), ("partial", "erosion", 0.1372),
                                            ("presize", "centroid", None)])
    argv = [*TINY, "--table", "--seeds", "2", "--out", str(tmp_path)]
    out = mod.main(mod.get_args(argv))
    table = json.loads((tmp_path / "table.json").read_text())
    assert [r["method"] for r in table["rows"]] == ["fs", "partial", "presize"]
    assert table["command"].endswith("--out " + str(tmp_path)) and table["seconds"] > 0 and table["failed"] == []
    md = (tmp_path / "table.md").read_text()
    assert "paper/survey ACDC" in md and "0.8502" in md and "centroid" in md
    assert (tmp_path / "report.md").exists() and (tmp_path / "presize_centroid" / "seed1" / "predictions.png").exists()
    # every row: mean and sample std (ddof 1) of its two seeds' runs, as the table shows them
    for row in table["rows"]:
        weak = "erosion" if row["method"] == "fs" else row["weak label"]
        best = [r["best_dice3d"] for r in sorted(table["runs"], key=lambda r: r["seed"])
                if (r["variant"], r["weak"]) == (row["method"], weak)]
        last = [r["last_dice3d"] for r in table["runs"] if (r["variant"], r["weak"]) == (row["method"], weak)]
        assert row["values"] == best and row["n_seeds"] == row["seeds"] == 2
        assert row["mean"] == pytest.approx(np.mean(best)) and row["std"] == pytest.approx(np.std(best, ddof=1))
        assert row["last_mean"] == pytest.approx(np.mean(last))
        assert row["phantom 3D Dice"] == f"{np.mean(best):.3f} ± {np.std(best, ddof=1):.3f}"
        assert f"| {row['phantom 3D Dice']} | {row['last epoch']} | 2 |" in md
    assert set(out["goals"]) == {"fs_dice", "partial_over_fs", "best_size_over_fs"}
    assert set(table["goals_last_epoch"]) == set(out["goals"])
    fs_last = table["rows"][0]["last_mean"]
    assert table["goals_last_epoch"]["partial_over_fs"] == pytest.approx(table["rows"][1]["last_mean"] / fs_last)
    tables = json.loads((tmp_path / "tables.json").read_text())  # the README's block is rendered from this
    assert tables["table"]["rows"][0]["phantom 3D Dice"] == table["rows"][0]["phantom 3D Dice"]
    # --resume: every finished run is reused, nothing trains, the table is the same
    monkeypatch.setattr(mod, "train_one", lambda *a, **k: pytest.fail("a finished run was trained again"))
    mod.main(mod.get_args([*argv, "--resume"]))
    assert json.loads((tmp_path / "table.json").read_text())["rows"] == table["rows"]
    # --from-json writes the report and tables again from table.json alone
    for name in ("table.md", "tables.json", "report.md"):
        (tmp_path / name).unlink()
    mod.main(mod.get_args(["--from-json", str(tmp_path / "table.json")]))
    assert (tmp_path / "table.md").read_text() == md and json.loads((tmp_path / "tables.json").read_text()) == tables
    assert "![presize_centroid](presize_centroid/seed0/predictions.png)" in (tmp_path / "report.md").read_text()


def test_table_goals_and_sample_std(tmp_path, monkeypatch):
    """Goals from hand-made rows; the std over seeds is the sample std (ddof 1)."""
    mod = _load("train_sizeloss")
    rows = [{"method": "fs", "mean": 0.9, "last_mean": 0.8}, {"method": "partial", "mean": 0.09, "last_mean": 0.2},
            {"method": "size", "mean": 0.72, "last_mean": 0.6}, {"method": "presize", "mean": 0.81, "last_mean": 0.4}]
    assert mod.table_goals(rows, "mean") == pytest.approx({"fs_dice": 0.9, "partial_over_fs": 0.1,
                                                           "best_size_over_fs": 0.9})
    assert mod.table_goals(rows, "last_mean") == pytest.approx({"fs_dice": 0.8, "partial_over_fs": 0.25,
                                                                "best_size_over_fs": 0.75})
    assert np.isnan(mod.table_goals(rows[2:], "mean")["best_size_over_fs"])  # no fs row
    fake = iter([0.5, 0.7, 0.9])
    monkeypatch.setattr(mod, "TABLE_ROWS", [("fs", "erosion", 0.8502)])
    monkeypatch.setattr(mod, "train_one", lambda args, variant, weak, seed, out, device: {
        "variant": variant, "weak": weak, "seed": seed, "best_dice3d": next(fake), "last_dice3d": 0.5})
    table = mod.run_table(mod.get_args([*TINY, "--table", "--seeds", "3", "--out", str(tmp_path)]), "cpu")
    row = table["rows"][0]
    assert row["values"] == [0.5, 0.7, 0.9] and row["mean"] == pytest.approx(0.7)
    assert row["std"] == pytest.approx(0.2)  # by hand: deviations -0.2, 0, 0.2 -> sqrt(0.08 / (3 - 1)); ddof 0: 0.163
    assert "0.700 ± 0.200" in (tmp_path / "table.md").read_text() and row["last epoch"] == "0.500 ± 0.000"


def test_table_with_one_seed_shows_no_spread_and_reports_a_failed_run(tmp_path, monkeypatch):
    mod = _load("train_sizeloss")

    def train_one(args, variant, weak, seed, out, device):
        if variant == "partial":
            raise FloatingPointError("loss is nan")
        return {"variant": variant, "weak": weak, "seed": seed, "best_dice3d": 0.8, "last_dice3d": 0.75}

    monkeypatch.setattr(mod, "train_one", train_one)
    args = mod.get_args([*TINY, "--table", "--seeds", "1", "--rows", "fs/erosion,partial/erosion,size/erosion", "--out",
                         str(tmp_path)])
    with pytest.raises(RuntimeError, match=r"1 table run\(s\) failed: .*partial_erosion/seed0 \(FloatingPointError"):
        mod.run_table(args, "cpu")
    table = json.loads((tmp_path / "table.json").read_text())  # the table holds the runs that finished
    assert [(r["phantom 3D Dice"], r["std"], r["n_seeds"]) for r in table["rows"]] == [
        ("0.800", None, 1), ("n/a", None, 0), ("0.800", None, 1)]
    assert table["failed"][0]["error"] == "FloatingPointError: loss is nan"


def test_margin_flag_reaches_the_3d_penalty(monkeypatch):
    mod = _load("train_sizeloss")
    seen = []

    class Stop(Exception):
        pass

    def stop(variant):  # the step the run would train with; stop before training
        seen.append(variant)
        raise Stop

    monkeypatch.setattr(mod, "make_step", stop)
    with pytest.raises(Stop):
        mod.train_one(mod.get_args([*TINY, "--variant", "3d_size", "--margin", "0.2"]), "3d_size", "random", 0,
                      Path("/nonexistent"), torch.device("cpu"))
    assert seen[0].margin == 0.2 and seen[0].bounds == "volume"


@pytest.mark.parametrize("argv, expected", [(["--epochs", "0"], "--epochs: must be >= 1, got 0"),
                                            (["--label", "7"], "--label 7"),
                                            (["--margin", "1.5"], "--margin 1.5"), (["--variant", "foo"], "foo"),
                                            (["--table", "--seeds", "0"], "--seeds: must be >= 1, got 0"),
                                            (["--table", "--rows", "fs/box"], "fs/box"),
                                            (["--rows", "fs/erosion"], "argument --rows: only with --table"),
                                            (["--jobs", "2"], "argument --jobs: only with --table"),
                                            (["--size", "30"], "--size 30"),
                                            (["--from-json", "nope/table.json"], "nope/table.json: cannot read")])
def test_train_sizeloss_bad_input_exits_2_with_one_line(tmp_path, capsys, argv, expected):
    out = tmp_path / "out"
    code, lines = _exit_line(_load("train_sizeloss"), [*TINY, *argv, "--out", str(out)], capsys)
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], lines
    assert not out.exists()


def test_train_sizeloss_command_line_bad_input_is_one_line(tmp_path):
    """The script's own __main__ block: bad input from the command line is one line and exit status 2."""
    r = subprocess.run([sys.executable, str(SCRIPTS / "train_sizeloss.py"), *TINY, "--label", "7", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=120)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and lines == ["error: --label 7 is not a structure of the cardiac labels -- ACDC and "
                                           "the phantom: 1 = RV, 2 = myocardium, 3 = LV cavity"], r.stderr


def test_quick_table_shares_the_cores_one_thread_a_run():
    mod = _load("train_sizeloss")
    args = mod.get_args(["--quick", "--table"])
    assert args.threads == 1 and args.jobs == min(os.cpu_count(), 10)
    assert mod.get_args(["--quick"]).jobs == 1 and mod.get_args(["--table"]).jobs == 1
    assert mod.get_args(["--quick", "--table", "--jobs", "1"]).jobs == 1


def test_train_sizeloss_table_rows_subset(tmp_path):
    mod = _load("train_sizeloss")
    out = mod.main(mod.get_args([*TINY, "--table", "--seeds", "1", "--rows", "3d_size/box,fs/erosion", "--out",
                                 str(tmp_path)]))
    table = json.loads((tmp_path / "table.json").read_text())
    assert [(r["method"], r["weak label"]) for r in table["rows"]] == [("fs", "full mask"), ("3d_size", "box")]
    assert np.isnan(out["goals"]["partial_over_fs"]) and not np.isnan(out["goals"]["best_size_over_fs"])
    with pytest.raises(SystemExit):
        mod.get_args([*TINY, "--table", "--rows", "fs/box"])


def test_train_sizeloss_table_parallel_equals_serial(tmp_path, capsys):
    """--jobs 2 trains the runs in spawned worker processes; with one thread each, every Dice is the serial one's."""
    mod = _load("train_sizeloss")
    rows = ["--table", "--seeds", "1", "--rows", "fs/erosion,3d_size/random"]
    mod.main(mod.get_args([*TINY, *rows, "--jobs", "2", "--out", str(tmp_path / "par")]))
    assert "[2/2]" in capsys.readouterr().out
    log = (tmp_path / "par" / "fs_erosion" / "seed0" / "train.log").read_text()
    assert "epoch=1" in log and "it/s" not in log  # the worker's log has the epoch line, no progress bars
    mod.main(mod.get_args([*TINY, *rows, "--out", str(tmp_path / "ser")]))
    parallel, serial = ({(x["variant"], x["weak"]): x["best_dice3d"] for x in
                         json.loads((tmp_path / d / "table.json").read_text())["runs"]} for d in ("par", "ser"))
    assert serial == parallel and len(serial) == 2
    assert not (tmp_path / "ser" / "fs_erosion" / "seed0" / "train.log").exists()  # in this process: the console


def _fake_acdc(root: Path, n_patients: int = 4) -> Path:
    """ACDC's published layout with tiny random volumes: an LV (3) block inside a myocardium (2) ring."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    for p in range(1, n_patients + 1):
        folder = root / "training" / f"patient{p:03d}"
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text("ED: 1\nES: 5\nGroup: NOR\n")
        for frame in (1, 5):
            vol = rng.uniform(0, 500, (24, 24, 3)).astype(np.float32)
            gt = np.zeros((24, 24, 3), np.uint8)
            gt[6:16, 6:16, :2] = 2
            gt[8:14, 8:14, :2] = 3
            vol[gt == 3] += 600
            stem = f"patient{p:03d}_frame{frame:02d}"
            nib.save(nib.Nifti1Image(vol, np.eye(4)), folder / f"{stem}.nii.gz")
            nib.save(nib.Nifti1Image(gt, np.eye(4)), folder / f"{stem}_gt.nii.gz")
    return root


def test_scripts_on_acdc_layout(tmp_path):
    root = _fake_acdc(tmp_path / "ACDC")
    train = _load("train_sizeloss")
    out = train.main(train.get_args([*TINY, "--dataset", "acdc", "--data-root", str(root), "--variant", "size",
                                     "--out", str(tmp_path / "t")]))
    assert out["n_val_volumes"] == 1 and 0.0 <= out["best_dice3d"] <= 1.0   # capped by --n-val 1
    weak = _load("weak_labels")
    res = weak.main(weak.get_args(["--dataset", "acdc", "--data-root", str(root), "--size", "32", "--kinds",
                                   "erosion", "--n-volumes", "3", "--out", str(tmp_path / "w"), "--device", "cpu"]))
    assert res["n_slices"] == 3 * 2   # 3 volumes (the cap), each with the LV in 2 of its 3 slices
