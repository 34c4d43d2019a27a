"""00_Interpretability scripts end to end on tiny inputs: train -> gradcam -> evaluate, and bad input."""


import numpy as np
import pytest
import torch
from PIL import Image

from tests.helpers.scripts import load_script, run_main


class Recorder:
    """Stands in for a script's ``image_grid``: records each call's arguments, then draws it as the real one does."""

    def __init__(self, real):
        self.real, self.calls = real, []

    def __call__(self, images, path, **kw):
        self.calls.append({"images": images, "path": path, **kw})
        return self.real(images, path, **kw)


def load(name):
    return load_script("00_Interpretability", name)


def test_gradcam_writes_overlays_panels_and_maps(tiny_checkpoint, tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 70)) * 255).astype(np.uint8)).save(tmp_path / "wide.png")  # non-square
    Image.fromarray((rng.random((50, 30)) * 65535).astype(np.uint16)).save(tmp_path / "tall16.png")
    gradcam = load("gradcam")
    out = tmp_path / "out"
    args = gradcam.get_args(["--img", str(tmp_path / "*.png"), "--checkpoint", str(tiny_checkpoint), "--out", str(out),
                             "--method", "cam,gradcam,gradcampp", "--save-maps", "--device", "cpu"])
    result = gradcam.main(args)
    assert result["size"] == 64 and len(result["images"]) == 2
    for stem, shape in (("wide", (40, 70)), ("tall16", (50, 30))):
        assert (out / f"{stem}_panel.png").exists()
        for k in (1, 2, 3, 4):
            overlay = np.asarray(Image.open(out / f"{stem}_gradcam_block{k}.png"))
            assert overlay.shape[:2] == shape  # mapped back onto the original, unpadded image
        assert (out / f"{stem}_cam_block4.png").exists() and not (out / f"{stem}_cam_block1.png").exists()
        maps = np.load(out / f"{stem}_maps.npz")
        assert maps["gradcam_block2"].shape == (64, 64) and 0 <= maps["gradcam_block2"].min()
    # CAM and Grad-CAM coincide at block 4 (the features the head pools)
    np.testing.assert_allclose(maps["cam_block4"], maps["gradcam_block4"], atol=1e-4)


def test_gradcam_flip_tta_keeps_cam_equal_to_gradcam_at_block4(tiny_checkpoint, tmp_path):
    gradcam = load("gradcam")
    args = gradcam.get_args(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--n-phantom", "2",
                             "--layers", "4", "--tta", "flips", "--save-maps", "--device", "cpu"])
    gradcam.main(args)
    saved = sorted(tmp_path.glob("*_maps.npz"))
    assert len(saved) == 2
    for path in saved:
        maps = np.load(path)
        # both are averaged over the same four views, so the block-4 identity survives the augmentation
        np.testing.assert_allclose(maps["cam_block4"], maps["gradcam_block4"], atol=1e-4)
        assert maps["cam_block4"].max() == pytest.approx(1.0)


def test_evaluate_tolerance_scales_with_the_image_and_tta_is_recorded(tiny_checkpoint, tmp_path):
    evaluate = load("evaluate")
    args = evaluate.get_args(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--n", "4",
                              "--faithfulness", "0", "--method", "cam", "--layers", "4", "--tta", "flips",
                              "--device", "cpu"])
    result = evaluate.main(args)
    assert result["tolerance"] == 4 and result["tta"] == "flips"  # 64 px / 16
    # the single-view reading is reported beside it, and equals a plain run's CAM row
    other = result["cam_block4_other_tta"]
    plain = evaluate.main(evaluate.get_args(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "plain"),
                                             "--n", "4", "--faithfulness", "0", "--method", "cam", "--layers", "4",
                                             "--device", "cpu"]))
    assert other["tta"] == "none" and other["pointing_game"] == plain["cam_block4_pointing_game"]
    assert plain["cam_block4_other_tta"] == {"tta": "flips", "pointing_game": result["cam_block4_pointing_game"]}
    assert "test-time augmentation 'flips'" in (tmp_path / "report.md").read_text()


