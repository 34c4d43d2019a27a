"""04_Miscellaneous/attention.py: a tiny full-mode grid through main(argv), its tables against the runs, resume,
disjoint train / test data, the pointing-game scorer by hand, and bad input (one line, exit 2)."""

import json

import numpy as np
import pytest
import torch

import common.tasks.attention_study as task
from tests.helpers.scripts import load_script, run_main

FOLDER, NAME = "04_Miscellaneous", "attention"
TINY = ["--size", "32", "--seg-size", "32", "--ns", "6,12", "--volumes", "1,2", "--seeds", "2", "--steps", "2",
        "--seg-steps", "2", "--batch-size", "4", "--seg-batch-size", "4", "--n-test", "12", "--test-volumes", "1",
        "--width", "4", "--jobs", "1", "--threads", "1", "--device", "cpu"]


@pytest.fixture(scope="module")
def script():
    return load_script(FOLDER, NAME)


@pytest.fixture(scope="module")
def tiny_run(script, tmp_path_factory):
    out = tmp_path_factory.mktemp("attention")
    return script, out, script.main(script.get_args([*TINY, "--out", str(out)]))


def test_tables_are_mean_and_sample_std_of_the_runs(tiny_run):
    _, out, summary = tiny_run
    tables = json.loads((out / "tables.json").read_text())
    assert set(tables) == {"classifier", "classifier_accuracy", "pointing_classifier", "segmenter",
                           "pointing_segmenter"}
    for kind, metric, configs in (("classifier", "auroc", task.CLASSIFIER_CONFIGS),
                                  ("segmenter", "dice3d", task.SEGMENTER_CONFIGS)):
        rows = tables[kind]["rows"]
        assert [(r["config"], r["n"]) for r in rows] == [(c, n) for c in configs for n in
                                                        ((6, 12) if kind == "classifier" else (1, 2))]
        for row in rows:
            values = [json.loads((out / kind / row["config"] / f"n{row['n']}" / f"seed{s}" / "metrics.json")
                                 .read_text())[metric] for s in (0, 1)]
            assert row["mean"] == pytest.approx(np.mean(values)) and row["std"] == pytest.approx(np.std(values, ddof=1))
            assert row["n_seeds"] == 2
        assert summary[kind]["rows"][0]["values"] == pytest.approx(
            [json.loads((out / kind / configs[0] / f"n{rows[0]['n']}" / f"seed{s}" / "metrics.json").read_text())
             [metric] for s in (0, 1)])
    maps = {(r["config"], r["map"]) for r in tables["pointing_classifier"]["rows"]}
    assert {("none", "cam3"), ("none", "gradcam2"), ("cbam", "cbam1"), ("cbam", "cbam3"), ("(prior)", "centre")} <= maps
    assert ("none", "cbam1") not in maps and ("se", "cbam1") not in maps
    gates = {r["map"] for r in tables["pointing_segmenter"]["rows"] if r["config"] == "attention_unet"}
    assert gates == {"gate1", "gate2", "gate3"}
    assert all(0 <= r["mean"] <= 1 and r["n"] == 12 for r in tables["pointing_classifier"]["rows"])
    for name in ("report.md", "metrics.json", "classifier_auroc.png", "segmenter_dice3d.png", "classifier_maps.png",
                 "segmenter_maps.png"):
        assert (out / name).exists(), name


def _must_not_train(*args, **kwargs):
    pytest.fail("a finished run was trained again")


def test_resume_reuses_every_finished_run(tiny_run, monkeypatch):
    script, out, summary = tiny_run
    monkeypatch.setattr(task, "fit", _must_not_train)
    again = script.main(script.get_args([*TINY, "--out", str(out), "--resume"]))
    assert again["classifier"]["rows"] == summary["classifier"]["rows"]
    assert again["segmenter"]["rows"] == summary["segmenter"]["rows"]


def test_training_and_test_data_are_disjoint_and_nested():
    cls = task.ClassifierStudy(size=32, n_test=10)
    train, test = task.classifier_data(cls, 6, seed=0)
    bigger, _ = task.classifier_data(cls, 12, seed=0)
    other, _ = task.classifier_data(cls, 6, seed=1)
    flat = lambda d: d.tensors["image"].flatten(1)  # noqa: E731
    assert torch.equal(flat(bigger)[:6], flat(train))  # nested across n within a seed
    assert not torch.equal(flat(other), flat(train))   # another seed draws other images
    assert torch.cdist(flat(train), flat(test)).min() > 0
    seg = task.SegmenterStudy(size=32, n_test=1)
    s_train, s_test = task.segmenter_data(seg, 1, seed=0)
    assert s_train.tensors["image"].shape[1:] == (1, 32, 32) and s_train.tensors["mask"].max() == 1
    assert torch.cdist(s_train.tensors["image"].flatten(1), s_test.tensors["image"].flatten(1)).min() > 0


