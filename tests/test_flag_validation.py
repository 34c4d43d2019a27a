"""Each script's own flags: a zero, negative, out-of-range, nan or malformed value is refused while parsing, with one
line that names the flag and exit status 2 -- never a traceback, a silently different run or a half-made --out.

Before these checks: gallery.py --size 0 wrote package_data/gallery.png and then died in the bone phantom;
train.py --confounder 1.5 and train_sizeloss.py --threads -1 died with a traceback after --out was made;
weak_labels.py --size 0 and --n-volumes 0 ran with the defaults instead; phantom_speed.py --workers -1 timed
workers=0 and reported workers=-1; localize.py --thresholds 0.2,0.20 scored every image twice under one key;
a negative --seed ended in the bone phantom's ValueError.
"""

import argparse
import re

import pytest

from common.cli import float_range
from tests.helpers.scripts import load_script, run_main

INTERP, WSS = "00_Interpretability", "01_WeaklySupervised"

CASES = [
    # 00_Interpretability/train.py
    (INTERP, "train", ["--size", "0"], "--size: must be >= 32, got 0"),
    (INTERP, "train", ["--size", "abc"], "--size: expected an integer >= 32, got 'abc'"),
    (INTERP, "train", ["--n-train", "0"], "--n-train: must be >= 1, got 0"),
    (INTERP, "train", ["--n-val", "-1"], "--n-val: must be >= 1, got -1"),
    (INTERP, "train", ["--confounder", "1.5"], "--confounder: must be a finite number in [0, 1], got 1.5"),
    (INTERP, "train", ["--confounder", "nan"], "--confounder: must be a finite number in [0, 1], got nan"),
    (INTERP, "train", ["--val-confounder", "-0.1"], "--val-confounder: must be a finite number in [0, 1], got -0.1"),
    (INTERP, "train", ["--lse-r", "inf"], "--lse-r: must be a finite number > 0, got inf"),
    (INTERP, "train", ["--lse-r-start", "0"], "--lse-r-start: must be a finite number > 0, got 0"),
    (INTERP, "train", ["--augment-degrees", "-5"], "--augment-degrees: must be a finite number in [0, 180], got -5"),
    (INTERP, "train", ["--augment-degrees", "nan"], "--augment-degrees: must be a finite number in [0, 180], got nan"),
    (INTERP, "train", ["--train-crop", "0"], "--train-crop: must be a finite number in (0, 1], got 0"),
    (INTERP, "train", ["--train-crop", "1.5"], "--train-crop: must be a finite number in (0, 1], got 1.5"),
    (INTERP, "train", ["--lr", "0"], "--lr: must be a finite number > 0, got 0"),
    (INTERP, "train", ["--lr", "nan"], "--lr: must be a finite number > 0, got nan"),
    (INTERP, "train", ["--lr", "1e-3x"], "--lr: expected a number > 0, got '1e-3x'"),
    (INTERP, "train", ["--seed", "-1"], "--seed: must be >= 0, got -1"),
    (INTERP, "train", ["--body-parts", "knee"], "--body-parts: unknown phantom body part(s) knee; choose from forearm"),
    (INTERP, "train", ["--dataset", "mura", "--body-parts", "XR_WRIST", "forearm"],
     "--body-parts: unknown mura body part(s) forearm; choose from XR_ELBOW"),
    # 00_Interpretability/shortcut.py
    (INTERP, "shortcut", ["--confounder", "2"], "--confounder: must be a finite number in [0, 1], got 2"),
    (INTERP, "shortcut", ["--n-train", "0"], "--n-train: must be >= 1, got 0"),
    (INTERP, "shortcut", ["--n-test", "-3"], "--n-test: must be >= 1, got -3"),
    (INTERP, "shortcut", ["--lr", "-1"], "--lr: must be a finite number > 0, got -1"),
    # 00_Interpretability/gradcam.py and evaluate.py
    (INTERP, "gradcam", ["--scorecam-topk", "x"], "--scorecam-topk: expected an integer >= 0, got 'x'"),
    (INTERP, "evaluate", ["--threshold", "0"], "--threshold: must be a finite number in (0, 1], got 0"),
    (INTERP, "evaluate", ["--threshold", "1.5"], "--threshold: must be a finite number in (0, 1], got 1.5"),
    (INTERP, "evaluate", ["--threshold", "nan"], "--threshold: must be a finite number in (0, 1], got nan"),
    (INTERP, "evaluate", ["--scorecam-topk", "-2"], "--scorecam-topk: must be >= 0, got -2"),
    # 01_WeaklySupervised/localize.py
    (WSS, "localize", ["--thresholds", "0.2,,x"], "--thresholds: empty item in '0.2,,x'"),
    (WSS, "localize", ["--thresholds", "0.2,x"], "--thresholds: 'x' in '0.2,x' is neither a fraction in (0, 1)"),
    (WSS, "localize", ["--thresholds", "nan"], "--thresholds: 'nan' is neither a fraction in (0, 1) nor 'otsu'"),
    (WSS, "localize", ["--size", "0"], "--size: must be >= 32, got 0"),
    (WSS, "localize", ["--n", "-1"], "--n: must be >= 1, got -1"),
    (WSS, "localize", ["--scorecam-topk", "-1"], "--scorecam-topk: must be >= 0, got -1"),
    # 01_WeaklySupervised/train_sizeloss.py
    (WSS, "train_sizeloss", ["--lam", "-1"], "--lam: must be a finite number >= 0, got -1"),
    (WSS, "train_sizeloss", ["--lam", "nan"], "--lam: must be a finite number >= 0, got nan"),
    (WSS, "train_sizeloss", ["--threads", "-1"], "--threads: must be >= 0, got -1"),
    (WSS, "train_sizeloss", ["--seeds", "0"], "--seeds: must be >= 1, got 0"),
    (WSS, "train_sizeloss", ["--jobs", "0"], "--jobs: must be >= 1, got 0"),
    (WSS, "train_sizeloss", ["--n-train", "-1"], "--n-train: must be >= 0, got -1"),
    (WSS, "train_sizeloss", ["--n-val", "0"], "--n-val: the phantom needs at least 1 volume, got 0"),
    (WSS, "train_sizeloss", ["--lr", "0"], "--lr: must be a finite number > 0, got 0"),
    # 01_WeaklySupervised/weak_labels.py
    (WSS, "weak_labels", ["--size", "0"], "--size: must be >= 32, got 0"),
    (WSS, "weak_labels", ["--n-volumes", "0"], "--n-volumes: must be >= 1, got 0"),
    (WSS, "weak_labels", ["--n-show", "0"], "--n-show: must be >= 1, got 0"),
    (WSS, "weak_labels", ["--kinds", "erosion", "dots"], "--kinds: invalid choice: 'dots'"),
    # MedicalImages/gallery.py
    ("MedicalImages", "gallery", ["--size", "16"], "--size: must be >= 32, got 16"),
    ("MedicalImages", "gallery", ["--n", "0"], "--n: must be >= 1, got 0"),
    # benchmarks
    ("benchmarks", "cam_speed", ["--threads", "0"], "--threads: must be >= 1, got 0"),
    ("benchmarks", "cam_speed", ["--size", "8"], "--size: must be >= 32, got 8"),
    ("benchmarks", "cam_speed", ["--top-k", "16", "0"], "--top-k: must be >= 1, got 0"),
    ("benchmarks", "cam_speed", ["--subset", "-4"], "--subset: must be >= 1, got -4"),
    ("benchmarks", "enet_speed", ["--sizes", "128", "100"], "--sizes: must be a multiple of 8"),
    ("benchmarks", "enet_speed", ["--sizes", "8"], "--sizes: must be >= 16, got 8"),
    ("benchmarks", "enet_speed", ["--steps", "0"], "--steps: must be >= 1, got 0"),
    ("benchmarks", "enet_speed", ["--threads", "-1"], "--threads: must be >= 0, got -1"),
    ("benchmarks", "engine_overhead", ["--repeats", "0"], "--repeats: must be >= 1, got 0"),
    ("benchmarks", "engine_overhead", ["--device", "gpu"], "--device: invalid choice: 'gpu'"),
    ("benchmarks", "materialize_speed", ["--workers", "-2"], "--workers: must be >= 0, got -2"),
    ("benchmarks", "materialize_speed", ["--n", "0"], "--n: must be >= 1, got 0"),
    ("benchmarks", "materialize_speed", ["--seed", "-1"], "--seed: must be >= 0, got -1"),
    ("benchmarks", "phantom_speed", ["--workers", "-1"], "--workers: must be >= 0, got -1"),
    ("benchmarks", "phantom_speed", ["--size", "20"], "--size: 20 is too small for bone-xray, cardiac-slices"),
]


