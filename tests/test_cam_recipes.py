"""benchmarks/cam_recipes.py: its smoke mode end to end through common.sweep, resume, the restart recipe, costs."""

import json
import sys
from pathlib import Path

import pytest

from common.errors import cli_main
from tests.helpers.scripts import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import cam_recipes  # noqa: E402

QUICK = ["--quick", "--threads", "1", "--device", "cpu"]


def _sweep(out, *extra):
    return cam_recipes.main(cam_recipes.get_args([*QUICK, "--out", str(out), *extra]))


def test_quick_sweep_writes_scores_and_reuses_finished_runs(tmp_path, capsys, monkeypatch):
    rows = _sweep(tmp_path, "--recipes", "crop128")["rows"]
    assert "[1/1] crop128 / seed 0: AUROC" in capsys.readouterr().out
    run = tmp_path / "crop128" / "seed0"
    first = json.loads((run / "metrics.json").read_text())
    assert (run / "best.pt").exists() and not (run / "last.pt").exists() and (run / "run.json").exists()
    assert set(first["scores"]) == {*cam_recipes.METHODS, "detected"}
    assert first["scores"]["cam_b4"]["all"] == pytest.approx(sum(first["scores"]["cam_b4"][t]
                                                                 for t in cam_recipes.LESIONS) / 3)
    assert rows[0]["seeds"] == 1 and rows[0]["PG cam_b4"] == f"{first['scores']['cam_b4']['all']:.3f}"
    assert "recipes" in json.loads((tmp_path / "tables.json").read_text()) and (tmp_path / "report.md").exists()
    # a finished run is reused, not trained again ...
    import common.tasks.bone_classifier as bc

    monkeypatch.setattr(bc, "train_classifier", lambda *a, **k: pytest.fail("a finished run was trained again"))
    assert _sweep(tmp_path, "--recipes", "crop128")["rows"][0]["PG cam_b4"] == rows[0]["PG cam_b4"]
    # ... and one scored with other settings is refused in one line, naming its folder
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli_main(cam_recipes.main, cam_recipes.get_args([*QUICK, "--out", str(tmp_path), "--recipes", "crop128",
                                                         "--n-eval", "5"]))
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0
    assert err.startswith(f"error: {run}: finished earlier with other settings (n_eval = 4 there, 5 now)")


def test_learnt_at_is_the_first_epoch_past_the_level(tmp_path):
    assert cam_recipes.learnt_at(tmp_path) == "?"  # no per-epoch curve kept
    rows = ["epoch,val_auroc", "1,0.62", "2,0.81", "3,0.79", "4,0.95"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert cam_recipes.learnt_at(tmp_path) == "2"
    assert cam_recipes.learnt_at(tmp_path, level=0.9) == "4"
    assert cam_recipes.learnt_at(tmp_path, level=0.96) == "-"


def test_recipes_are_the_demo_its_predecessor_and_its_restart():
    from common.tasks.bone_demo import DEMO, DEMO_RESTART

    cfg = {r: cam_recipes.recipe_config(r, 2, False) for r in cam_recipes.RECIPES}
    assert cfg["crop128"].train_crop == DEMO.train_crop == 0.8 and cfg["demo"].train_crop is None
    assert {k: v for k, v in vars(cfg["demo"]).items() if k != "train_crop"} == {
        k: v for k, v in vars(cfg["crop128"]).items() if k != "train_crop"}
    assert (cfg["restart_crop128"].seed, cfg["restart_crop128"].restart_of_seed) == (3, 2)
    assert cfg["restart_crop128"].weights == str(Path("crop128") / "seed2" / "best.pt")  # relative to --out
    assert cfg["restart_crop128"].epochs == DEMO_RESTART["epochs"] and cfg["restart_crop128"].train_crop == 0.8
    # steps: 4,800 images / batch 16 x 10 epochs, the restart 6 epochs; the smoke run 64 / 16 x 1
    assert [cam_recipes.training_steps(cfg[r]) for r in cam_recipes.RECIPES] == [3000, 3000, 1800]
    assert cam_recipes.training_steps(cam_recipes.recipe_config("demo", 0, True)) == 4


def test_restart_continues_the_same_seeds_run_after_it(tmp_path, capsys):
    import torch

    _sweep(tmp_path, "--recipes", "crop128,restart_crop128")
    out = capsys.readouterr().out
    assert out.index("crop128 / seed 0: AUROC") < out.index("restart_crop128 / seed 0: AUROC")
    saved = torch.load(tmp_path / "restart_crop128" / "seed0" / "best.pt", weights_only=False)["args"]
    # demo_model()'s warm restart: the source run's weights, the next seed's images, the sharpness ramp from 1
    assert saved["weights"] == str(tmp_path / "crop128" / "seed0" / "best.pt")
    assert (saved["seed"], saved["restart_of_seed"], saved["lse_r_start"]) == (1, 0, 1.0)


def test_restart_without_its_source_weights_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as stop:
        cam_recipes.get_args(["--quick", "--recipes", "restart_crop128", "--out", str(tmp_path)])
    err = capsys.readouterr().err.strip()
    assert stop.value.code == 2 and err.count("\n") == 0 and "add crop128 to --recipes" in err


def test_default_out_is_no_committed_results_folder():
    assert cam_recipes.get_args([]).out == Path("runs/cam_recipes")
    assert cam_recipes.get_args(["--quick"]).out == Path("runs/cam_recipes_quick")
