"""gradcam.py and evaluate.py outputs: the class each map explains and its probability (1- and K-output heads),
output names, what --save-maps holds, argument checks, help text, and no empty --out left by bad input."""

import json
import re
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from common.errors import InputError
from tests.helpers.scripts import run_main
from tests.test_interpretability_scripts import load


def tiny_checkpoint_with(path, n_out: int, bias=None):
    """An untrained 'tiny' DenseNet with ``n_out`` outputs (cam_stride 8, trained-at size 32), saved as train.py
    does; ``bias`` sets the head's bias so the predicted class is known."""
    from common.models import build_densenet

    torch.manual_seed(0)
    model = build_densenet("tiny", num_outputs=n_out, cam_stride=8)
    if bias is not None:
        with torch.no_grad():
            model.classifier.bias.copy_(torch.tensor(bias, dtype=torch.float32))
    torch.save({"model": model.state_dict(), "args": {"size": 32, "cam_stride": 8}}, path)
    return path


def save_png(path, shape, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray((rng.random(shape) * 255).astype(np.uint8)).save(path)
    return path


def model_view(checkpoint, image_path, size=32):
    """Oracle inputs for one image file: the head's weights (K, C), the logits (K,), the block-4 features (C, h, w)."""
    from common.data.geometry import to_square
    from common.io import read_image
    from common.models import to_model_input
    from common.tasks.bone_demo import load_classifier

    model, _ = load_classifier(checkpoint, torch.device("cpu"))
    square, _ = to_square(read_image(image_path, gray=True)[0], size)
    x = to_model_input(torch.from_numpy(square)[None, None])
    with torch.no_grad():
        feats = model.relu(model.features(x))  # (1, C, h, w): the features the head pools
        logits = model(x)
    return model.classifier.weight.detach(), logits[0], feats[0]


def run_gradcam(tmp_path, *argv, out="out"):
    gradcam = load("gradcam")
    args = gradcam.get_args([*map(str, argv), "--out", str(tmp_path / out), "--device", "cpu"])
    return gradcam.main(args), tmp_path / out


# ---------------------------------------------------------------- 1, 4: probabilities and the explained class


def test_k_output_head_reports_softmax_and_explains_the_argmax_class(tmp_path):
    # logit 0 is large (sigmoid(logit 0) ~ 0.95 read as "abnormal" before) but class 2 wins the softmax
    ckpt = tiny_checkpoint_with(tmp_path / "k3.pt", 3, bias=[3.0, -3.0, 8.0])
    img = save_png(tmp_path / "in" / "wide.png", (40, 70))
    weight, logits, feats = model_view(ckpt, img)
    softmax = torch.softmax(logits, 0).numpy()
    assert softmax.argmax() == 2 and logits[0] > 0

    result, out = run_gradcam(tmp_path, "--img", img, "--checkpoint", ckpt, "--method", "cam", "--layers", "4",
                              "--save-maps")
    row = result["images"][0]
    assert result["outputs"] == 3 and "p_abnormal" not in row
    assert row["predicted"] == row["target_class"] == 2
    np.testing.assert_allclose(row["probs"], softmax, atol=1e-5)
    assert row["p_predicted"] == pytest.approx(softmax[2], abs=1e-5) == row["p_target"]
    maps = np.load(out / "wide_maps.npz")
    raw = torch.einsum("c,chw->hw", weight[2], feats).numpy()  # CAM of class 2, by hand
    np.testing.assert_allclose(maps["raw_cam_block4"], raw, atol=1e-4)
    assert int(maps["target_class"]) == 2 and float(maps["p_target"]) == pytest.approx(softmax[2], abs=1e-5)

    # a chosen class: its probability is reported and its map explained; the prediction is unchanged
    result, out = run_gradcam(tmp_path, "--img", img, "--checkpoint", ckpt, "--method", "cam", "--layers", "4",
                              "--save-maps", "--target-class", "1", out="out1")
    row = result["images"][0]
    assert (row["predicted"], row["target_class"]) == (2, 1)
    assert row["p_target"] == pytest.approx(softmax[1], abs=1e-5)
    raw = torch.einsum("c,chw->hw", weight[1], feats).numpy()
    np.testing.assert_allclose(np.load(out / "wide_maps.npz")["raw_cam_block4"], raw, atol=1e-4)
    assert json.loads((out / "metrics.json").read_text())["images"][0]["target_class"] == 1
    assert "| target_class | p_target |" in (out / "report.md").read_text()


def test_target_class_outside_the_model_is_one_error_and_leaves_no_out(tmp_path):
    ckpt = tiny_checkpoint_with(tmp_path / "k3.pt", 3)
    img = save_png(tmp_path / "a.png", (32, 32))
    with pytest.raises(InputError, match=r"--target-class 3 is not a class of this 3-output head \(allowed: 0, 1, 2\)"):
        run_gradcam(tmp_path, "--img", img, "--checkpoint", ckpt, "--target-class", "3", out="new/out")
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("target", [None, 0])
def test_one_logit_head_keeps_p_abnormal_and_states_the_explained_class(tmp_path, capsys, target):
    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1, bias=[4.0])
    img = save_png(tmp_path / "in" / "x.png", (32, 32))
    weight, logits, feats = model_view(ckpt, img)
    p = float(torch.sigmoid(logits[0]))
    assert p > 0.5
    extra = [] if target is None else ["--target-class", target]
    result, out = run_gradcam(tmp_path, "--img", img, "--checkpoint", ckpt, "--method", "cam", "--layers", "4",
                              "--save-maps", *extra)
    row = result["images"][0]
    assert row["p_abnormal"] == pytest.approx(p, abs=1e-5) and row["predicted"] == 1
    explained = 1 if target is None else 0
    assert row["target_class"] == explained
    assert row["p_target"] == pytest.approx(p if explained else 1 - p, abs=1e-5)
    name = "abnormal" if explained else "normal"
    assert f"x: p(abnormal) = {p:.3f}; explaining class {explained} ({name}), p = " in capsys.readouterr().out
    # class 0 of a 1-logit head scores the negated logit
    sign = 1.0 if explained else -1.0
    raw = sign * torch.einsum("c,chw->hw", weight[0], feats).numpy()
    np.testing.assert_allclose(np.load(out / "x_maps.npz")["raw_cam_block4"], raw, atol=1e-4)
    assert result["classes"] == {"0": "normal", "1": "abnormal"}


