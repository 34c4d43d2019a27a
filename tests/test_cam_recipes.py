"""benchmarks/cam_recipes.py: its smoke mode end to end, and re-scoring a finished run's kept weights."""

import json
import math
import subprocess
import sys

import pytest

from tests.helpers.scripts import ROOT


def _sweep(out, *extra):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cam_recipes.py"), "--quick", "--recipes", "demo",
                        "--threads", "1", "--device", "cpu", "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return r.stdout


def test_quick_sweep_then_rescore_gives_the_same_scores(tmp_path):
    assert "[1/1] demo seed 0" in _sweep(tmp_path)
    run = tmp_path / "demo" / "seed0"
    first = json.loads((run / "scores.json").read_text())
    assert (run / "best.pt").exists() and not (run / "last.pt").exists()
    assert set(first["scores"]) == {"cam_b4", "cam_b4_flips", "layercam_b4", "layercam_b3", "layercam_b2", "detected"}
    assert (tmp_path / "report.md").exists()
    # a finished run is reused as it is ...
    marked = {**first["scores"], "cam_b4": {k: -1.0 for k in first["scores"]["cam_b4"]}}
    (run / "scores.json").write_text(json.dumps({**first, "scores": marked}))
    assert "pointing game -1.000" in _sweep(tmp_path)
    # ... and --rescore loads the kept weights with the recipe's arch and CAM stride: the scores come back exactly
    _sweep(tmp_path, "--rescore")
    second = json.loads((run / "scores.json").read_text())
    assert second["scores"] == first["scores"] and second["auroc"] == first["auroc"] and "rescored" in second


def test_learnt_at_is_the_first_epoch_past_the_level(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cam_recipes import learnt_at

    assert learnt_at(tmp_path) == "?"  # no per-epoch curve kept
    rows = ["epoch,val_auroc", "1,0.62", "2,0.81", "3,0.79", "4,0.95"]
    (tmp_path / "metrics.csv").write_text("\n".join(rows) + "\n")
    assert learnt_at(tmp_path) == "2"
    assert learnt_at(tmp_path, level=0.9) == "4"
    assert learnt_at(tmp_path, level=0.96) == "-"


def test_training_cost_counts_the_steps_of_each_recipe():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cam_recipes import recipe_args, training_steps

    # the demo: 4,800 images / batch 16 x 10 epochs; b8: 2,400 / 8 x 10, the same steps; 12 epochs: 20 % more
    assert [training_steps(recipe_args(r, 0, False)) for r in ("demo", "b8", "epochs12")] == [3000, 3000, 3600]
    assert training_steps(recipe_args("demo", 0, True)) == 4  # the smoke run: 64 images / 16 x 1 epoch


def test_logit_penalty_adds_half_lambda_mean_squared_logit():
    import torch

    from common.tasks.bone_classifier import weighted_bce_step

    class Fixed(torch.nn.Module):  # logits 2 and -1 whatever the input
        def forward(self, x):
            return torch.tensor([[2.0], [-1.0]])

    batch = {"image": torch.zeros(2, 3, 4, 4), "label": torch.tensor([1, 0]),
             "meta": {"body_part": ["hand", "hand"]}}
    weights = {"hand": (0.25, 0.75)}  # (w0, w1)
    plain = weighted_bce_step(weights, lambda x: x)(Fixed(), batch, "cpu")[0]
    penalised = weighted_bce_step(weights, lambda x: x, logit_penalty=0.1)(Fixed(), batch, "cpu")[0]
    # by hand: BCE(2, 1) = log(1 + e^-2), BCE(-1, 0) = log(1 + e^-1); weighted mean; penalty 0.1 / 2 * (4 + 1) / 2
    bce = (0.75 * math.log1p(math.exp(-2.0)) + 0.25 * math.log1p(math.exp(-1.0))) / 2
    assert plain.item() == pytest.approx(bce, rel=1e-6)
    assert penalised.item() == pytest.approx(bce + 0.125, rel=1e-6)


def test_recipes_set_the_training_sets_abnormal_fraction_only():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from cam_recipes import recipe_args

    from common.tasks.bone_demo import bone_datasets

    args = recipe_args("ab0.75_e6", 0, True)
    args.n_train, args.n_val, args.size = 400, 400, 32
    train, val = bone_datasets(args)
    frac = [sum(d.base.item_spec(i)["lesion_type"] != "none" for i in range(len(d))) / len(d) for d in (train, val)]
    assert abs(frac[0] - 0.75) < 0.06 and abs(frac[1] - 0.5) < 0.06  # validation keeps the phantom's 50 %


def test_restart_continues_the_same_seeds_demo_run_after_it(tmp_path):
    import torch

    out = _sweep(tmp_path, "--recipes", "demo,restart")
    assert "demo seed 0" in out and "restart seed 0" in out
    saved = torch.load(tmp_path / "restart" / "seed0" / "best.pt", weights_only=False)["args"]
    # demo_model()'s warm restart: the demo run's weights, the next seed's images, the sharpness ramp from 1
    assert saved["weights"] == str(tmp_path / "demo" / "seed0" / "best.pt")
    assert (saved["seed"], saved["restart_of_seed"], saved["lse_r_start"]) == (1, 0, 1.0)


def test_restart_without_its_source_weights_is_one_line(tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cam_recipes.py"), "--quick", "--recipes",
                        "restart", "--out", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().count("\n") == 0 and "add demo to --recipes" in r.stderr