def test_evaluate_scores_every_method_and_block(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    evaluate = load("evaluate")
    grid = Recorder(evaluate.image_grid)
    monkeypatch.setattr(evaluate, "image_grid", grid)
    args = evaluate.get_args(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--n", "6",
                              "--faithfulness", "2", "--method", "cam,gradcam,gradcampp,layercam,scorecam",
                              "--scorecam-topk", "4", "--device", "cpu"])
    result = evaluate.main(args)
    assert capsys.readouterr().out.splitlines()[-1] == f"wrote {tmp_path} (report.md, metrics.json, examples.png)"
    # examples.png: rows = the first images, the input + at most EXAMPLE_MAPS maps, the best by pointing game, each
    # method once, none a copy of another (CAM = Grad-CAM at block 4), with a title, colour bar and legend
    (fig,) = grid.calls
    n_cols = fig["ncols"]
    assert 2 <= n_cols <= evaluate.EXAMPLE_MAPS + 1 and len(fig["images"]) == 4 * n_cols
    shown = [t.split("\n")[0] for t in fig["titles"][1:n_cols]]  # "<method> block <k>"
    methods = [t.split(" block ")[0] for t in shown]
    assert len(set(methods)) == len(methods) and not {"cam block 4", "gradcam block 4"} <= set(shown)
    pg = {f"{r['method']} block {r['block']}": r["pointing_game"] for r in result["rows"]}
    assert [pg[t] for t in shown] == sorted((pg[t] for t in shown), reverse=True)
    for method in {r["method"] for r in result["rows"]} - set(methods):  # left out: capped, or CAM's twin
        best = max(v for key, v in pg.items() if key.split(" block ")[0] == method)
        twin = method in ("cam", "gradcam") and ({"cam block 4", "gradcam block 4"} & set(shown))
        assert best <= pg[shown[-1]] or twin, method
    assert fig["shared_colorbar"] and fig["suptitle"] and fig["legend"] and len(fig["row_labels"]) == 4
    got = {(r["method"], r["block"]) for r in result["rows"]}
    gradient_methods = ("gradcam", "gradcampp", "layercam", "scorecam")
    assert got == {("cam", 4)} | {(m, k) for m in gradient_methods for k in (1, 2, 3, 4)}
    for r in result["rows"]:
        assert 0 <= r["pointing_game"] <= 1 and 0 <= r["energy_pg"] <= 1 and r["n"] == 6
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1
    assert (tmp_path / "examples.png").exists() and (tmp_path / "metrics.json").exists()
    # the evidence diagnostic's peak pointing game is the CAM row's, on the same images
    cam4 = next(r for r in result["rows"] if r["method"] == "cam")
    assert result["cam_evidence"]["n"] == 6
    assert result["cam_evidence"]["peak_pointing_game"] == cam4["pointing_game"]
    assert "Where the block-4 CAM peak looks" in (tmp_path / "report.md").read_text()
    # the detected / missed split re-weights to the CAM row's pointing game
    split = result["cam_block4_by_detection"]
    assert split["detected"]["n"] + split["missed"]["n"] == 6
    parts = [(d["n"], d["pointing_game"]) for d in split.values() if d["n"]]
    assert sum(n * pg for n, pg in parts) / 6 == pytest.approx(cam4["pointing_game"])


def test_pointing_by_detection_hand_computed():
    evaluate = load("evaluate")
    res = {"predicted": np.array([1, 0, 1, 0, 1]),
           "hits": {("cam", 4, "lesion"): np.array([1.0, 0.0, 0.0, np.nan, 1.0])}}
    split = evaluate.pointing_by_detection(res, ("cam", 4, "lesion"))
    assert split["detected"] == {"n": 3, "pointing_game": pytest.approx(2 / 3)}
    assert split["missed"] == {"n": 1, "pointing_game": 0.0}  # the image without a lesion region is left out
    assert "0.667 (n = 3)" in split["text"] and "0.000 (n = 1)" in split["text"]
    assert evaluate.pointing_by_detection(res, ("gradcam", 4, "lesion")) == {"text": ""}
    # a K-class head whose abnormal class is 2: images predicted 0 or 1 are the missed ones
    res["predicted"] = np.array([2, 0, 2, 2, 1])
    split = evaluate.pointing_by_detection(res, ("cam", 4, "lesion"), target=2)
    assert split["detected"] == {"n": 2, "pointing_game": 0.5} and split["missed"]["n"] == 2