# ---------------------------------------------------------------- 2: output names


def test_output_stems_strip_the_image_extension_and_rename_only_clashes():
    from common.cam.outputs import output_stems

    paths = ["a/1.2.840.113619.1.dcm", "b/1.2.840.113619.2.dcm", "c/scan.nii.gz", "d/x.png", "e/x.png", "f/X.JPG",
             "g/x_1.png", "h/y.tiff"]
    assert output_stems(paths) == ["1.2.840.113619.1", "1.2.840.113619.2", "scan", "x_2", "x_3", "X_4",
                                           "x_1", "y"]


def test_clashing_names_get_a_suffix_and_every_output_records_its_source(tmp_path):
    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)
    files = [save_png(tmp_path / "in" / "a" / "1.2.840.1.png", (32, 32), 1),
             save_png(tmp_path / "in" / "a" / "1.2.840.2.png", (32, 32), 2),
             save_png(tmp_path / "in" / "a" / "x.png", (32, 32), 3),
             save_png(tmp_path / "in" / "b" / "x.png", (32, 32), 4)]
    result, out = run_gradcam(tmp_path, "--img", tmp_path / "in", "--checkpoint", ckpt, "--method", "cam",
                              "--layers", "4", "--save-maps")
    got = {r["image"]: r["source"] for r in result["images"]}
    files = [str(f.resolve()) for f in files]
    assert got == {"1.2.840.1": files[0], "1.2.840.2": files[1], "x_1": files[2], "x_2": files[3]}
    assert sorted(p.name for p in out.glob("*_panel.png")) == sorted(f"{s}_panel.png" for s in got)
    for stem, source in got.items():
        assert str(np.load(out / f"{stem}_maps.npz")["source"]) == source
    report = (out / "report.md").read_text()
    assert all(source in report for source in got.values())


