"""The training engine: exact resume after SIGKILL, DDP under torchrun, NaN stop, checkpoint contents."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from common.engine import FitConfig, TrainingDiverged, checkpoint, fit, supervised_step
from tests.helpers.engine_worker import Blobs

WORKER = Path(__file__).parent / "helpers" / "engine_worker.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def run_worker(*args, timeout=120):
    return subprocess.run([sys.executable, str(WORKER), *map(str, args)], env=ENV, capture_output=True,
                          text=True, timeout=timeout)


def test_resume_after_sigkill_is_exact(tmp_path):
    full, killed = tmp_path / "full", tmp_path / "killed"
    r = run_worker("--out", full, "--epochs", 4)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen([sys.executable, str(WORKER), "--out", str(killed), "--epochs", "4", "--delay", "0.02"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while time.time() < deadline:  # kill as soon as two epochs are on disk
        if (killed / "metrics.csv").exists() and len((killed / "metrics.csv").read_text().splitlines()) >= 3:
            break
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert checkpoint.load(killed / "last.pt")["epoch"] < 3, "killed too late to test resuming"
    r = run_worker("--out", killed, "--epochs", 4, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    a, b = checkpoint.load(full / "last.pt"), checkpoint.load(killed / "last.pt")
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    drop_time = lambda rows: [{k: v for k, v in row.items() if k != "seconds"} for row in rows]  # noqa: E731
    assert drop_time(a["metrics"]) == drop_time(b["metrics"])
    assert not list(killed.glob("*.tmp")), "a temporary file was left behind"


def test_checkpoint_contents_and_files(tmp_path):
    r = run_worker("--out", tmp_path, "--epochs", 2)
    assert r.returncode == 0, r.stderr
    ck = checkpoint.load(tmp_path / "last.pt")
    assert {"model", "optimizer", "scheduler", "epoch", "rng", "args", "metrics", "best"} <= set(ck)
    assert ck["epoch"] == 1 and len(ck["metrics"]) == 2
    assert (tmp_path / "best.pt").exists()
    lines = (tmp_path / "metrics.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,train_loss,lr") and len(lines) == 3
    result = json.loads((tmp_path / "metrics.json").read_text())
    assert result["last"]["val_n"] == 7.0


@pytest.mark.skipif(shutil.which("torchrun") is None and not Path(sys.executable).with_name("torchrun").exists(),
                    reason="torchrun not installed")
def test_ddp_two_processes_cover_whole_validation_set(tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    cmd = [str(torchrun if torchrun.exists() else "torchrun"), "--nproc_per_node=2", "--master_port=29533",
           str(WORKER), "--out", str(tmp_path), "--epochs", "1", "--n-val", "7"]
    r = subprocess.run(cmd, env=ENV, capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "DDP, world size 2" in r.stdout
    ck = checkpoint.load(tmp_path / "last.pt")
    assert not any(k.startswith("module.") for k in ck["model"]), "rank 0 must save the unwrapped model"
    # 7 validation items over 2 ranks: 4 + 3, gathered, no padding duplicates
    assert ck["metrics"][-1]["val_n"] == 7.0


def test_nan_loss_stops_cleanly_and_keeps_checkpoint(tmp_path):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    calls = {"n": 0}

    def step(m, batch, device):
        calls["n"] += 1
        out = m(batch["image"])
        loss = torch.nn.functional.cross_entropy(out, batch["label"])
        return (loss * float("nan") if calls["n"] > 10 else loss), out, batch["label"]

    cfg = FitConfig(epochs=3, batch_size=4, out=tmp_path)
    with pytest.raises(TrainingDiverged, match="nan at epoch 2, step 3; last good checkpoint kept"):
        fit(model, Blobs(32, 0), None, step, torch.optim.SGD(model.parameters(), 0.1), cfg, torch.device("cpu"))
    assert checkpoint.load(tmp_path / "last.pt")["epoch"] == 0


def test_empty_training_set_is_input_error(tmp_path):
    from common.errors import InputError

    model = torch.nn.Linear(2, 2)
    with pytest.raises(InputError, match="training set is empty"):
        fit(model, Blobs(0, 0), None, supervised_step(torch.nn.functional.cross_entropy),
            torch.optim.SGD(model.parameters(), 0.1), FitConfig(1, 2, tmp_path), torch.device("cpu"))


def _tiny_fit(out, epochs, args, resume=False):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    cfg = FitConfig(epochs=epochs, batch_size=8, out=out, resume=resume, args=args)
    return fit(model, Blobs(16, 0), None, supervised_step(torch.nn.functional.cross_entropy),
               torch.optim.SGD(model.parameters(), 0.1), cfg, torch.device("cpu"))


def test_resume_refuses_a_checkpoint_of_other_settings_or_more_epochs(tmp_path):
    from common.errors import InputError

    args = {"variant": "presize", "lr": 0.005, "out": str(tmp_path), "device": "cpu", "epochs": 3}
    _tiny_fit(tmp_path, 3, args)
    # another variant on the same folder (a copied run): refused, the setting named, nothing rewritten
    before = (tmp_path / "metrics.json").read_text()
    with pytest.raises(InputError, match=r"last.pt: written by a run with other settings: variant = presize there, "
                                         r"fs now -- resume with that run's settings"):
        _tiny_fit(tmp_path, 3, {**args, "variant": "fs"}, resume=True)
    with pytest.raises(InputError, match=r"lr = 0.005 there, 0.1 now \(and 1 more setting\(s\): variant\)"):
        _tiny_fit(tmp_path, 3, {**args, "variant": "fs", "lr": 0.1}, resume=True)
    assert (tmp_path / "metrics.json").read_text() == before
    # fewer epochs than the checkpoint holds: refused; more: continued
    with pytest.raises(InputError, match="holds 3 epochs, more than the 2 asked for -- pass --epochs 3 or more"):
        _tiny_fit(tmp_path, 2, {**args, "epochs": 2}, resume=True)
    res = _tiny_fit(tmp_path, 4, {**args, "epochs": 4, "device": "cuda", "workers": 2, "out": "elsewhere"},
                    resume=True)  # how the run is carried out may change
    assert [h["epoch"] for h in res["history"]] == [1, 2, 3, 4]
    # a setting only the new run records (a checkpoint from older code) is not compared
    res = _tiny_fit(tmp_path, 5, {**args, "epochs": 5, "margin": 0.1}, resume=True)
    assert len(res["history"]) == 5