def _refused(capsys, get_args, argv) -> str:
    """The one stderr line get_args(argv) exits with (status 2)."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        get_args(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: argument "), err
    return lines[0]


@pytest.mark.parametrize("folder, name, argv, expected", CASES, ids=[f"{c[1]}{' '.join(c[2])}" for c in CASES])
def test_bad_value_is_one_line_naming_the_flag(capsys, folder, name, argv, expected):
    line = _refused(capsys, load_script(folder, name).get_args, argv)
    assert f"error: argument {expected}" in line, line


@pytest.mark.parametrize("only, expected", [(",,", "no demo names in ',,'"), ("", "no demo names in ''"),
                                            ("gallery,nope", "unknown demo(s) nope")])
def test_reproduce_only_is_checked_before_anything_runs(capsys, only, expected):
    # before: --only ,, ran no demo and still rewrote REPORT.md under --out (by default results/)
    import reproduce

    line = _refused(capsys, reproduce.get_args, ["--only", only])
    assert f"error: argument --only: {expected}; choose from gallery," in line, line


def test_good_values_still_parse():
    weak = load_script(WSS, "weak_labels")
    args = weak.get_args([])
    assert (args.size, args.n_volumes) == (128, 10)
    args = weak.get_args(["--quick"])
    assert (args.size, args.n_volumes) == (64, 2)
    sizeloss = load_script(WSS, "train_sizeloss")
    assert sizeloss.get_args(["--dataset", "acdc", "--n-val", "0"]).n_val == 0  # 0 = every ACDC patient
    assert sizeloss.get_args(["--lam", "0"]).lam == 0.0
    train = load_script(INTERP, "train")
    args = train.get_args(["--confounder", "1", "--val-confounder", "0", "--augment-degrees", "180",
                           "--body-parts", "forearm", "finger"])
    assert (args.confounder, args.val_confounder, args.augment_degrees) == (1.0, 0.0, 180.0)
    assert train.get_args([]).train_crop is None and train.get_args(["--quick"]).train_crop == 0.8  # the demo's
    assert train.get_args(["--quick", "--train-crop", "1"]).train_crop == 1.0  # 1: whole images
    assert load_script(INTERP, "evaluate").get_args(["--threshold", "1"]).threshold == 1.0
    assert load_script("benchmarks", "phantom_speed").get_args(["--size", "20", "--phantoms", "fundus-A"]).size == 20
    assert load_script("benchmarks", "enet_speed").get_args(["--sizes", "16", "24"]).sizes == [16, 24]


def test_float_range_bounds_and_messages():
    probability, positive = float_range(0, 1), float_range(0, low_open=True)
    assert probability("0") == 0.0 and probability(" 1 ") == 1.0 and positive("1e-9") == 1e-9
    assert float_range(high=1, high_open=True)("-5") == -5.0
    for parse, text, message in [(probability, "1.01", "must be a finite number in [0, 1], got 1.01"),
                                 (probability, "-inf", "must be a finite number in [0, 1], got -inf"),
                                 (positive, "0", "must be a finite number > 0, got 0"),
                                 (positive, "inf", "must be a finite number > 0, got inf"),
                                 (float_range(0, 1, high_open=True), "1", "in [0, 1), got 1"),
                                 (float_range(high=1, high_open=True), "NaN", "must be a finite number < 1, got NaN"),
                                 (positive, "", "expected a number > 0, got ''")]:
        with pytest.raises(argparse.ArgumentTypeError, match=re.escape(message)):
            parse(text)


@pytest.mark.parametrize("folder, name, argv, expected", [
    ("MedicalImages", "gallery", ["--size", "0"], "--size: must be >= 32, got 0"),
    (WSS, "train_sizeloss", ["--quick", "--threads", "-1"], "--threads: must be >= 0, got -1"),
    (INTERP, "train", ["--quick", "--confounder", "1.5"], "--confounder: must be a finite number in [0, 1]"),
])
def test_refused_before_out_is_made(tmp_path, folder, name, argv, expected):
    # before: each made --out (gallery.py even wrote a figure into it) and then ended in a traceback
    out = tmp_path / "out"
    r = run_main(folder, name, *argv, "--out", out, "--device", "cpu")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and f"error: argument {expected}" in lines[0], r.stderr
    assert not out.exists()


def test_missing_weights_file_is_named_before_out_is_made(tmp_path):
    # before: found only after the training images were rendered, with --out already made
    out = tmp_path / "out"
    r = run_main(INTERP, "train", "--quick", "--weights", tmp_path / "nope.pth", "--out", out, "--device", "cpu")
    assert r.returncode == 2 and r.stderr.strip() == (f"error: {tmp_path / 'nope.pth'}: no such file (--weights) -- "
                                                      "pass a .pth state_dict, 'imagenet', or no --weights for "
                                                      "random init"), r.stderr
    assert not out.exists()


def test_cam_speed_subset_beyond_the_channels_is_one_line(tmp_path):
    # tiny has fewer block-4 channels than 10000: np.linspace would have repeated channels silently
    r = run_main("benchmarks", "cam_speed", "--arch", "tiny", "--subset", "10000", "--out", tmp_path / "out")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("error: --subset 10000 is more than the ") and "block-4 channels of tiny" in lines[0]
    assert not (tmp_path / "out").exists()


def test_summarize_runs_names_a_cell_that_is_not_a_number(tmp_path):
    mod = load_script("benchmarks", "summarize_runs")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut" / "metrics.csv").write_text("epoch,val_dice3d\n1,0.5\n2,\n")
    with pytest.raises(SystemExit, match=r"metrics.csv row 2: val_dice3d is '', not a number"):
        mod.summarize(tmp_path, "val_dice3d", None)
    (tmp_path / "cut" / "metrics.csv").write_text("epoch,val_dice3d\n1,nan\n2,0.4\n3,0.3\n")
    row = mod.summarize(tmp_path, "val_dice3d", None)[0]
    assert row["best epoch"] == 2 and row["best val_dice3d"] == 0.4  # a nan epoch is never the best


@pytest.mark.parametrize("folder, name", [(WSS, "localize"), ("MedicalImages", "gallery"), (INTERP, "shortcut")])
def test_scripts_that_read_no_dataset_folder_refuse_data_root(capsys, folder, name):
    """--data-root used to be accepted and ignored by the scripts that only use built-in data."""
    with pytest.raises(SystemExit) as stop:
        load_script(folder, name).get_args(["--data-root", "/data/MURA"])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and len(err.splitlines()) == 1, err
    assert "unrecognized arguments: --data-root /data/MURA" in err