# ---------------------------------------------------------------- 3: what --save-maps holds


@pytest.mark.parametrize("tta", ["none", "flips"])
def test_saved_maps_hold_raw_and_scaled_maps_with_the_frame_back_to_the_image(tmp_path, tta):
    import cv2

    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)
    img = save_png(tmp_path / "in" / "wide.png", (40, 70))
    weight, logits, feats = model_view(ckpt, img)
    result, out = run_gradcam(tmp_path, "--img", img, "--checkpoint", ckpt, "--method", "cam,gradcam",
                              "--save-maps", "--tta", tta)
    row = result["images"][0]
    maps = np.load(out / "wide_maps.npz")
    assert maps["image_shape"].tolist() == [40, 70] and int(maps["square_side"]) == 70
    assert maps["crop_box"].tolist() == [0, 15, 70, 55]  # 15 rows of padding above the image in the 70 px square
    assert str(maps["tta"]) == tta and str(maps["source"]) == str(img.resolve())
    assert int(maps["target_class"]) == row["target_class"] and int(maps["predicted"]) == row["predicted"]
    assert float(maps["p_target"]) == pytest.approx(row["p_target"], abs=1e-6)
    assert maps["probs"][1] == pytest.approx(row["p_abnormal"], abs=1e-6)
    # raw maps at feature resolution (cam_stride 8 at 32 px: block 1 at /4, blocks 2-4 at /8), of the image itself
    assert {k: maps[k].shape for k in maps.files if k.startswith("raw_")} == {
        "raw_cam_block4": (4, 4), "raw_gradcam_block4": (4, 4), "raw_gradcam_block3": (4, 4),
        "raw_gradcam_block2": (4, 4), "raw_gradcam_block1": (8, 8)}
    sign = 1.0 if row["target_class"] == 1 else -1.0
    raw = sign * torch.einsum("c,chw->hw", weight[0], feats).numpy()
    np.testing.assert_allclose(maps["raw_cam_block4"], raw, atol=1e-4)
    if tta == "none":  # the drawn map is the raw one after ReLU, bilinear upsampling and min-max
        for key in ("cam_block4", "gradcam_block1", "gradcam_block3"):
            up = F.interpolate(torch.from_numpy(maps[f"raw_{key}"]).clamp_min(0)[None, None], size=(32, 32),
                               mode="bilinear", align_corners=False)[0, 0].numpy()
            expected = (up - up.min()) / (up.max() - up.min())
            np.testing.assert_allclose(maps[key], expected, atol=1e-5)
    # square_side and crop_box take a map back onto the image, as the overlays are drawn
    m = maps["gradcam_block2"]
    x0, y0, x1, y1 = maps["crop_box"]
    side = int(maps["square_side"])
    on_image = cv2.resize(m, (side, side), interpolation=cv2.INTER_LINEAR)[y0:y1, x0:x1]
    assert on_image.shape == (40, 70) == np.asarray(Image.open(out / "wide_gradcam_block2.png")).shape[:2]


# ---------------------------------------------------------------- 5: bad input leaves no --out behind


def test_missing_image_leaves_no_out_folders(tmp_path):
    r = run_main("00_Interpretability", "gradcam", "--img", tmp_path / "nope.png", "--out",
                 tmp_path / "x1" / "deep" / "out", "--device", "cpu")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 1 and "no such file" in lines[0], r.stderr
    assert not (tmp_path / "x1").exists()


