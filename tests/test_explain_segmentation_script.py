"""00_Interpretability/explain_segmentation.py: a smoke run on a given (untrained) ENet checkpoint -- the demo ENet is
cached state a test never trains -- the energy shares checked by hand, and the bad inputs that end in one line."""

import json

import numpy as np
import pytest
import torch

from common.engine import checkpoint
from common.models.enet import ENet
from common.tasks.lv_explain import energy_share
from tests.helpers.scripts import load_script, run_main


@pytest.fixture(scope="module")
def enet_checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("enet") / "enet.pt"
    checkpoint.save(path, model=ENet(in_channels=1, num_classes=2).state_dict(), metrics={"val_dice3d": 0.5})
    return path


def test_energy_share_by_hand():
    maps = np.zeros((2, 4, 4))
    maps[0, 0, 0], maps[0, 3, 3] = 1.0, 3.0  # 3 of 4 inside
    region = np.zeros((2, 4, 4), bool)
    region[:, 2:, 2:] = True
    share = energy_share(maps, region)
    assert share[0] == pytest.approx(0.75) and np.isnan(share[1])  # an all-zero map points nowhere
    assert energy_share(np.ones((1, 4, 4)), region[:1])[0] == pytest.approx(region[0].mean())  # uniform = area


@pytest.mark.parametrize("target", ["predicted", "pixel"])
def test_smoke_run(tmp_path, enet_checkpoint, target):
    script = load_script("00_Interpretability", "explain_segmentation")
    out = tmp_path / "out"
    args = script.get_args(["--checkpoint", str(enet_checkpoint), "--size", "32", "--n-val", "1", "--slices", "3",
                            "--method", "gradcam,hirescam,fullgrad", "--layers", "stage3,stage5", "--target", target,
                            "--device", "cpu", "--threads", "1", "--out", str(out)])
    result = script.main(args)
    assert set(result["share"]) == {"gradcam", "hirescam", "fullgrad"}
    assert set(result["share"]["gradcam"]) == {"stage3", "stage5"} and set(result["share"]["fullgrad"]) == {"all"}
    shares = [v for per in result["share"].values() for v in per.values() if not np.isnan(v)]
    assert shares and all(0 <= v <= 1 for v in shares)
    assert 0 < result["uniform_share"] < 1 and result["slices"] == 3 and result["val_dice3d"] == 0.5
    tables = json.loads((out / "tables.json").read_text())
    assert {"share", "setting"} <= set(tables)
    assert [r["method"] for r in tables["share"]["rows"]] == ["gradcam", "hirescam", "fullgrad"]
    assert (out / "explain_segmentation.png").stat().st_size > 0 and (out / "metrics.json").exists()


@pytest.mark.parametrize("argv,message", [
    (["--method", "gradcam,nope"], "--method nope not understood"),
    (["--layers", "stage9"], "--layers stage9 not understood"),
    (["--size", "60"], "not a multiple of 8"),
    (["--checkpoint", "missing.pt"], "no such checkpoint"),
    (["--dataset", "acdc"], "needs --data-root"),
])
def test_bad_input_is_one_line(tmp_path, argv, message):
    result = run_main("00_Interpretability", "explain_segmentation", "--out", str(tmp_path / "o"), *argv)
    assert result.returncode == 2, result.stdout + result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


def test_wrong_checkpoint_is_one_line(tmp_path):
    path = tmp_path / "other.pt"
    checkpoint.save(path, model=torch.nn.Linear(2, 2).state_dict())
    result = run_main("00_Interpretability", "explain_segmentation", "--checkpoint", str(path), "--size", "32",
                      "--out", str(tmp_path / "o"))
    assert result.returncode == 2 and "not a 2-class, 1-channel ENet checkpoint" in result.stderr
