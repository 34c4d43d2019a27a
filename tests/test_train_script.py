"""00_Interpretability/train.py: --quick defaults that explicit flags override, and --quick as the demo model's run."""

import pytest
import torch

from tests.helpers.scripts import load_script

METRICS = {"kappa": 0.7, "auroc": 0.95, "accuracy": 0.9, "sensitivity": 0.9, "specificity": 0.9, "n": 8}


@pytest.mark.parametrize("argv, size", [(["--quick"], 160), (["--quick", "--size", "96"], 96),
                                        (["--quick", "--si", "96"], 96), (["--size", "96", "--quick"], 96),
                                        ([], 320)])
def test_quick_defaults_yield_to_explicit_flags(argv, size):
    # before: quick defaults looked for the literal "--size" in argv, so --si 96 silently trained at 160
    args = load_script("00_Interpretability", "train").get_args(argv)
    assert args.size == size and args.arch == ("mini" if "--quick" in argv else "densenet169")


@pytest.fixture
def fake_training(tmp_path, monkeypatch):
    from common.tasks import bone_demo

    runs = []

    def fake_train(cfg, device, out):
        runs.append((out, cfg))
        model = bone_demo.build_densenet(cfg.arch, 1, cam_stride=cfg.cam_stride)
        ev = {"image": METRICS, "study": METRICS, "per_body_part": {"forearm": METRICS}}
        return model, {"fit": {"history": [{"epoch": 1, "train_loss": 1.0, "val_loss": 0.9}]}, "evaluation": ev,
                       "best_epoch": 1}

    monkeypatch.setattr(bone_demo, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(bone_demo, "train_classifier", fake_train)
    train = load_script("00_Interpretability", "train")
    monkeypatch.setattr(train, "train_classifier", fake_train)
    return train, runs, bone_demo


def test_quick_run_is_the_demo_model_and_caches_it(fake_training, tmp_path):
    train, runs, bone_demo = fake_training
    train.main(train.get_args(["--quick", "--out", str(tmp_path / "run"), "--device", "cpu"]))
    assert len(runs) == 1 and runs[0][0] == tmp_path / "run" and bone_demo.is_demo_recipe(runs[0][1])
    assert bone_demo.demo_path().exists()  # every later demo explains this model instead of training its own
    model, info = bone_demo.demo_model(torch.device("cpu"))
    assert len(runs) == 1 and info["val_auroc"] == 0.95


@pytest.mark.parametrize("flags", [["--size", "96"], ["--seed", "3"], ["--epochs", "2"]])
def test_quick_run_with_other_settings_is_not_cached_as_the_demo(fake_training, tmp_path, flags):
    train, runs, bone_demo = fake_training
    train.main(train.get_args(["--quick", *flags, "--out", str(tmp_path / "run"), "--device", "cpu"]))
    assert len(runs) == 1 and not bone_demo.is_demo_recipe(runs[0][1]) and not bone_demo.demo_path().exists()