@pytest.mark.parametrize("script", ["gradcam", "evaluate"])
def test_bad_checkpoint_leaves_no_out_folders_but_keeps_existing_ones(tmp_path, script):
    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)
    (tmp_path / "cut.pt").write_bytes(ckpt.read_bytes()[:1000])
    (tmp_path / "kept").mkdir()
    img = save_png(tmp_path / "a.png", (32, 32))
    module = load(script)
    extra = ["--img", str(img)] if script == "gradcam" else ["--n", "2", "--faithfulness", "0"]
    out = tmp_path / "kept" / "x1" / "deep" / "out"
    args = module.get_args([*extra, "--checkpoint", str(tmp_path / "cut.pt"), "--out", str(out), "--device", "cpu"])
    with pytest.raises(InputError, match="truncated or corrupt"):
        module.main(args)
    assert (tmp_path / "kept").is_dir() and not (tmp_path / "kept" / "x1").exists()


@pytest.mark.parametrize("n_out, abnormal, message", [
    (2, 2, r"--abnormal-class 2 is not a class of this 2-output head \(allowed: 0, 1\) -- choose 0, 1"),
    (1, 0, r"--abnormal-class 0 is not a class of this 1-output head \(allowed: 1\) -- leave --abnormal-class at 1")])
def test_evaluate_refuses_an_abnormal_class_the_head_lacks_and_leaves_no_out(tmp_path, n_out, abnormal, message):
    ckpt = tiny_checkpoint_with(tmp_path / "k.pt", n_out)
    evaluate = load("evaluate")
    args = evaluate.get_args(["--checkpoint", str(ckpt), "--n", "2", "--abnormal-class", str(abnormal),
                              "--out", str(tmp_path / "o" / "e"), "--device", "cpu"])
    with pytest.raises(InputError, match=message):
        evaluate.main(args)
    assert not (tmp_path / "o").exists()


def test_evaluate_scores_a_two_class_head_as_its_one_logit_twin(tmp_path):
    """Oracle: a 2-class softmax head whose abnormal row is a 1-logit head's weights and whose other row is zero has
    softmax p(abnormal) = sigmoid(logit) and the same class score, so every number evaluate.py reports must agree;
    with the classes swapped (--abnormal-class 0) too."""
    from common.models import build_densenet

    one = tiny_checkpoint_with(tmp_path / "k1.pt", 1, bias=[0.3])
    state = torch.load(one)["model"]
    for abnormal in (1, 0):
        torch.manual_seed(0)
        twin = build_densenet("tiny", num_outputs=2, cam_stride=8).state_dict()
        twin.update({k: v for k, v in state.items() if not k.startswith("classifier.")})
        twin["classifier.weight"] = torch.zeros(2, state["classifier.weight"].shape[1])
        twin["classifier.weight"][abnormal] = state["classifier.weight"][0]
        twin["classifier.bias"] = torch.zeros(2)
        twin["classifier.bias"][abnormal] = state["classifier.bias"][0]
        torch.save({"model": twin, "args": {"size": 32, "cam_stride": 8}}, tmp_path / f"k2_{abnormal}.pt")
    evaluate = load("evaluate")
    common = ["--n", "6", "--faithfulness", "2", "--method", "cam,gradcam,gradcampp,scorecam", "--layers", "4,3",
              "--device", "cpu"]
    results = [evaluate.main(evaluate.get_args([*common, "--checkpoint", str(ckpt), *extra,
                                                "--out", str(tmp_path / f"out{i}")]))
               for i, (ckpt, extra) in enumerate([(one, []), (tmp_path / "k2_1.pt", []),
                                                  (tmp_path / "k2_0.pt", ["--abnormal-class", "0"])])]
    ref = results[0]
    for res in results[1:]:
        assert res["detected"] == ref["detected"]
        assert res["cam_block4_by_detection"] == ref["cam_block4_by_detection"]
        assert res["cam_evidence"] == pytest.approx(ref["cam_evidence"], abs=1e-6)
        assert [(r["method"], r["block"]) for r in res["rows"]] == [(r["method"], r["block"]) for r in ref["rows"]]
        for row, want in zip(res["rows"], ref["rows"], strict=True):
            for key in ("pointing_game", "energy_pg", "iou", "deletion_auc", "insertion_auc"):
                assert row[key] == pytest.approx(want[key], abs=1e-4), (row["method"], row["block"], key)