def test_pointing_rates_by_hand():
    masks = np.zeros((2, 32, 32), bool)
    masks[0, 2:4, 2:4] = True      # a corner lesion: the centre prior misses it
    masks[1, 15:17, 15:17] = True  # a central one: it hits
    hit = np.zeros((2, 32, 32), np.float32)
    hit[0, 3, 3] = hit[1, 16, 16] = 1.0
    flat = np.ones((2, 32, 32), np.float32)  # no maximum: a miss (common.metrics.pointing_game)
    rates = task.pointing_rates({"hit": hit, "flat": flat, "far": hit[::-1].copy()}, masks, 32)
    assert rates == {"hit": 1.0, "flat": 0.0, "far": 0.0, "centre": 0.5}


@pytest.mark.parametrize("argv, needle", [
    (["--dataset", "mura"], "--dataset mura needs --data-root"),
    (["--dataset", "acdc", "--study", "classifier"], "acdc is a segmenter dataset"),
    (["--seg-size", "36"], "multiple of 8"),
    (["--ns", "0,10"], "positive integers"),
    (["--lesion-types", "fracture,bruise"], "unknown lesion type"),
    (["--crop", "1.5"], "--crop"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, argv, needle):
    out = tmp_path / "never"
    res = run_main(FOLDER, NAME, *argv, "--out", str(out))
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert res.returncode == 2 and len(lines) == 1 and lines[0].startswith("error:") and needle in lines[0], res.stderr
    assert not out.exists()


def _write_acdc(root, n_patients: int = 5):
    """ACDC's published layout, tiny random volumes with an LV (3) block in a myocardium (2) ring near the centre."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    for p in range(1, n_patients + 1):
        folder = root / "training" / f"patient{p:03d}"
        folder.mkdir(parents=True)
        (folder / "Info.cfg").write_text("ED: 1\nES: 5\nGroup: NOR\n")
        for frame in (1, 5):
            vol = rng.uniform(0, 500, (24, 24, 3)).astype(np.float32)
            gt = np.zeros((24, 24, 3), np.uint8)
            gt[7:17, 7:17, :2] = 2
            gt[9:15, 9:15, :2] = 3
            vol[gt == 3] += 600
            stem = f"patient{p:03d}_frame{frame:02d}"
            nib.save(nib.Nifti1Image(vol, np.eye(4)), folder / f"{stem}.nii.gz")
            nib.save(nib.Nifti1Image(gt, np.eye(4)), folder / f"{stem}_gt.nii.gz")
    return root


def _write_mura(root):
    """MURA's published layout: per split, a CSV of image paths and study folders named by their label."""
    from PIL import Image

    for split in ("train", "valid"):
        paths = []
        for k in range(6):
            study = f"MURA-v1.1/{split}/XR_WRIST/patient{k:05d}/study1_{'positive' if k % 2 else 'negative'}/"
            (root / study).mkdir(parents=True)
            arr = np.random.default_rng(k).integers(0, 255, (20, 16), dtype=np.uint8)
            Image.fromarray(arr).save(root / study / "image1.png")
            paths.append(study + "image1.png")
        (root / "MURA-v1.1" / f"{split}_image_paths.csv").write_text("\n".join(paths) + "\n")
    return root


def test_real_layouts_acdc_and_mura(script, tmp_path):
    small = ["--seeds", "1", "--steps", "1", "--seg-steps", "1", "--width", "4", "--jobs", "1", "--device", "cpu"]
    acdc = _write_acdc(tmp_path / "ACDC")
    seg = script.main(script.get_args([*small, "--dataset", "acdc", "--data-root", str(acdc), "--seg-size", "32",
                                       "--volumes", "2", "--test-volumes", "1", "--out", str(tmp_path / "a")]))
    assert set(seg) >= {"segmenter"} and "classifier" not in seg  # --dataset acdc: the segmenter study only
    assert [(r["config"], r["n"]) for r in seg["segmenter"]["rows"]] == [("unet", 2), ("attention_unet", 2)]
    mura = _write_mura(tmp_path / "mura")
    cls = script.main(script.get_args([*small, "--dataset", "mura", "--data-root", str(mura), "--size", "32",
                                       "--ns", "4", "--n-test", "6", "--out", str(tmp_path / "m")]))
    assert "segmenter" not in cls and all(0 <= r["mean"] <= 1 for r in cls["classifier"]["rows"])
    assert "pointing" not in cls["classifier"]  # MURA has no lesion masks: no pointing game
    with pytest.raises(task.InputError, match="more than the 6 MURA training images"):
        script.main(script.get_args([*small, "--dataset", "mura", "--data-root", str(mura), "--size", "32",
                                     "--ns", "7", "--out", str(tmp_path / "m2")]))