def test_bad_inputs_exit_2_with_one_line(tiny_checkpoint, tmp_path):
    (tmp_path / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\nnope")
    (tmp_path / "empty").mkdir()
    (tmp_path / "x.gif").write_bytes(b"GIF89a")
    (tmp_path / "cut.pt").write_bytes(tiny_checkpoint.read_bytes()[:1000])
    from common.models import build_densenet

    torch.save(build_densenet("densenet121").state_dict(), tmp_path / "d121.pt")
    good = tmp_path / "ok.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(good)
    cases = [
        (["--img", tmp_path / "missing.png"], "no such file"),
        (["--img", tmp_path / "empty"], "folder holds no image files"),
        (["--img", tmp_path / "bad.png"], "bad.png"),
        (["--img", tmp_path / "x.gif"], "unsupported file extension"),
        (["--img", good, "--checkpoint", tmp_path / "cut.pt"], "truncated or corrupt"),
        (["--img", good, "--checkpoint", tmp_path / "d121.pt", "--arch", "densenet169"], "looks like densenet121"),
        (["--img", good, "--checkpoint", tiny_checkpoint, "--method", "magic"], "unknown --method magic"),
        (["--img", good, "--checkpoint", tiny_checkpoint, "--method", "cam", "--layers", "2,3"], "needs block 4"),
        (["--img", good, "--checkpoint", tiny_checkpoint, "--target-class", "x"], "--target-class"),  # argparse's
    ]
    for extra, expected in cases:
        out = tmp_path / "out"
        r = run_main("00_Interpretability", "gradcam", *extra, "--out", out, "--device", "cpu")
        assert r.returncode == 2, (extra, r.stderr)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert len(lines) == 1 and lines[0].startswith("error:") and expected in lines[0], (extra, r.stderr)
        assert not out.exists() or not any(out.iterdir()), "an output was written before the error"


def test_shortcut_demo_runs_and_reports_both_models(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    from common.tasks.bone_demo import load_classifier

    shortcut = load("shortcut")
    grid = Recorder(shortcut.image_grid)
    monkeypatch.setattr(shortcut, "image_grid", grid)
    monkeypatch.setattr(shortcut, "demo_model",
                        lambda device: (load_classifier(tiny_checkpoint, device)[0], {"about": "tiny stand-in"}))
    args = shortcut.get_args(["--quick", "--n-train", "16", "--n-val", "8", "--epochs", "1", "--n-test", "8",
                              "--out", str(tmp_path), "--device", "cpu"])
    result = shortcut.main(args)
    assert capsys.readouterr().out.splitlines()[-1].startswith(f"wrote {tmp_path} (report.md, metrics.json")
    (fig,) = grid.calls  # the CAM figure: a labelled colour bar, and what the green and red outlines are
    assert fig["shared_colorbar"] and fig["suptitle"]
    assert [label.split(" ")[0] for label, _ in fig["legend"]] == ["lesion", "L/R"]
    assert [colour for _, colour in fig["legend"]] == list(shortcut.MASK_COLOURS[:2])
    assert len(result["accuracy"]) == 4  # two models x two test conditions
    regions = {(r["model"], r["method"], r["region"]) for r in result["cam"]}
    assert len(regions) == 8 and (tmp_path / "shortcut_cam.png").exists()
    assert result["tolerance"] == 10  # 1/16 of the demo's 160 px, as evaluate.py
    assert {(r["model"], r["region"]) for r in result["evidence"]} == {(m, g) for m, _, g in regions}
    for r in result["evidence"]:
        key = (r["model"], "cam", r["region"])
        cam = next(c for c in result["cam"] if (c["model"], c["method"], c["region"]) == key)
        assert r["n"] == cam["n"] and 0 <= r["displaced"] <= 1 - r["peak_pointing_game"]
    assert "the demo model (tiny stand-in)" in (tmp_path / "report.md").read_text()


def test_train_on_a_mura_tree_evaluates_studies_and_body_parts(tmp_path):
    from tests.test_datasets import _mura

    root = _mura(tmp_path)
    train = load("train")
    args = train.get_args(["--dataset", "mura", "--data-root", str(root), "--arch", "tiny", "--size", "32",
                           "--epochs", "1", "--batch-size", "4", "--out", str(tmp_path / "out"), "--device", "cpu"])
    result = train.main(args)
    assert result["image"]["n"] == 7 and result["study"]["n"] == 4  # 7 images in 4 studies
    assert set(result["per_body_part"]) == {"XR_SHOULDER", "XR_WRIST"}


def test_mura_without_data_root_is_one_line_error(tmp_path):
    r = run_main("00_Interpretability", "train", "--dataset", "mura", "--out", tmp_path / "o")
    assert r.returncode == 2 and r.stderr.strip().startswith("error: --dataset mura needs --data-root")
    assert len(r.stderr.strip().splitlines()) == 1 and not (tmp_path / "o").exists()


def test_shortcut_refuses_data_root_instead_of_ignoring_it(tmp_path):
    r = run_main("00_Interpretability", "shortcut", "--data-root", tmp_path, "--out", tmp_path / "o")
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "unrecognized arguments: --data-root" in lines[0], r.stderr
    assert not (tmp_path / "o").exists()


def test_bad_lse_sharpness_is_one_line_error(tmp_path):
    r = run_main("00_Interpretability", "train", "--pooling", "lse", "--lse-r", "0", "--out", tmp_path / "o")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("error: argument --lse-r: must be a finite number > 0, got 0")
    assert len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_quick_checkpoint_records_the_demo_pooling(tiny_checkpoint):
    from common.tasks.bone_demo import DEMO, load_classifier

    model, info = load_classifier(tiny_checkpoint, torch.device("cpu"))
    assert (info["pooling"], model.pooling, model.lse_r) == (DEMO.pooling, DEMO.pooling, DEMO.lse_r)


def test_materialized_phantom_keeps_half_precision_and_hands_out_float32():
    from common.data.cache import Materialized
    from common.data.phantoms import BoneXrayPhantom

    base = BoneXrayPhantom(n=3, size=48, seed=5)
    kept = Materialized(base)
    assert kept.items[0]["image"].dtype == torch.float16  # half the memory of the rendered float32
    for i in range(3):
        item, ref = kept[i], base[i]
        assert item["image"].dtype == torch.float32 and item["label"] == ref["label"]
        assert torch.equal(item["mask"], ref["mask"])
        assert (item["image"] - ref["image"]).abs().max() <= 2 ** -11  # float16 rounding of values in [0, 1]


def test_materialized_renders_the_same_items_in_worker_processes():
    from common.data.cache import Materialized
    from common.data.phantoms import BoneXrayPhantom

    base = BoneXrayPhantom(n=7, size=40, seed=11, confounder=0.5)
    serial, parallel = Materialized(base, workers=0), Materialized(base, workers=2)
    assert len(parallel) == 7
    for a, b in zip(serial.items, parallel.items, strict=True):  # same order, same pixels, same labels and metadata
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["mask"], b["mask"])
        assert a["label"] == b["label"] and a["meta"] == b["meta"]
        assert not b["image"].is_shared()  # arrived pickled, not in a shared-memory file


def test_materialized_uses_worker_processes_only_where_they_pay_and_may_start(monkeypatch):
    import multiprocessing
    import os
    import types

    from common.data.cache import Materialized

    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    big = Materialized.PARALLEL_FROM
    assert (Materialized.default_workers(big - 1), Materialized.default_workers(big)) == (0, 4)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # two torchrun ranks on this machine: two cores each
    assert Materialized.default_workers(big) == 2
    monkeypatch.delenv("LOCAL_WORLD_SIZE")
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert Materialized.default_workers(10 * big) == 0  # one core: workers would only add transfers
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    monkeypatch.setattr(multiprocessing, "current_process", lambda: types.SimpleNamespace(daemon=True))
    assert Materialized.default_workers(10 * big) == 0  # a daemonic process may not have children


def test_materialize_speed_benchmark_checks_identity_and_reports_the_ratio(tmp_path):
    import json
    import subprocess
    import sys

    from tests.helpers.scripts import ROOT

    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "materialize_speed.py"), "--n", "40", "--size", "48",
                        "--workers", "2", "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["identical"] and metrics["workers"] == 2 and metrics["n"] == 40
    assert "2 worker processes" in (tmp_path / "report.md").read_text()