def test_run_context_removes_only_the_folders_it_created_while_empty(tmp_path):
    import argparse

    from common.runtime import setup_run

    ctx = setup_run(argparse.Namespace(out=tmp_path / "a" / "b" / "c", device="cpu", seed=0))
    assert ctx.created == (tmp_path / "a" / "b" / "c", tmp_path / "a" / "b", tmp_path / "a")
    (tmp_path / "a" / "keep.txt").write_text("x")  # "a" now holds a file: it stays, "b" and "c" go
    with pytest.raises(RuntimeError, match="boom"), ctx.removing_out_on_error():
        raise RuntimeError("boom")
    assert (tmp_path / "a" / "keep.txt").exists() and not (tmp_path / "a" / "b").exists()
    ctx = setup_run(argparse.Namespace(out=tmp_path / "a" / "d", device="cpu", seed=0))
    with ctx.removing_out_on_error():  # no error: nothing removed
        pass
    assert ctx.created == (tmp_path / "a" / "d",) and ctx.out.is_dir()


# ---------------------------------------------------------------- 6, 7: argument checks and help text


@pytest.mark.parametrize("script,argv,expected", [
    ("gradcam", ["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    ("gradcam", ["--size", "0"], "argument --size: must be >= 32, got 0"),
    ("gradcam", ["--size", "16"], "argument --size: must be >= 32, got 16"),
    ("gradcam", ["--n-phantom", "0"], "argument --n-phantom: must be >= 1, got 0"),
    ("gradcam", ["--target-class", "-1"], "argument --target-class: must be >= 0, got -1"),
    ("gradcam", ["--scorecam-topk", "-1"], "argument --scorecam-topk: must be >= 0"),
    ("gradcam", ["--data-root", "/data"], "--data-root is not used by gradcam.py"),
    ("evaluate", ["--n", "0"], "argument --n: must be >= 1, got 0"),
    ("evaluate", ["--size", "0"], "argument --size: must be >= 32, got 0"),
    ("evaluate", ["--batch-size", "0"], "argument --batch-size: must be >= 1, got 0"),
    ("evaluate", ["--faithfulness", "-1"], "argument --faithfulness: must be >= 0, got -1"),
    ("evaluate", ["--batch-size", "two"], "argument --batch-size: expected an integer >= 1, got 'two'"),
])
def test_bad_numbers_are_one_line_errors_with_exit_2(capsys, script, argv, expected):
    with pytest.raises(SystemExit) as exit_info:
        load(script).get_args(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert err.count("\n") == 1 and err.startswith(f"error: {expected}"), err


@pytest.mark.parametrize("script", ["gradcam", "evaluate"])
def test_help_keeps_the_usage_lines_and_states_each_default_once(capsys, script):
    with pytest.raises(SystemExit) as exit_info:
        load(script).get_args(["--help"])
    text = capsys.readouterr().out
    assert exit_info.value.code == 0
    assert f"\nUsage: python 00_Interpretability/{script}.py --" in text  # the docstring's own line
    if script == "evaluate":
        assert "\n       python 00_Interpretability/evaluate.py --checkpoint runs/train/best.pt" in text
    entries = {m.group(1): " ".join(m.group(2).split())
               for m in re.finditer(r"\n  (--[\w-]+)(.*?)(?=\n  -|\Z)", text, re.S)}
    assert "--batch-size" in entries and "--size" in entries
    for flag, entry in entries.items():
        assert entry.count("(default") <= 1 and "(default: None)" not in entry, (flag, entry)
    assert "(default: 8)" in entries["--batch-size"] or "(default: 16)" in entries["--batch-size"]
    assert entries["--batch-size"].split(" ", 1)[1].startswith("images")  # it has a help text
    assert "else 320)" in entries["--size"]
    if script == "gradcam":
        assert "changes nothing" in entries["--quick"] and "not used by gradcam.py" in entries["--data-root"]
        assert "raw_<method>_block<k>" in entries["--save-maps"] and "crop_box" in entries["--save-maps"]


def test_evaluate_n_1_runs_with_its_example_figure(tmp_path):
    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)
    evaluate = load("evaluate")
    result = evaluate.main(evaluate.get_args(["--checkpoint", str(ckpt), "--n", "1", "--faithfulness", "0",
                                              "--method", "cam", "--layers", "4", "--out", str(tmp_path / "o"),
                                              "--device", "cpu"]))
    assert result["n"] == 1 and (tmp_path / "o" / "examples.png").exists()


def test_evaluate_bad_number_from_the_command_line(tmp_path, monkeypatch):
    # a --checkpoint that does not exist: were --n 0 let through, the run stops there, not in the demo model's training
    from tests.helpers.scripts import ROOT

    monkeypatch.setattr(sys, "argv", [str(ROOT / "00_Interpretability" / "evaluate.py")])  # argparse's prog name
    r = run_main("00_Interpretability", "evaluate", "--n", "0", "--out", tmp_path / "o", "--checkpoint",
                 tmp_path / "none.pt")
    assert r.returncode == 2 and r.stderr.strip() == "error: argument --n: must be >= 1, got 0 (see evaluate.py --help)"
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- a corrupt image among good ones, stale outputs


def test_a_corrupt_image_among_good_ones_is_skipped_named_at_the_end_and_exits_2(tmp_path):
    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)
    save_png(tmp_path / "in" / "a.png", (32, 40), 1)
    save_png(tmp_path / "in" / "c.png", (32, 32), 2)
    (tmp_path / "in" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    out = tmp_path / "out"
    r = run_main("00_Interpretability", "gradcam", "--img", tmp_path / "in", "--checkpoint", ckpt, "--method", "cam",
                 "--layers", "4", "--out", out, "--device", "cpu")
    assert r.returncode == 2
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    bad = str((tmp_path / "in" / "b.png").resolve())
    assert len(lines) == 2 and lines[0].startswith(f"skipped: {bad}: "), r.stderr  # one line per unreadable file
    assert lines[1].startswith("error: 1 of 3 images could not be read (each named above); the other 2 are "
                               f"explained in {out}")
    assert sorted(p.name for p in out.glob("*_panel.png")) == ["a_panel.png", "c_panel.png"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [m["image"] for m in metrics["images"]] == ["a", "c"]
    assert [u["source"] for u in metrics["unreadable"]] == [bad]
    assert bad in (out / "report.md").read_text()
    assert f"wrote {out} (" in r.stdout.splitlines()[-1]


def test_several_unreadable_images_and_nothing_else_write_nothing(tmp_path):
    for name in ("x.png", "y.png"):
        (tmp_path / "in").mkdir(exist_ok=True)
        (tmp_path / "in" / name).write_bytes(b"\x89PNG\r\n\x1a\nnope")
    out = tmp_path / "out"
    r = run_main("00_Interpretability", "gradcam", "--img", tmp_path / "in", "--out", out, "--device", "cpu")
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert r.returncode == 2 and len(lines) == 2 and all(ln.startswith("error: ") for ln in lines), r.stderr
    assert "x.png" in lines[0] and "y.png" in lines[1] and not out.exists()  # no model loaded, nothing written


def test_a_rerun_removes_its_own_stale_outputs_and_nothing_else(tmp_path):
    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)
    one, two = save_png(tmp_path / "in" / "one.png", (32, 32), 1), save_png(tmp_path / "in" / "two.png", (32, 32), 2)
    first, out = run_gradcam(tmp_path, "--img", one, two, "--checkpoint", ckpt, "--layers", "4", "--save-maps")
    assert {"two_panel.png", "two_cam_block4.png", "two_maps.npz", "report.md", "metrics.json"} <= set(first["files"])
    (out / "notes.txt").write_text("mine")
    save_png(out / "two_gradcam_block1.png", (8, 8))  # a user's file that merely looks like an output: not listed
    second, _ = run_gradcam(tmp_path, "--img", one, "--checkpoint", ckpt, "--layers", "4")
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(second["files"] + ["notes.txt", "two_gradcam_block1.png"])
    assert not any(name.startswith("two_") for name in second["files"]) and not (out / "one_maps.npz").exists()
    assert [r["image"] for r in json.loads((out / "metrics.json").read_text())["images"]] == ["one"]
    # a metrics.json another script wrote is no list of gradcam.py's files
    (out / "metrics.json").write_text(json.dumps({"script": "evaluate.py", "files": ["notes.txt"]}))
    run_gradcam(tmp_path, "--img", two, "--checkpoint", ckpt, "--layers", "4")
    assert (out / "notes.txt").exists() and (out / "one_panel.png").exists()


def test_remove_stale_leaves_paths_outside_the_folder_alone(tmp_path):
    from common.cam.outputs import remove_stale

    (tmp_path / "out").mkdir()
    for name in ("a.png", "b.png"):
        (tmp_path / "out" / name).write_text("x")
    (tmp_path / "keep.png").write_text("x")
    removed = remove_stale(tmp_path / "out", ["a.png", "b.png", "../keep.png", str(tmp_path / "keep.png"), "gone.png"],
                           ["b.png"])
    assert removed == ["a.png"] and (tmp_path / "keep.png").exists() and (tmp_path / "out" / "b.png").exists()


# ---------------------------------------------------------------- the demo model on a user's image


@pytest.mark.parametrize("user_image", [True, False])
def test_the_demo_model_on_a_user_image_says_once_what_it_has_seen(tmp_path, monkeypatch, user_image):
    from common.tasks import bone_session as session
    from common.tasks.bone_demo import load_classifier

    ckpt = tiny_checkpoint_with(tmp_path / "k1.pt", 1)

    def demo_stand_in(path, device, arch=None):  # never trains the demo model
        assert path is None
        model, info = load_classifier(ckpt, device)
        return model, {**info, "demo": True, "source": "demo model (tiny stand-in)"}

    monkeypatch.setattr(session, "load_classifier", demo_stand_in)
    img = save_png(tmp_path / "ct_slice.png", (32, 32))
    extra = ["--img", img] if user_image else ["--n-phantom", "1", "--size", "32"]
    out = tmp_path / "out"
    r = run_main("00_Interpretability", "gradcam", *extra, "--method", "cam", "--layers", "4", "--out", out,
                 "--device", "cpu")
    assert r.returncode == 0, r.stderr
    notes = [ln for ln in r.stdout.splitlines() if "only ever seen phantom bone radiographs" in ln]
    assert len(notes) == (1 if user_image else 0)
    if user_image:
        assert notes[0].startswith("note: ") and "p(abnormal)" in notes[0] and "--checkpoint" in notes[0]
        assert "only ever seen phantom bone radiographs" in (out / "report.md").read_text()
    assert r.stdout.splitlines()[-1].startswith(f"wrote {out} (")


@pytest.mark.parametrize("shape", [(40, 70), (70, 40), (33, 33)])
def test_the_square_frame_and_back_is_the_identity_at_the_image_s_own_side(shape):
    from common.data.geometry import back_to_original, square_box, to_square

    img = np.random.default_rng(0).random(shape).astype(np.float32)
    side = max(shape)
    square, box = to_square(img, side)  # no resizing: padding only
    x0, y0, x1, y1 = box
    assert box == square_box(shape) and (x1 - x0, y1 - y0) == (shape[1], shape[0])
    np.testing.assert_array_equal(square[y0:y1, x0:x1], img)
    assert square.sum() == pytest.approx(img.sum(), rel=1e-6)  # the padding is zeros
    np.testing.assert_allclose(back_to_original(square, box, shape), img, atol=1e-6)
    small, _ = to_square(img, 32)
    assert small.shape == (32, 32) and back_to_original(small, box, shape).shape == shape