@pytest.mark.parametrize("aurocs,expected_runs,warned", [((0.95,), ["seed0"], False),
                                                         ((0.7, 0.93), ["seed0", "restart"], False),
                                                         ((0.7, 0.72), ["seed0", "restart"], True)])
def test_demo_model_continues_a_run_that_learnt_only_the_metal(tmp_path, monkeypatch, capsys, aurocs, expected_runs,
                                                               warned):
    from common.tasks import bone_demo

    seen = []

    def fake_train(args, device, out):
        seen.append((out.name, args))
        model = bone_demo.build_densenet(bone_demo.DEMO.arch, 1, cam_stride=bone_demo.DEMO.cam_stride)
        return model, {"evaluation": {"image": {"auroc": aurocs[len(seen) - 1], "accuracy": 0.5}}}

    monkeypatch.setattr(bone_demo, "CACHE", tmp_path)
    monkeypatch.setattr(bone_demo, "train_classifier", fake_train)
    model, info = bone_demo.demo_model(torch.device("cpu"))
    assert [name for name, _ in seen] == expected_runs and info["path"].exists()
    assert bone_demo.is_demo_recipe(seen[0][1])  # the first run is the demo recipe as it is
    if len(seen) > 1:  # the warm restart: the first run's weights, the next seed's images, a 6-epoch cycle from r = 1
        restart = seen[1][1]
        assert restart.weights == str(tmp_path / f"bone_demo_v{bone_demo.DEMO_VERSION}_training" / "seed0" / "best.pt")
        assert (restart.seed, restart.epochs, restart.lse_r_start, restart.lr) == (1, 6, 1.0, bone_demo.DEMO.lr)
    out = capsys.readouterr().out
    assert ("continuing it for 6 epochs" in out) == (len(seen) > 1)
    assert ("warning: the demo model found little beyond the metal" in out) == warned
    # the cached model says which run made it (the gate may have continued the first run)
    assert info["val_auroc"] == aurocs[len(seen) - 1]
    assert info["about"].startswith("seed 0, restarted on seed 1's images" if len(seen) > 1 else "seed 0, validation")
    _, cached = bone_demo.demo_model(torch.device("cpu"))  # cached now: no training
    assert len(seen) == len(expected_runs) and cached["about"] == info["about"]


@pytest.mark.parametrize("inside_repo", [True, False])
def test_reports_name_the_demo_model_relative_to_the_repo(tmp_path, monkeypatch, inside_repo):
    from common.tasks import bone_demo

    def fake_train(args, device, out):
        model = bone_demo.build_densenet(bone_demo.DEMO.arch, 1, cam_stride=bone_demo.DEMO.cam_stride)
        return model, {"evaluation": {"image": {"auroc": 0.95, "accuracy": 0.9}}}

    monkeypatch.setattr(bone_demo, "CACHE", tmp_path / "cache" / "models")
    monkeypatch.setattr(bone_demo, "ROOT", tmp_path if inside_repo else tmp_path / "repo")
    monkeypatch.setattr(bone_demo, "train_classifier", fake_train)
    _, info = bone_demo.load_classifier(None, torch.device("cpu"))
    name = f"bone_demo_v{bone_demo.DEMO_VERSION}.pt"
    shown = f"cache/models/{name}" if inside_repo else str(tmp_path / "cache" / "models" / name)
    assert info["source"].startswith(f"demo model ({shown}; seed 0")


def test_train_continues_a_run_as_its_report_suggests(tiny_checkpoint, tmp_path):
    from common.engine import checkpoint
    from common.tasks.bone_demo import restart_config

    train = load_script("00_Interpretability", "train")
    restart = restart_config(tiny_checkpoint.parent, 0)
    args = train.get_args(["--quick", "--weights", restart.weights, "--epochs", "1", "--lse-r-start", "1",
                           "--seed", "1", "--out", str(tmp_path), "--n-train", "16", "--n-val", "8", "--size", "64",
                           "--batch-size", "8", "--device", "cpu"])
    assert (args.arch, args.lse_r_start, args.weights) == ("mini", 1.0, str(tiny_checkpoint))  # --quick keeps them
    train.main(args)
    saved = checkpoint.load(tmp_path / "best.pt")
    assert saved["args"]["weights"] == str(tiny_checkpoint) and saved["args"]["seed"] == 1
